//! Prometheus metrics: the exposition served on `GET /metrics` of admin listeners (and of HTTP
//! listeners with `metrics = true`), in the Prometheus text format 0.0.4 or, when the scraper
//! asks for it in `Accept`, OpenMetrics 1.0.
//!
//! Nothing here is on the request path. A scrape reads every worker's latest record and the
//! master's from the [`SharedStatus`](crate::status::SharedStatus) file (written about once a
//! second by each worker from its loops' own counters), keeps the records of the running
//! generation that are fresh, sums them per listener and encodes the sums with the
//! `prometheus-client` crate through one [`Collector`]. Every worker reads the same file, so
//! whichever worker the scrape lands on, it sees the same numbers. docs/metrics.md lists every
//! series; [`SERIES`] is the same list in code, checked against the docs by a test.

use std::borrow::Cow;

use herd_core::proxy::ProxyFailure;
use herd_core::stats::{DURATION_BOUNDS_MS, FRAME_IDS, METHODS, STATUS_CLASSES, WS_CLOSE_CODES};
use herd_core::tls::TlsFailure;
use herd_core::CloseReason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::status::{current, sum_listeners, ListenerStatus, MasterStatus, Status, StatusBoard};

/// The path metrics are served on.
pub const METRICS_PATH: &str = "/metrics";

/// Content type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Content type of OpenMetrics text 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every series herd exports (full names as a scraper sees them, histograms by their base
/// name), with its type. docs/metrics.md documents each one.
pub const SERIES: &[(&str, &str)] = &[
    ("herd_build_info", "gauge"),
    ("herd_generation", "gauge"),
    ("herd_workers", "gauge"),
    ("herd_workers_reporting", "gauge"),
    ("herd_uptime_seconds", "gauge"),
    ("herd_worker_restarts_total", "counter"),
    ("herd_worker_kills_total", "counter"),
    ("herd_reloads_total", "counter"),
    ("herd_upgrades_total", "counter"),
    ("herd_process_resident_memory_bytes", "gauge"),
    ("herd_process_open_fds", "gauge"),
    ("herd_process_cpu_seconds_total", "counter"),
    ("herd_memory_budget_bytes", "gauge"),
    ("herd_memory_held_bytes", "gauge"),
    ("herd_overload_level", "gauge"),
    ("herd_overload_entered_total", "counter"),
    ("herd_connections_accepted_total", "counter"),
    ("herd_connections_open", "gauge"),
    ("herd_connections_closed_total", "counter"),
    ("herd_connections_refused_total", "counter"),
    ("herd_received_bytes_total", "counter"),
    ("herd_sent_bytes_total", "counter"),
    ("herd_messages_received_total", "counter"),
    ("herd_messages_sent_total", "counter"),
    ("herd_http_requests_total", "counter"),
    ("herd_http_request_duration_seconds", "histogram"),
    ("herd_http_request_body_bytes_total", "counter"),
    ("herd_http_response_body_bytes_total", "counter"),
    ("herd_http_bad_requests_total", "counter"),
    ("herd_http_limit_req_total", "counter"),
    ("herd_http_rejections_total", "counter"),
    ("herd_ws_messages_received_total", "counter"),
    ("herd_ws_messages_sent_total", "counter"),
    ("herd_ws_closes_total", "counter"),
    ("herd_frame_requests_total", "counter"),
    ("herd_frame_errors_total", "counter"),
    ("herd_frame_busy_replies_total", "counter"),
    ("herd_frame_pings_sent_total", "counter"),
    ("herd_frame_pool_queue_depth", "gauge"),
    ("herd_frame_pool_queue_capacity", "gauge"),
    ("herd_tls_handshakes_total", "counter"),
    ("herd_tls_failures_total", "counter"),
    ("herd_proxy_headers_total", "counter"),
    ("herd_proxy_failures_total", "counter"),
    ("herd_upstream_requests_total", "counter"),
    ("herd_upstream_next_backend_total", "counter"),
];

/// What one scrape reports: the sums over the running generation's workers.
#[derive(Debug, Default)]
pub struct Scrape {
    /// herd's version.
    pub version: String,
    /// The generation the sums are over.
    pub generation: u64,
    /// Configured workers.
    pub workers: usize,
    /// The workers whose records went into the sums.
    pub reporting: Vec<Status>,
    /// Per-listener sums.
    pub listeners: Vec<ListenerStatus>,
    /// The master's record, when the master publishes one.
    pub master: Option<MasterStatus>,
    /// When the scrape was taken (ms since the epoch).
    pub now_ms: u64,
}

impl Scrape {
    /// Gather the current records of `board`'s generation.
    pub fn take(board: &StatusBoard) -> Scrape {
        let (records, master) = board.records();
        let mine = board.get();
        let now_ms = crate::status::unix_ms();
        let generation = master.as_ref().map_or(mine.generation, |m| m.generation);
        let mut reporting: Vec<Status> = current(&records, generation, now_ms)
            .into_iter()
            .cloned()
            .collect();
        reporting.sort_by_key(|s| s.worker_slot);
        Scrape {
            version: mine.version.clone(),
            generation,
            workers: master.as_ref().map_or(mine.workers, |m| m.workers),
            listeners: sum_listeners(reporting.iter()),
            reporting,
            master,
            now_ms,
        }
    }

    /// The exposition: OpenMetrics if `openmetrics`, else the Prometheus text format.
    pub fn encode(self, openmetrics: bool) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        let r = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        };
        if r.is_err() {
            tracing::error!(reason = "encode", "cannot encode metrics");
        }
        out
    }
}

/// True if an `Accept` header value asks for OpenMetrics.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.contains("application/openmetrics-text")
}

/// `/metrics` for `board`: `(body, content type)` as the `Accept` header asks.
pub fn render(board: &StatusBoard, accept: &str) -> (String, &'static str) {
    let om = wants_openmetrics(accept);
    let body = Scrape::take(board).encode(om);
    (
        body,
        if om {
            OPENMETRICS_CONTENT_TYPE
        } else {
            TEXT_CONTENT_TYPE
        },
    )
}

type Labels = Vec<(&'static str, Cow<'static, str>)>;

/// A const metric value to encode with labels.
enum Value<'a> {
    Counter(u64),
    CounterF(f64),
    Gauge(i64),
    GaugeF(f64),
    Histogram(&'a [u64], u64),
}

impl std::fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Value")
    }
}

impl EncodeMetric for Value<'_> {
    fn encode(&self, mut e: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Value::Counter(v) => e.encode_counter::<NoLabelSet, _, u64>(v, None),
            Value::CounterF(v) => e.encode_counter::<NoLabelSet, _, f64>(v, None),
            Value::Gauge(v) => e.encode_gauge(v),
            Value::GaugeF(v) => e.encode_gauge(v),
            Value::Histogram(buckets, sum_ms) => {
                // The encoder takes per-bucket counts and writes them cumulated.
                let mut out = Vec::with_capacity(DURATION_BOUNDS_MS.len() + 1);
                for i in 0..=DURATION_BOUNDS_MS.len() {
                    let upper = DURATION_BOUNDS_MS
                        .get(i)
                        .map_or(f64::INFINITY, |ms| *ms as f64 / 1000.0);
                    out.push((upper, buckets.get(i).copied().unwrap_or(0)));
                }
                let count = buckets.iter().sum();
                e.encode_histogram::<NoLabelSet>(*sum_ms as f64 / 1000.0, count, &out, None)
            }
        }
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) | Value::CounterF(_) => MetricType::Counter,
            Value::Gauge(_) | Value::GaugeF(_) => MetricType::Gauge,
            Value::Histogram(..) => MetricType::Histogram,
        }
    }
}

/// Encode one metric family: its descriptor, then one sample per label set.
fn family<'v>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: impl IntoIterator<Item = (Labels, Value<'v>)>,
) -> Result<(), std::fmt::Error> {
    let samples: Vec<(Labels, Value)> = samples.into_iter().collect();
    let Some(first) = samples.first() else {
        return Ok(());
    };
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), first.1.metric_type())?;
    for (labels, v) in &samples {
        v.encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn l(k: &'static str, v: impl Into<Cow<'static, str>>) -> (&'static str, Cow<'static, str>) {
    (k, v.into())
}

fn listener_labels(x: &ListenerStatus) -> Labels {
    vec![
        l("listener", x.name.clone()),
        l("protocol", x.protocol.clone()),
    ]
}

fn with(mut base: Labels, extra: &[(&'static str, Cow<'static, str>)]) -> Labels {
    base.extend(extra.iter().cloned());
    base
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut enc;
        family(
            e,
            "herd_build_info",
            "herd's version (always 1).",
            None,
            [(vec![l("version", self.version.clone())], Value::Gauge(1))],
        )?;
        family(
            e,
            "herd_generation",
            "The running configuration generation (bumped by every reload).",
            None,
            [(vec![], Value::Gauge(self.generation as i64))],
        )?;
        family(
            e,
            "herd_workers",
            "Configured worker processes.",
            None,
            [(vec![], Value::Gauge(self.workers as i64))],
        )?;
        family(
            e,
            "herd_workers_reporting",
            "Workers of the running generation whose counters are in these sums.",
            None,
            [(vec![], Value::Gauge(self.reporting.len() as i64))],
        )?;
        let secs = |since: u64| self.now_ms.saturating_sub(since) as f64 / 1000.0;
        let slot = |s: usize| l("slot", s.to_string());
        let mut uptime: Vec<(Labels, Value)> = Vec::new();
        let mut rss = Vec::new();
        let mut fds = Vec::new();
        let mut cpu = Vec::new();
        if let Some(m) = &self.master {
            let lab = vec![l("role", "master"), l("slot", "")];
            uptime.push((lab.clone(), Value::GaugeF(secs(m.started_ms))));
            rss.push((lab.clone(), Value::Gauge(m.process.rss_bytes as i64)));
            fds.push((lab.clone(), Value::Gauge(m.process.open_fds as i64)));
            cpu.push((lab, Value::CounterF(m.process.cpu_ms as f64 / 1000.0)));
        }
        for w in &self.reporting {
            let lab = vec![l("role", "worker"), slot(w.worker_slot)];
            uptime.push((lab.clone(), Value::GaugeF(secs(w.worker_started_ms))));
            rss.push((lab.clone(), Value::Gauge(w.process.rss_bytes as i64)));
            fds.push((lab.clone(), Value::Gauge(w.process.open_fds as i64)));
            cpu.push((lab, Value::CounterF(w.process.cpu_ms as f64 / 1000.0)));
        }
        family(
            e,
            "herd_uptime",
            "Time since the master or worker started.",
            Some(Unit::Seconds),
            uptime,
        )?;
        let m = self.master.clone().unwrap_or_default();
        family(
            e,
            "herd_worker_restarts",
            "Workers the master respawned after they died.",
            None,
            [(vec![], Value::Counter(m.worker_restarts))],
        )?;
        family(
            e,
            "herd_worker_kills",
            "Workers killed (SIGKILL) for outliving their stop deadline; what they still held was cut.",
            None,
            [(vec![], Value::Counter(m.workers_killed))],
        )?;
        family(
            e,
            "herd_reloads",
            "Configuration reloads, by result.",
            None,
            [
                (vec![l("result", "ok")], Value::Counter(m.reloads_ok)),
                (
                    vec![l("result", "failed")],
                    Value::Counter(m.reloads_failed),
                ),
            ],
        )?;
        family(
            e,
            "herd_upgrades",
            "Binary upgrades, by result.",
            None,
            [
                (vec![l("result", "started")], Value::Counter(m.upgrades)),
                (
                    vec![l("result", "failed")],
                    Value::Counter(m.upgrades_failed),
                ),
            ],
        )?;
        family(
            e,
            "herd_process_resident_memory",
            "Resident memory of the master and of each worker.",
            Some(Unit::Bytes),
            rss,
        )?;
        family(
            e,
            "herd_process_open_fds",
            "Open file descriptors of the master and of each worker.",
            None,
            fds,
        )?;
        family(
            e,
            "herd_process_cpu",
            "User plus system CPU time of the master and of each worker.",
            Some(Unit::Seconds),
            cpu,
        )?;
        let guarded: Vec<_> = self
            .reporting
            .iter()
            .filter_map(|w| {
                let lab = vec![l("role", "worker"), slot(w.worker_slot)];
                Some((lab, w.overload.as_ref()?))
            })
            .collect();
        family(
            e,
            "herd_memory_budget",
            "The overload guard's memory budget of each worker (memory_budget).",
            Some(Unit::Bytes),
            guarded
                .iter()
                .map(|(lab, o)| (lab.clone(), Value::Gauge(o.budget_bytes as i64))),
        )?;
        family(
            e,
            "herd_memory_held",
            "What each worker's connections hold against its budget: read buffers, queued \
             output, request bodies.",
            Some(Unit::Bytes),
            guarded
                .iter()
                .map(|(lab, o)| (lab.clone(), Value::Gauge(o.held_bytes as i64))),
        )?;
        family(
            e,
            "herd_overload_level",
            "Each worker's overload level: 0 normal, 1 soft (no keep-alive, largest holders not \
             read), 2 hard (503, no accepting, largest holders reset).",
            None,
            guarded.iter().map(|(lab, o)| {
                let n = match o.level.as_str() {
                    "soft" => 1,
                    "hard" => 2,
                    _ => 0,
                };
                (lab.clone(), Value::Gauge(n))
            }),
        )?;
        family(
            e,
            "herd_overload_entered",
            "Times each worker's overload level rose to soft or to hard.",
            None,
            guarded.iter().flat_map(|(lab, o)| {
                [("soft", o.soft_entered), ("hard", o.hard_entered)]
                    .map(|(lv, n)| (with(lab.clone(), &[l("level", lv)]), Value::Counter(n)))
            }),
        )?;

        let ls = &self.listeners;
        let per = |f: &dyn Fn(&ListenerStatus) -> Value<'static>| {
            ls.iter()
                .map(|x| (listener_labels(x), f(x)))
                .collect::<Vec<_>>()
        };
        family(
            e,
            "herd_connections_accepted",
            "Connections accepted (including those refused at once for a limit).",
            None,
            per(&|x| Value::Counter(x.accepted)),
        )?;
        family(
            e,
            "herd_connections_open",
            "Connections open now.",
            None,
            per(&|x| Value::Gauge(x.open as i64)),
        )?;
        family(
            e,
            "herd_connections_closed",
            "Connections closed, by reason (flood and heartbeat closes included).",
            None,
            ls.iter().flat_map(|x| {
                CloseReason::ALL.iter().map(move |r| {
                    (
                        with(listener_labels(x), &[l("reason", r.as_str())]),
                        Value::Counter(x.closed_by(*r)),
                    )
                })
            }),
        )?;
        family(
            e,
            "herd_connections_refused",
            "Connections refused at accept, by the limit that refused them.",
            None,
            ls.iter().flat_map(|x| {
                let total = x.closed_by(CloseReason::Limit);
                [
                    (
                        with(listener_labels(x), &[l("limit", "max_connections")]),
                        Value::Counter(total.saturating_sub(x.refused_per_ip)),
                    ),
                    (
                        with(listener_labels(x), &[l("limit", "per_ip")]),
                        Value::Counter(x.refused_per_ip),
                    ),
                ]
            }),
        )?;
        family(
            e,
            "herd_received",
            "Bytes read from peers.",
            Some(Unit::Bytes),
            per(&|x| Value::Counter(x.bytes_in)),
        )?;
        family(
            e,
            "herd_sent",
            "Bytes written to peers.",
            Some(Unit::Bytes),
            per(&|x| Value::Counter(x.bytes_out)),
        )?;
        family(
            e,
            "herd_messages_received",
            "Messages decoded: HTTP requests, frames, WebSocket messages, lines.",
            None,
            per(&|x| Value::Counter(x.msgs_in)),
        )?;
        family(
            e,
            "herd_messages_sent",
            "Messages sent.",
            None,
            per(&|x| Value::Counter(x.msgs_out)),
        )?;

        let http: Vec<_> = ls
            .iter()
            .filter_map(|x| Some((x, x.http.as_ref()?)))
            .collect();
        family(
            e,
            "herd_http_requests",
            "HTTP responses, by method class and status class (combinations seen so far).",
            None,
            http.iter().flat_map(|(x, h)| {
                h.requests.iter().enumerate().flat_map(move |(mi, row)| {
                    row.iter()
                        .enumerate()
                        .filter(move |(si, n)| **n > 0 || (mi, *si) == (0, 1))
                        .map(move |(si, n)| {
                            (
                                with(
                                    listener_labels(x),
                                    &[
                                        l("method", METHODS.get(mi).copied().unwrap_or("other")),
                                        l(
                                            "status_class",
                                            STATUS_CLASSES.get(si).copied().unwrap_or("5xx"),
                                        ),
                                    ],
                                ),
                                Value::Counter(*n),
                            )
                        })
                })
            }),
        )?;
        family(
            e,
            "herd_http_request_duration",
            "Time from a request's head to its response fully queued (loop clock, 1 ms \
             resolution).",
            Some(Unit::Seconds),
            http.iter().map(|(x, h)| {
                (
                    listener_labels(x),
                    Value::Histogram(&h.duration_buckets, h.duration_sum_ms),
                )
            }),
        )?;
        family(
            e,
            "herd_http_request_body",
            "HTTP request body bytes received.",
            Some(Unit::Bytes),
            http.iter()
                .map(|(x, h)| (listener_labels(x), Value::Counter(h.body_bytes_in))),
        )?;
        family(
            e,
            "herd_http_response_body",
            "HTTP response body bytes queued.",
            Some(Unit::Bytes),
            http.iter()
                .map(|(x, h)| (listener_labels(x), Value::Counter(h.body_bytes_out))),
        )?;
        family(
            e,
            "herd_http_limit_req",
            "HTTP requests held back (delayed) or refused (rejected) by limit_req.",
            None,
            http.iter().flat_map(|(x, h)| {
                [("delayed", h.limit_delayed), ("rejected", h.limit_rejected)].map(|(o, n)| {
                    (
                        with(listener_labels(x), &[l("outcome", o)]),
                        Value::Counter(n),
                    )
                })
            }),
        )?;

        family(
            e,
            "herd_http_bad_requests",
            "Malformed requests answered 4xx/5xx and closed, by what was wrong with them.",
            None,
            http.iter().flat_map(|(x, h)| {
                h.bad_requests
                    .iter()
                    .zip(herd_proto::http1::HttpError::ALL.iter())
                    .map(|(n, why)| {
                        (
                            with(listener_labels(x), &[l("reason", why.as_str())]),
                            Value::Counter(*n),
                        )
                    })
                    .collect::<Vec<_>>()
            }),
        )?;

        family(
            e,
            "herd_http_rejections",
            "Requests an extractor refused (answered 400, 413, 415 or 500 without running the handler), by kind.",
            None,
            http.iter().flat_map(|(x, h)| {
                h.rejections
                    .iter()
                    .zip(herd_core::http::extract::RejectionKind::ALL.iter())
                    .map(|(n, kind)| {
                        (
                            with(listener_labels(x), &[l("kind", kind.as_str())]),
                            Value::Counter(*n),
                        )
                    })
                    .collect::<Vec<_>>()
            }),
        )?;

        let ws: Vec<_> = ls
            .iter()
            .filter_map(|x| Some((x, x.ws.as_ref()?)))
            .collect();
        family(
            e,
            "herd_ws_messages_received",
            "WebSocket data messages received.",
            None,
            ws.iter()
                .map(|(x, w)| (listener_labels(x), Value::Counter(w.messages_in))),
        )?;
        family(
            e,
            "herd_ws_messages_sent",
            "WebSocket data messages sent.",
            None,
            ws.iter()
                .map(|(x, w)| (listener_labels(x), Value::Counter(w.messages_out))),
        )?;
        family(
            e,
            "herd_ws_closes",
            "Closed WebSocket connections, by close code (1006: no Close frame).",
            None,
            ws.iter().flat_map(|(x, w)| {
                w.close_codes.iter().enumerate().map(move |(i, n)| {
                    let code = WS_CLOSE_CODES
                        .get(i)
                        .map_or(Cow::Borrowed("other"), |c| Cow::Owned(c.to_string()));
                    (
                        with(listener_labels(x), &[l("code", code)]),
                        Value::Counter(*n),
                    )
                })
            }),
        )?;

        let fr: Vec<_> = ls
            .iter()
            .filter_map(|x| Some((x, x.frame.as_ref()?)))
            .collect();
        family(
            e,
            "herd_frame_requests",
            "Frame requests dispatched, by message id (ids seen so far; larger ids as other).",
            None,
            fr.iter().flat_map(|(x, f)| {
                f.requests
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(move |(i, n)| {
                        let id = if i >= FRAME_IDS {
                            Cow::Borrowed("other")
                        } else {
                            Cow::Owned(i.to_string())
                        };
                        (
                            with(listener_labels(x), &[l("msg_id", id)]),
                            Value::Counter(*n),
                        )
                    })
            }),
        )?;
        family(
            e,
            "herd_frame_errors",
            "Frame error replies and refusals, by kind (busy replies counted apart).",
            None,
            fr.iter().flat_map(|(x, f)| {
                f.errors.iter().map(move |(k, n)| {
                    (
                        with(listener_labels(x), &[l("kind", k.clone())]),
                        Value::Counter(*n),
                    )
                })
            }),
        )?;
        family(
            e,
            "herd_frame_busy_replies",
            "BUSY replies: the blocking pool's queue was full.",
            None,
            fr.iter()
                .map(|(x, f)| (listener_labels(x), Value::Counter(f.busy))),
        )?;
        family(
            e,
            "herd_frame_pings_sent",
            "Pings sent to quiet frame peers.",
            None,
            fr.iter()
                .map(|(x, f)| (listener_labels(x), Value::Counter(f.pings_sent))),
        )?;
        family(
            e,
            "herd_frame_pool_queue_depth",
            "Jobs waiting in the blocking pools' queues (summed over workers).",
            None,
            fr.iter()
                .map(|(x, f)| (listener_labels(x), Value::Gauge(f.pool_queued as i64))),
        )?;
        family(
            e,
            "herd_frame_pool_queue_capacity",
            "Capacity of the blocking pools' queues (summed over workers; 0 until first use).",
            None,
            fr.iter()
                .map(|(x, f)| (listener_labels(x), Value::Gauge(f.pool_capacity as i64))),
        )?;

        let tls: Vec<_> = ls
            .iter()
            .filter_map(|x| Some((x, x.tls.as_ref()?)))
            .collect();
        family(
            e,
            "herd_tls_handshakes",
            "TLS handshakes completed.",
            None,
            tls.iter()
                .map(|(x, t)| (listener_labels(x), Value::Counter(t.handshakes))),
        )?;
        family(
            e,
            "herd_tls_failures",
            "TLS connections that failed, by reason (not_tls, timeout, cert_rejected, ...).",
            None,
            tls.iter().flat_map(|(x, t)| {
                TlsFailure::ALL.iter().map(move |r| {
                    (
                        with(listener_labels(x), &[l("reason", r.as_str())]),
                        Value::Counter(t.failed.get(r.index()).copied().unwrap_or(0)),
                    )
                })
            }),
        )?;

        let proxy: Vec<_> = ls
            .iter()
            .filter_map(|x| Some((x, x.proxy.as_ref()?)))
            .collect();
        family(
            e,
            "herd_proxy_headers",
            "PROXY protocol headers accepted (connections whose client address came from one).",
            None,
            proxy
                .iter()
                .map(|(x, p)| (listener_labels(x), Value::Counter(p.headers))),
        )?;
        family(
            e,
            "herd_proxy_failures",
            "Connections closed for their PROXY header, by reason (not_proxy, timeout, ...).",
            None,
            proxy.iter().flat_map(|(x, p)| {
                ProxyFailure::ALL.iter().map(move |r| {
                    (
                        with(listener_labels(x), &[l("reason", r.as_str())]),
                        Value::Counter(p.failed.get(r.index()).copied().unwrap_or(0)),
                    )
                })
            }),
        )?;
        // The reverse proxy, summed over the reporting workers by upstream name.
        let mut ups: Vec<crate::status::UpstreamStatus> = Vec::new();
        for u in self.reporting.iter().flat_map(|w| w.upstreams.iter()) {
            match ups.iter_mut().find(|x| x.name == u.name) {
                Some(x) => {
                    if x.outcomes.len() < u.outcomes.len() {
                        x.outcomes.resize(u.outcomes.len(), 0);
                    }
                    for (a, b) in x.outcomes.iter_mut().zip(&u.outcomes) {
                        *a += b;
                    }
                    x.next_backend += u.next_backend;
                }
                None => ups.push(u.clone()),
            }
        }
        family(
            e,
            "herd_upstream_requests",
            "Requests passed to an [[upstream]] by the reverse proxy, by outcome (ok, \
             bad_gateway, timeout, no_live, queue_full, queue_timeout).",
            None,
            ups.iter().flat_map(|u| {
                crate::reverse_proxy::Outcome::ALL
                    .iter()
                    .enumerate()
                    .map(move |(i, o)| {
                        (
                            vec![l("upstream", u.name.clone()), l("outcome", o.as_str())],
                            Value::Counter(u.outcomes.get(i).copied().unwrap_or(0)),
                        )
                    })
            }),
        )?;
        family(
            e,
            "herd_upstream_next_backend",
            "Proxied attempts that failed on one backend and went on to the next.",
            None,
            ups.iter().map(|u| {
                (
                    vec![l("upstream", u.name.clone())],
                    Value::Counter(u.next_backend),
                )
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{FrameStatus, HttpStatus, ProxyStatus, TlsStatus, WsStatus};
    use herd_core::proxy::PROXY_FAILURES;

    fn listener(name: &str, protocol: &str, k: u64) -> ListenerStatus {
        ListenerStatus {
            name: name.into(),
            protocol: protocol.into(),
            accepted: 10 * k,
            open: k,
            bytes_in: 100 * k,
            msgs_in: 7 * k,
            closed: {
                let mut c = vec![0; CloseReason::COUNT];
                c[CloseReason::Flood.index()] = k;
                c[CloseReason::Limit.index()] = 3 * k;
                c
            },
            refused_per_ip: k,
            http: (protocol == "http").then(|| HttpStatus {
                requests: {
                    let mut r = vec![vec![0; 5]; 8];
                    r[0][1] = 5 * k;
                    r[2][4] = k;
                    r
                },
                duration_buckets: {
                    let mut b = vec![0; DURATION_BOUNDS_MS.len() + 1];
                    b[0] = 4 * k;
                    b[12] = 2 * k;
                    b
                },
                duration_sum_ms: 30_000 * k,
                body_bytes_in: 9 * k,
                body_bytes_out: 11 * k,
                limit_delayed: k,
                limit_rejected: 2 * k,
                bad_requests: vec![k; herd_proto::http1::HttpError::ALL.len()],
                rejections: vec![k; herd_core::http::extract::RejectionKind::ALL.len()],
            }),
            ws: (protocol == "http").then(|| WsStatus {
                messages_in: k,
                messages_out: k,
                close_codes: {
                    let mut c = vec![0; WS_CLOSE_CODES.len() + 1];
                    c[0] = k;
                    c
                },
            }),
            frame: (protocol == "frame").then(|| FrameStatus {
                requests: {
                    let mut r = vec![0; FRAME_IDS + 1];
                    r[1] = 6 * k;
                    r[FRAME_IDS] = k;
                    r
                },
                errors: vec![("unknown_id".into(), k)],
                busy: 2 * k,
                pings_sent: k,
                pool_queued: 0,
                pool_capacity: 1024,
            }),
            tls: (protocol == "http").then(|| TlsStatus {
                handshakes: 5 * k,
                failed: {
                    let mut f = vec![0; TlsFailure::COUNT];
                    f[TlsFailure::NotTls.index()] = k;
                    f
                },
            }),
            proxy: (protocol == "frame").then(|| ProxyStatus {
                headers: 4 * k,
                failed: {
                    let mut f = vec![0; PROXY_FAILURES];
                    f[ProxyFailure::Timeout.index()] = k;
                    f
                },
            }),
            ..Default::default()
        }
    }

    fn scrape() -> Scrape {
        let workers: Vec<Status> = (0..2)
            .map(|slot| Status {
                worker_slot: slot,
                generation: 3,
                workers: 2,
                listeners: vec![listener("site", "http", 1), listener("fr", "frame", 1)],
                overload: Some(crate::status::OverloadStatus {
                    budget_bytes: 64 << 20,
                    held_bytes: 1 << 20,
                    peak_bytes: 9 << 20,
                    level: "soft".into(),
                    soft_entered: 3,
                    hard_entered: 1,
                }),
                upstreams: vec![crate::status::UpstreamStatus {
                    name: "app".into(),
                    outcomes: vec![5, 1, 2, 0],
                    next_backend: 3,
                }],
                ..Default::default()
            })
            .collect();
        Scrape {
            version: "9.9.9".into(),
            generation: 3,
            workers: 2,
            listeners: sum_listeners(workers.iter()),
            reporting: workers,
            master: Some(MasterStatus {
                worker_restarts: 4,
                workers_killed: 1,
                reloads_ok: 2,
                ..Default::default()
            }),
            now_ms: 0,
        }
    }

    /// The value of the sample named `series` whose labels are exactly those of `labels`
    /// (`{a="1",b="2"}` in any order, or empty).
    fn value(text: &str, series: &str) -> f64 {
        let split = |s: &str| -> (String, Vec<String>) {
            match s.split_once('{') {
                Some((n, rest)) => {
                    let mut l: Vec<String> = rest
                        .trim_end_matches('}')
                        .split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned)
                        .collect();
                    l.sort();
                    (n.to_owned(), l)
                }
                None => (s.to_owned(), Vec::new()),
            }
        };
        let want = split(series);
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (k, v) = line.rsplit_once(' ')?;
                (split(k) == want).then(|| v.parse().unwrap())
            })
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    }

    /// Both formats carry every documented series with the right type, the sums over the
    /// workers, cumulative histogram buckets, and OpenMetrics ends with `# EOF`.
    #[test]
    fn every_series_and_type_in_both_formats() {
        for om in [false, true] {
            let text = scrape().encode(om);
            for (name, kind) in SERIES {
                let base = name.strip_suffix("_total").filter(|_| om).unwrap_or(name);
                assert!(
                    text.contains(&format!("# TYPE {base} {kind}")),
                    "{base} {kind} (openmetrics {om})\n{text}"
                );
            }
            assert_eq!(om, text.ends_with("# EOF\n"));
            let site = "{listener=\"site\",protocol=\"http\"";
            assert_eq!(
                value(&text, &format!("herd_connections_accepted_total{site}}}")),
                20.0
            );
            assert_eq!(
                value(
                    &text,
                    &format!(
                        "herd_http_requests_total{site},method=\"GET\",status_class=\"2xx\"}}"
                    )
                ),
                10.0
            );
            assert_eq!(
                value(
                    &text,
                    &format!("herd_connections_refused_total{site},limit=\"per_ip\"}}")
                ),
                2.0
            );
            assert_eq!(
                value(
                    &text,
                    &format!("herd_connections_closed_total{site},reason=\"flood\"}}")
                ),
                2.0
            );
            assert_eq!(
                value(
                    &text,
                    &format!("herd_http_rejections_total{site},kind=\"invalid_json\"}}")
                ),
                2.0
            );
            let h = "herd_http_request_duration_seconds";
            assert_eq!(
                value(&text, &format!("{h}_bucket{site},le=\"0.001\"}}")),
                8.0
            );
            assert_eq!(value(&text, &format!("{h}_bucket{site},le=\"2.5\"}}")), 8.0);
            assert_eq!(
                value(&text, &format!("{h}_bucket{site},le=\"+Inf\"}}")),
                12.0
            );
            assert_eq!(value(&text, &format!("{h}_count{site}}}")), 12.0);
            assert_eq!(value(&text, &format!("{h}_sum{site}}}")), 60.0);
            let fr = "{listener=\"fr\",protocol=\"frame\"";
            assert_eq!(
                value(
                    &text,
                    &format!("herd_frame_requests_total{fr},msg_id=\"other\"}}")
                ),
                2.0
            );
            assert_eq!(
                value(&text, &format!("herd_frame_busy_replies_total{fr}}}")),
                4.0
            );
            assert_eq!(
                value(&text, &format!("herd_tls_handshakes_total{site}}}")),
                10.0
            );
            assert_eq!(
                value(
                    &text,
                    &format!("herd_tls_failures_total{site},reason=\"not_tls\"}}")
                ),
                2.0
            );
            assert_eq!(
                value(
                    &text,
                    &format!("herd_tls_failures_total{site},reason=\"timeout\"}}")
                ),
                0.0
            );
            assert_eq!(
                value(&text, &format!("herd_proxy_headers_total{fr}}}")),
                8.0
            );
            assert_eq!(
                value(
                    &text,
                    &format!("herd_proxy_failures_total{fr},reason=\"timeout\"}}")
                ),
                2.0
            );
            assert_eq!(
                value(
                    &text,
                    &format!("herd_proxy_failures_total{fr},reason=\"not_proxy\"}}")
                ),
                0.0
            );
            // Listeners without the PROXY protocol export no PROXY series.
            assert!(!text.contains(&format!("herd_proxy_headers_total{site}}}")));
            assert_eq!(value(&text, "herd_worker_restarts_total"), 4.0);
            assert_eq!(value(&text, "herd_worker_kills_total"), 1.0);
            assert_eq!(value(&text, "herd_reloads_total{result=\"ok\"}"), 2.0);
            assert_eq!(value(&text, "herd_workers_reporting"), 2.0);
            // Upstream counters are summed over the workers by upstream name.
            let up = |o: &str| {
                format!("herd_upstream_requests_total{{upstream=\"app\",outcome=\"{o}\"}}")
            };
            assert_eq!(value(&text, &up("ok")), 10.0);
            assert_eq!(value(&text, &up("timeout")), 4.0);
            assert_eq!(value(&text, &up("no_live")), 0.0);
            assert_eq!(
                value(&text, "herd_upstream_next_backend_total{upstream=\"app\"}"),
                6.0
            );
        }
    }

    /// docs/metrics.md lists exactly the series of [`SERIES`].
    #[test]
    fn the_docs_list_every_series() {
        let doc = include_str!("../../../docs/metrics.md");
        let mut documented: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `herd_"))
            .filter_map(|l| l.split('`').next())
            .collect();
        documented.sort();
        let mut code: Vec<&str> = SERIES
            .iter()
            .map(|(n, _)| n.strip_prefix("herd_").unwrap())
            .collect();
        code.sort();
        assert_eq!(documented, code);
    }

    #[test]
    fn accept_header_picks_the_format() {
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        ));
        assert!(!wants_openmetrics("text/plain"));
        assert!(!wants_openmetrics("*/*"));
    }
}
