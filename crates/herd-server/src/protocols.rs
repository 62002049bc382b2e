//! Protocol dispatch: turn one `[[listener]]` plus its inherited socket into a running herd-core
//! [`Server`], with the handler for its protocol: HTTP (the bundled site, or a static
//! directory, with an optional access log, and WebSocket echo on its `ws_path`), WebSocket
//! echo on every path, the frame demo router, or the line [`Echo`].
//!
//! Adding a protocol is one arm in [`start`] (and one in [`available`]). Called by the worker
//! once per listener after it has taken its sockets; this module never binds, forks or reads
//! configuration files.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use herd_core::frame::{FloodLimits, FrameService, HandlerError};
use herd_core::http::{
    header, Body, Compression, HeaderValue, HttpOptions, HttpService, LimitReq, Limits, Response,
    Router, StaticDir, StatusCode,
};
use herd_core::limit::{Rate, RateLimit, RateTable};
use herd_core::overload::MemoryBudget;
use herd_core::proxy::ProxyProtocol;
use herd_core::ws::{WsConn, WsHandler, WsOptions, WsRequest, WsService};
use herd_core::{Options, Server, ServerHandle};

use crate::config::{Config, ListenerConfig, Protocol};
use crate::echo::{Echo, DEFAULT_MAX_LINE};
use crate::logging::Logs;
use crate::site;
use crate::status::StatusBoard;

/// True if this build can serve `p` (every protocol, now that WebSocket has landed).
pub fn available(p: Protocol) -> bool {
    let _ = p;
    true
}

/// The WebSocket path of an HTTP listener: its `ws_path`; none (no WebSocket) if that is
/// absent or `""`. WebSocket is only where the configuration asks for it: a static `root`
/// or the bundled page alone never answers an upgrade.
pub fn ws_path(l: &ListenerConfig) -> Option<String> {
    l.ws_path.clone().filter(|p| !p.is_empty())
}

/// Echoes every WebSocket message (the `ws` protocol, and `ws_path` on HTTP listeners).
pub struct WsEcho;

impl WsHandler for WsEcho {
    type State = ();

    fn on_open(&mut self, _cx: &mut WsConn<'_, Self>, _req: &WsRequest) -> Option<()> {
        Some(())
    }

    fn on_text(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), text: &str) {
        cx.send_text(text);
    }

    fn on_binary(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), data: &[u8]) {
        cx.send_binary(data);
    }
}

/// WebSocket options of a listener: `max_frame` bounds frames and messages,
/// `heartbeat_timeout` closes silent peers (pinged at a third of it).
pub fn ws_options(l: &ListenerConfig) -> WsOptions {
    let mut o = WsOptions::default();
    if let Some(max) = l.max_frame {
        o.max_frame = max as u64;
        o.max_message = max as u64;
    }
    if let Some(t) = l.heartbeat_timeout {
        o.idle_timeout = Some(t.0);
        o.ping_interval = Some((t.0 / 3).max(Duration::from_millis(1)));
    }
    if let Some(d) = &l.ws_deflate {
        o.deflate = Some(herd_core::ws::DeflateConfig {
            server_no_context_takeover: !d.context_takeover,
            client_no_context_takeover: !d.context_takeover,
            server_max_window_bits: d.window_bits,
            client_max_window_bits: 15,
            level: d.level,
            threshold: d.threshold,
        });
    }
    o
}

/// What a listener's handlers may need from the worker.
#[derive(Clone)]
pub struct Context {
    /// The worker's status snapshot (served by the bundled site).
    pub status: StatusBoard,
    /// The worker's logs (for the HTTP access log).
    pub logs: Logs,
    /// The master's TLS session-ticket secret, shared by its workers.
    pub ticket_secret: Option<[u8; 32]>,
    /// The frame services started, by listener name (their counters go into the status).
    pub frames: FrameServices,
    /// The `limit_req` tables the master shares with its workers, by listener name. A
    /// limited listener missing here gets a table of this process alone.
    pub rate_tables: Vec<(String, Arc<RateTable>)>,
    /// The worker's memory budget (`memory_budget`), shared by all its listeners.
    pub budget: Option<Arc<MemoryBudget>>,
}

/// The frame services a worker started, by listener name.
pub type FrameServices = std::sync::Arc<std::sync::Mutex<Vec<(String, FrameService)>>>;

/// The default `send_timeout` of every listener (nginx's `send_timeout`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// herd-core options for a listener.
pub fn options(l: &ListenerConfig, cfg: &Config) -> Options {
    let mut o = Options {
        loops: l.loops.unwrap_or(cfg.loops).max(1),
        backlog: l.backlog,
        drain_grace: cfg.drain_grace.0,
        lingering_close: cfg.lingering_close.0,
        ..Options::default()
    };
    // HTTP applies its own keep-alive timeout (a long download receives nothing for a while
    // and must not count as idle); the others close connections silent for `idle_timeout`.
    if l.protocol != Protocol::Http {
        o.idle_timeout = l.idle_timeout.map(|d| d.0);
    }
    if let Some(n) = l.max_connections {
        o.max_connections = n;
    }
    o.max_connections_per_ip = l.max_connections_per_ip;
    if let Some(n) = l.notsent_lowat {
        o.notsent_lowat = (n > 0).then_some(n);
    }
    let send = l.send_timeout.map_or(DEFAULT_SEND_TIMEOUT, |d| d.0);
    o.send_timeout = (!send.is_zero()).then_some(send);
    o.send_min_rate = l.send_min_rate;
    if l.proxy_protocol {
        let defaults = ProxyProtocol::default();
        o.proxy_protocol = Some(ProxyProtocol {
            // The configuration was validated: every entry parses.
            trusted: l
                .proxy_trusted
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            timeout: l.proxy_timeout.map_or(defaults.timeout, |d| d.0),
            ..defaults
        });
    }
    o
}

/// Start serving `l` on `socks` (its slot's socket, plus any slot sockets left to this worker).
pub fn start(
    l: &ListenerConfig,
    cfg: &Config,
    socks: Vec<TcpListener>,
    cx: &Context,
) -> io::Result<ServerHandle> {
    let mut server = socks
        .into_iter()
        .fold(Server::new().options(options(l, cfg)), Server::listener);
    if let Some(b) = &cx.budget {
        server = server.memory_budget(b.clone());
    }
    if let Some(tls) = &l.tls {
        let acceptor = tls
            .acceptor(l.protocol, &l.server, cx.ticket_secret)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        server = server.tls(acceptor);
    }
    match l.protocol {
        Protocol::Echo => {
            let max = l.max_frame.unwrap_or(DEFAULT_MAX_LINE);
            server.serve(move || Echo::new(max))
        }
        Protocol::Http => {
            let http = http_service(l, &cfg.upstreams, cx)?;
            match ws_path(l) {
                Some(path) => WsService::new(|| WsEcho)
                    .options(ws_options(l))
                    .path(path)
                    .http(http)
                    .serve(server),
                None => http.serve(server),
            }
        }
        Protocol::Frame => {
            let frames = frame_service(l, cx);
            server.serve(move || frames.protocol())
        }
        Protocol::Ws => WsService::new(|| WsEcho)
            .options(ws_options(l))
            .serve(server),
        Protocol::Admin => http_service(l, &[], cx)?.serve(server),
    }
}

/// The HTTP service of a listener: a static directory if `root` is set, else the bundled
/// site (the page and its status endpoint); the `proxy` locations, to `upstreams`; the access
/// log if one is configured.
pub fn http_service(
    l: &ListenerConfig,
    upstreams: &[crate::config::UpstreamConfig],
    cx: &Context,
) -> io::Result<HttpService> {
    let router = match (&l.root, l.https_redirect) {
        (_, Some(port)) => redirect_router(port),
        _ if !l.server.is_empty() => {
            crate::vhost::Vhosts::new(&l.server, l.root.as_deref(), l.tls.is_some())?.router()
        }
        (Some(root), None) => Router::new().statics(
            "/",
            StaticDir::new(root)?
                .precompressed(l.compression.as_ref().is_some_and(|c| c.precompressed)),
        ),
        (None, None) => site_router(
            cx.status.clone(),
            l.metrics || l.protocol == Protocol::Admin,
            if l.protocol == Protocol::Http {
                ws_path(l)
            } else {
                None
            },
        ),
    };
    let router = if l.proxy.is_empty() {
        router
    } else {
        let max_body = l
            .max_body
            .map_or(HttpOptions::default().limits.max_body, |m| m as u64);
        crate::reverse_proxy::routes(router, &l.proxy, upstreams, l.tls.is_some(), max_body)
    };
    let mut opts = HttpOptions::default();
    if let Some(max) = l.max_body {
        opts.limits = Limits {
            max_body: max as u64,
            ..opts.limits
        };
    }
    if let Some(t) = l.header_timeout {
        opts.header_timeout = t.0;
    }
    if let Some(t) = l.body_timeout {
        opts.body_timeout = t.0;
    }
    opts.body_min_rate = l.body_min_rate;
    if let Some(t) = l.idle_timeout {
        opts.keepalive_timeout = t.0;
    }
    if let Some(v) = l.tls.as_ref().and_then(|t| t.hsts_value()) {
        let v = HeaderValue::from_str(&v).map_err(io::Error::other)?;
        opts.response_headers
            .insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    opts.compression = compression(l);
    opts.limit_req = limit_req(l, cx);
    let mut service = HttpService::new(router).options(opts);
    if cx.logs.has_access_log() {
        let logs = cx.logs.clone();
        let name = l.name.clone();
        let format = l.access_log_format;
        service = service.access_log(move |e| {
            logs.access(&crate::logging::access_line(
                format,
                e,
                &name,
                std::time::SystemTime::now(),
            ))
        });
    }
    Ok(service)
}

/// herd-core compression settings of a listener's `compression` table, if it has one.
pub fn compression(l: &ListenerConfig) -> Option<Compression> {
    l.compression.as_ref().map(|c| Compression {
        gzip_level: c.gzip_level,
        brotli_level: c.brotli_level,
        min_length: c.min_length,
        ..Compression::default()
    })
}

/// The listener's `limit_req` over the table its master shares (see [`Context::rate_tables`]).
pub fn limit_req(l: &ListenerConfig, cx: &Context) -> Option<LimitReq> {
    let r = l.limit_req.as_ref()?;
    // The configuration was validated: the rate parses and the status is an error status.
    let rate = Rate::parse(&r.rate)?;
    let table = cx
        .rate_tables
        .iter()
        .find(|(n, _)| *n == l.name)
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| {
            tracing::warn!(
                "listener {}: no shared limit_req table; this worker limits on its own",
                l.name
            );
            Arc::new(RateTable::new(r.entries))
        });
    Some(LimitReq {
        limit: RateLimit::new(rate, r.burst, table).nodelay(r.nodelay),
        status: StatusCode::from_u16(r.status).ok()?,
    })
}

/// Every request answered with a `301` to the same host and path over https on `port`
/// (`https_redirect`), like nginx's `return 301 https://$host$request_uri`.
pub fn redirect_router(port: u16) -> Router {
    let to_https = move |req: herd_core::http::Request<Body>| {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(strip_port)
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("localhost")
            .to_owned();
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let location = if port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{port}{path}")
        };
        let mut r = Response::new(Body::from_static(b"Moved to https\n"));
        *r.status_mut() = herd_core::http::StatusCode::MOVED_PERMANENTLY;
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    };
    Router::new().any("/", to_https).any("/*", to_https)
}

/// `host[:port]` or `[v6]:port` without the port.
fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']').map_or(h, |(a, _)| &h[..a.len() + 2]);
    }
    h.rsplit_once(':').map_or(h, |(a, _)| a)
}

/// The bundled site: `/` (the page), [`site::HEALTH_PATH`] (the health check),
/// [`site::STATUS_PATH`] (this worker's status as JSON),
/// [`site::HISTORY_PATH`] (the last 15 minutes) and, if `metrics`,
/// [`crate::metrics::METRICS_PATH`]. WebSocket on `/ws` is added around it by [`start`] (see
/// [`ws_path`]).
/// `ws_path` is where this listener serves WebSocket (the page offers its echo there only).
pub fn site_router(status: StatusBoard, metrics: bool, ws_path: Option<String>) -> Router {
    let page = |_req| {
        let mut r = Response::new(Body::from_static(site::INDEX_HTML.as_bytes()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    };
    let history = status.clone();
    let health = status.clone();
    let mut router = Router::new()
        .get(site::HEALTH_PATH, move |_req| {
            // 503 once this worker drains: a balancer stops sending it new requests.
            let (status, text) = if health.is_draining() {
                (
                    herd_core::http::StatusCode::SERVICE_UNAVAILABLE,
                    "draining\n",
                )
            } else {
                (herd_core::http::StatusCode::OK, "ok\n")
            };
            let mut r = Response::new(Body::from_static(text.as_bytes()));
            *r.status_mut() = status;
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        })
        .get("/", page)
        .get("/index.html", page)
        .get(site::HISTORY_PATH, move |req| {
            let since = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("since=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut r = Response::new(Body::from(history.history_json(since)));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        });
    if metrics {
        let board = status.clone();
        router = router.get(crate::metrics::METRICS_PATH, move |req| {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let (body, content_type) = crate::metrics::render(&board, accept);
            let mut r = Response::new(Body::from(body));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        });
    }
    router.get(site::STATUS_PATH, move |_req| {
        let mut r = Response::new(Body::from(status.json_with_ws(Some(ws_path.clone()))));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    })
}

/// Message ids of the frame demo service.
pub mod frame_ids {
    /// Echo the body back.
    pub const ECHO: u16 = 1;
    /// Reply with this worker's status as JSON (body ignored).
    pub const STATUS: u16 = 2;
    /// Reply with the body in upper case, computed on the worker pool.
    pub const UPPER: u16 = 3;
}

/// The frame demo service: echo, status and a worker-pool route, with the listener's limits.
pub fn frame_service(l: &ListenerConfig, cx: &Context) -> FrameService {
    let status = cx.status.clone();
    let router = herd_core::frame::Router::new()
        .route_raw(frame_ids::ECHO, |_cx, body| Ok(Some(body.to_vec())))
        .route_raw(frame_ids::STATUS, move |_cx, _body| {
            Ok(Some(status.get().to_json().into_bytes()))
        })
        .route_blocking_raw(frame_ids::UPPER, |body| {
            std::str::from_utf8(body)
                .map(|s| s.to_uppercase().into_bytes())
                .map_err(|_| HandlerError::new("body is not UTF-8"))
        });
    let mut frames = FrameService::new(router);
    if let Some(max) = l.max_frame {
        frames = frames.max_frame(u32::try_from(max).unwrap_or(u32::MAX));
    }
    if let Some(t) = l.heartbeat_timeout {
        frames = frames
            .heartbeat_timeout(t.0)
            .ping_interval((t.0 / 3).max(Duration::from_millis(1)));
    }
    let frames = frames.flood_limits(FloodLimits {
        msgs_per_sec: l.flood_msgs_per_sec.map(u64::from),
        bytes_per_sec: l.flood_bytes_per_sec,
    });
    cx.frames
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((l.name.clone(), frames.clone()));
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;
    use std::io::{BufRead, BufReader, Write};

    #[test]
    fn options_follow_the_listener() {
        let cfg = Config {
            loops: 3,
            ..Config::default()
        };
        let l = ListenerConfig {
            protocol: Protocol::Echo,
            max_connections: Some(7),
            max_connections_per_ip: Some(2),
            idle_timeout: Some(Dur(Duration::from_secs(4))),
            backlog: 99,
            ..ListenerConfig::default()
        };
        let o = options(&l, &cfg);
        assert_eq!(o.loops, 3);
        assert_eq!(o.max_connections, 7);
        assert_eq!(o.max_connections_per_ip, Some(2));
        assert_eq!(o.idle_timeout, Some(Duration::from_secs(4)));
        assert_eq!(o.backlog, 99);
        assert_eq!(o.notsent_lowat, Some(herd_core::NOTSENT_LOWAT));
        let off = ListenerConfig {
            notsent_lowat: Some(0),
            ..l.clone()
        };
        assert_eq!(options(&off, &cfg).notsent_lowat, None);
        let set = ListenerConfig {
            notsent_lowat: Some(16384),
            ..l.clone()
        };
        assert_eq!(options(&set, &cfg).notsent_lowat, Some(16384));
        assert_eq!(o.proxy_protocol, None);
        assert_eq!(o.send_timeout, Some(DEFAULT_SEND_TIMEOUT));
        let never = ListenerConfig {
            send_timeout: Some(Dur(Duration::ZERO)),
            ..l.clone()
        };
        assert_eq!(options(&never, &cfg).send_timeout, None);
        let proxied = ListenerConfig {
            proxy_protocol: true,
            proxy_trusted: vec!["127.0.0.0/8".into(), "::1".into()],
            ..l.clone()
        };
        let pp = options(&proxied, &cfg).proxy_protocol.unwrap();
        assert!(pp.trusts("127.0.0.3".parse().unwrap()));
        assert!(!pp.trusts("10.0.0.1".parse().unwrap()));
        assert_eq!(pp.timeout, Duration::from_secs(5));
        let quick = ListenerConfig {
            proxy_timeout: Some(Dur(Duration::from_millis(300))),
            ..proxied
        };
        let pp = options(&quick, &cfg).proxy_protocol.unwrap();
        assert_eq!(pp.timeout, Duration::from_millis(300));
        let o = options(
            &ListenerConfig {
                loops: Some(1),
                ..l
            },
            &cfg,
        );
        assert_eq!(o.loops, 1);
    }

    fn cx() -> Context {
        Context {
            status: StatusBoard::new(crate::status::Status {
                worker_slot: 5,
                ..Default::default()
            }),
            logs: Logs::init("test", &Default::default()).unwrap(),
            ticket_secret: None,
            frames: Default::default(),
            rate_tables: Vec::new(),
            budget: None,
        }
    }

    fn serve(
        p: Protocol,
        adjust: impl FnOnce(&mut ListenerConfig),
    ) -> (ServerHandle, std::net::SocketAddr) {
        let sock = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let mut l = ListenerConfig {
            protocol: p,
            loops: Some(1),
            ..ListenerConfig::default()
        };
        adjust(&mut l);
        (
            start(&l, &Config::default(), vec![sock], &cx()).unwrap(),
            addr,
        )
    }

    fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn echo_serves_lines_on_a_given_socket() {
        let (server, addr) = serve(Protocol::Echo, |l| l.max_frame = Some(16));
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"hello\r\nwor").unwrap();
        s.write_all(b"ld\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "hello\n");
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "world\n");
        // Too long a line closes the connection.
        s.write_all(&[b'x'; 40]).unwrap();
        line.clear();
        assert_eq!(r.read_line(&mut line).unwrap_or(0), 0);
        server.stop(Duration::ZERO);
    }

    #[test]
    fn the_bundled_site_serves_the_page_and_status() {
        let (server, addr) = serve(Protocol::Http, |_| {});
        let page = http_get(addr, "/");
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("text/html"), "{page}");
        assert!(page.contains(site::STATUS_PATH));
        let status = http_get(addr, site::STATUS_PATH);
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(status.contains("application/json"), "{status}");
        let body = status.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["worker_slot"], 5);
        assert!(http_get(addr, "/nope").starts_with("HTTP/1.1 404"));
        server.stop(Duration::ZERO);
    }

    #[test]
    fn healthz_turns_503_when_the_worker_drains() {
        let sock = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let l = ListenerConfig {
            loops: Some(1),
            ..ListenerConfig::default()
        };
        let cx = cx();
        let server = start(&l, &Config::default(), vec![sock], &cx).unwrap();
        let ok = http_get(addr, site::HEALTH_PATH);
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok\n"),
            "{ok}"
        );
        cx.status.set_draining();
        let no = http_get(addr, site::HEALTH_PATH);
        assert!(
            no.starts_with("HTTP/1.1 503") && no.ends_with("draining\n"),
            "{no}"
        );
        server.stop(Duration::ZERO);
    }

    #[test]
    fn a_root_serves_that_directory() {
        let dir = std::env::temp_dir().join(format!("herd-root-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello.txt"), "hi from disk").unwrap();
        let root = dir.clone();
        let (server, addr) = serve(Protocol::Http, move |l| l.root = Some(root));
        let got = http_get(addr, "/hello.txt");
        assert!(
            got.starts_with("HTTP/1.1 200") && got.ends_with("hi from disk"),
            "{got}"
        );
        assert!(http_get(addr, site::STATUS_PATH).starts_with("HTTP/1.1 404"));
        server.stop(Duration::ZERO);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_frame_demo_routes() {
        let (server, addr) = serve(Protocol::Frame, |l| l.max_frame = Some(1024));
        let mut c = herd_core::frame::Client::connect(addr).unwrap();
        assert_eq!(c.call_raw(frame_ids::ECHO, b"ping").unwrap(), b"ping");
        assert_eq!(c.call_raw(frame_ids::UPPER, b"herd").unwrap(), b"HERD");
        let status = c.call_raw(frame_ids::STATUS, b"").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&status).unwrap();
        assert_eq!(v["worker_slot"], 5);
        assert!(c.call_raw(frame_ids::UPPER, &[0xff, 0xfe]).is_err());
        server.stop(Duration::ZERO);
    }

    /// Upgrade on `path`, send a masked text frame, read the echo.
    fn ws_echo_roundtrip(addr: std::net::SocketAddr, path: &str) -> Vec<u8> {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut frame = Vec::new();
        herd_proto::ws::encode_frame(
            &mut frame,
            true,
            herd_proto::ws::Opcode::Text,
            b"hi",
            Some([1, 2, 3, 4]),
        );
        s.write_all(&frame).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(&[0x81, 2, b'h', b'i']) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// The status line of the answer to a WebSocket upgrade request for `path`.
    fn upgrade_status(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    }

    #[test]
    fn websocket_echo_on_the_site_and_on_ws_listeners() {
        let (server, addr) = serve(Protocol::Http, |l| l.ws_path = Some("/ws".into()));
        let got = ws_echo_roundtrip(addr, "/ws");
        assert!(got.starts_with(b"HTTP/1.1 101 "));
        assert!(http_get(addr, "/").starts_with("HTTP/1.1 200"));
        server.stop(Duration::ZERO);
        // Only where configured: neither the bundled site nor a static root without
        // `ws_path` (or with `ws_path = ""`) upgrades.
        let site = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("site");
        for (root, ws) in [
            (None, None),
            (Some(site.clone()), None),
            (Some(site), Some("")),
        ] {
            let (server, addr) = serve(Protocol::Http, |l| {
                l.root = root.clone();
                l.ws_path = ws.map(String::from);
            });
            let status = upgrade_status(addr, "/ws");
            assert!(
                status.starts_with("HTTP/1.1 4"),
                "{root:?} {ws:?}: {status}"
            );
            assert!(http_get(addr, "/").starts_with("HTTP/1.1 200"));
            server.stop(Duration::ZERO);
        }
        let (server, addr) = serve(Protocol::Ws, |_| {});
        assert!(ws_echo_roundtrip(addr, "/any/path").starts_with(b"HTTP/1.1 101 "));
        server.stop(Duration::ZERO);
    }

    #[test]
    fn unavailable_protocols_say_so() {
        let sock = TcpListener::bind("127.0.0.1:0").unwrap();
        for p in [
            Protocol::Http,
            Protocol::Frame,
            Protocol::Ws,
            Protocol::Echo,
        ] {
            if available(p) {
                continue;
            }
            let l = ListenerConfig {
                protocol: p,
                ..ListenerConfig::default()
            };
            match start(
                &l,
                &Config::default(),
                vec![sock.try_clone().unwrap()],
                &cx(),
            ) {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::Unsupported),
                Ok(_) => panic!("{p:?} started although unavailable"),
            }
        }
    }
}
