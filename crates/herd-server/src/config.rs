//! The server's configuration: the TOML schema, defaults in code, strict key checking, path
//! resolution and validation.
//!
//! [`load`] reads a file and refuses it if any key is unknown: the error names every such key
//! with its full path (`listener[1].gzip_level`) and a hint (a typo's nearest key, nginx's
//! directive and herd's equivalent, or a top-level key written after a `[[listener]]` header,
//! which TOML reads into that listener; see the `unknown` module). It then resolves relative
//! paths against the file's directory and [`Config::validate`]s the result;
//! [`Config::builtin`] is the configuration used when no file is given. The master loads and
//! validates; workers receive the already-validated configuration from the master (serialized
//! in their environment) and never read the file, so a reload cannot race with an edit. This
//! module must not bind sockets or start anything.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod unknown;

/// A configuration error: where (a dotted key path, or the file) and why; when several keys
/// are unknown, one error carries them all (`more`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path (`listener[0].bind`) or file the error is about.
    pub at: String,
    /// What is wrong.
    pub msg: String,
    /// Further errors found in the same pass (every unknown key after the first).
    pub more: Vec<ConfigError>,
}

impl ConfigError {
    pub(crate) fn new(at: impl Into<String>, msg: impl Into<String>) -> Self {
        ConfigError {
            at: at.into(),
            msg: msg.into(),
            more: Vec::new(),
        }
    }

    /// This error and the further ones, one `at: msg` line each (for a terminal; `Display`
    /// joins them with `; also ` for a log line).
    pub fn lines(&self) -> Vec<String> {
        std::iter::once(self)
            .chain(&self.more)
            .map(ConfigError::line)
            .collect()
    }

    fn line(&self) -> String {
        if self.at.is_empty() {
            self.msg.clone()
        } else {
            format!("{}: {}", self.at, self.msg)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("; also "))
    }
}

impl std::error::Error for ConfigError {}

/// A duration: a string humantime parses (`"500ms"`, `"10s"`, `"2m"`, `"1h 30m"`, `"1.5s"`,
/// `"2days"`), or a number of seconds (a TOML integer or a string of digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parse a duration with [`humantime::parse_duration`]; a bare number is seconds.
    ///
    /// ```
    /// use herd_server::config::Dur;
    /// use std::time::Duration;
    /// assert_eq!(Dur::parse("250ms").unwrap().0, Duration::from_millis(250));
    /// assert_eq!(Dur::parse("2m").unwrap().0, Duration::from_secs(120));
    /// assert_eq!(Dur::parse("1h 30m").unwrap().0, Duration::from_secs(5400));
    /// assert_eq!(Dur::parse("7").unwrap().0, Duration::from_secs(7));
    /// assert!(Dur::parse("soon").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(|n| Dur(Duration::from_secs(n)))
                .map_err(|_| format!("duration {s:?} is too long"));
        }
        humantime::parse_duration(s).map(Dur).map_err(|e| {
            format!(
                "invalid duration {s:?}: {e} (write e.g. \"500ms\", \"10s\", \"2m\", \"1h 30m\")"
            )
        })
    }
}

impl fmt::Display for Dur {
    /// humantime's form (`10s`, `1m 30s`, `1s 500ms`), which [`Dur::parse`] reads back exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"10s\", \"2m\" or a number of seconds")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Dur, E> {
                u64::try_from(n)
                    .map(|n| Dur(Duration::from_secs(n)))
                    .map_err(|_| E::custom(format!("negative duration {n}")))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_secs(n)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Dur, E> {
                Dur::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A count that may be written `"auto"` (meaning: one per CPU core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Count {
    /// One per available core.
    #[default]
    Auto,
    /// Exactly this many.
    N(usize),
}

impl Count {
    /// The number this stands for on this machine.
    pub fn get(self) -> usize {
        match self {
            Count::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Count::N(n) => n,
        }
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Auto => s.serialize_str("auto"),
            Count::N(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or \"auto\"")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Count, E> {
                usize::try_from(n)
                    .map(Count::N)
                    .map_err(|_| E::custom(format!("expected a number or \"auto\", got {n}")))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Count, E> {
                usize::try_from(n)
                    .map(Count::N)
                    .map_err(|_| E::custom(format!("{n} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Count, E> {
                match s {
                    "auto" => Ok(Count::Auto),
                    _ => Err(E::custom(format!(
                        "expected a number or \"auto\", got {s:?}"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (the bundled site or a static directory; WebSocket echo on `ws_path` if set).
    Http,
    /// herd's frame protocol (the demo router).
    Frame,
    /// WebSocket only (echo service on every path).
    Ws,
    /// Line echo: every `\n`-terminated line is sent back.
    Echo,
    /// The admin listener: Prometheus metrics on `/metrics`, plus the dashboard and its JSON
    /// endpoints (HTTP; loopback addresses only unless `allow_remote`).
    Admin,
}

/// Access-log line format (`access_log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    /// nginx's `combined` format (the default).
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// herd's own log format (`log.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per event, its fields as keys.
    Json,
}

impl Protocol {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Frame => "frame",
            Protocol::Ws => "ws",
            Protocol::Echo => "echo",
            Protocol::Admin => "admin",
        }
    }
}

/// Log settings (`[log]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Error/event log file; absent means standard error.
    pub file: Option<PathBuf>,
    /// `trace`, `debug`, `info`, `warn`, `error` or `off`.
    pub level: String,
    /// HTTP access log file; absent means no access log.
    pub access_file: Option<PathBuf>,
    /// `text` or `json` for herd's own log.
    pub format: LogFormat,
    /// Identical error/warning messages written per second per call site before further
    /// ones are counted and summarised in one line (0: no limit).
    pub burst: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            file: None,
            level: "info".into(),
            access_file: None,
            format: LogFormat::Text,
            burst: 10,
        }
    }
}

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerConfig {
    /// A name for logs (default: the protocol and the address).
    pub name: String,
    /// `IP:port` to listen on.
    pub bind: String,
    /// What the listener speaks.
    pub protocol: Protocol,
    /// One `SO_REUSEPORT` socket per worker slot (true, the default) or one socket shared by
    /// all workers (false).
    pub reuseport: bool,
    /// Listen backlog.
    pub backlog: i32,
    /// Event loops per worker for this listener (default: the top-level `loops`).
    pub loops: Option<usize>,
    /// http: serve this directory instead of the bundled page.
    pub root: Option<PathBuf>,
    /// http: the path where the listener answers WebSocket upgrades (echo). Absent (or `""`):
    /// no WebSocket on this listener.
    pub ws_path: Option<String>,
    /// Maximum open connections per worker.
    pub max_connections: Option<usize>,
    /// Maximum open connections per client IP per worker.
    pub max_connections_per_ip: Option<usize>,
    /// Close connections silent for this long.
    pub idle_timeout: Option<Dur>,
    /// http: a request head must arrive within this (408 otherwise).
    pub header_timeout: Option<Dur>,
    /// http: the longest gap between two reads of a request body (408 otherwise).
    pub body_timeout: Option<Dur>,
    /// http: the slowest average a request body may arrive at (bytes/s) once it has been
    /// arriving for `body_timeout` (408 otherwise). Default: none.
    pub body_min_rate: Option<u32>,
    /// Close a connection whose peer takes none of its queued output for this long (default
    /// 60 s; `0s`: never).
    pub send_timeout: Option<Dur>,
    /// With `send_timeout`: the slowest average a peer may take waiting output at (bytes/s),
    /// once it has waited a whole `send_timeout`. Default: none.
    pub send_min_rate: Option<u32>,
    /// frame, ws: close a peer silent for this long.
    pub heartbeat_timeout: Option<Dur>,
    /// frame, ws, echo: largest frame / message / line in bytes.
    pub max_frame: Option<usize>,
    /// http: largest request body in bytes.
    pub max_body: Option<usize>,
    /// frame: flood guard, messages per second per connection.
    pub flood_msgs_per_sec: Option<u32>,
    /// frame: flood guard, bytes per second per connection.
    pub flood_bytes_per_sec: Option<u64>,
    /// `TCP_NOTSENT_LOWAT` in bytes for accepted sockets (0: the system default, no limit).
    pub notsent_lowat: Option<u32>,
    /// Terminate TLS on this listener (see docs/tls.md).
    pub tls: Option<crate::tls::TlsConfig>,
    /// http: answer every request with a `301` to `https://<host>:<this port><path>`.
    pub https_redirect: Option<u16>,
    /// http: also serve Prometheus metrics on `/metrics` (always on for admin listeners).
    pub metrics: bool,
    /// http, admin: access-log line format, `combined` (default) or `json`.
    pub access_log_format: AccessFormat,
    /// admin: allow a non-loopback address.
    pub allow_remote: bool,
    /// http, ws: offer WebSocket permessage-deflate (RFC 7692) to clients that ask.
    pub ws_deflate: Option<WsDeflateConfig>,
    /// http: gzip/Brotli response compression (nginx's `gzip on` and `gzip_static on`).
    pub compression: Option<CompressionConfig>,
    /// http: a request-rate limit per client address, shared by all workers (nginx's
    /// `limit_req`).
    pub limit_req: Option<LimitReqConfig>,
    /// Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy's
    /// `send-proxy` / `send-proxy-v2`); the address it carries is the client's (docs/proxy.md).
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the networks (`10.0.0.0/8`, `::1`) allowed to connect and send
    /// a header; a connection from anywhere else is refused. Required: write `0.0.0.0/0` and
    /// `::/0` to trust every source.
    pub proxy_trusted: Vec<String>,
    /// With `proxy_protocol`: the header must be complete this long after accept (default 5 s).
    pub proxy_timeout: Option<Dur>,
    /// http: reverse-proxied locations, each a path prefix passed to an `[[upstream]]`
    /// (nginx's `location /api/ { proxy_pass http://app; }`, docs/reverse-proxy.md).
    pub proxy: Vec<ProxyLocation>,
    /// http: virtual hosts, picked by `Host` (nginx's `server { server_name ...; }`,
    /// docs/vhosts.md). The listener's own `root`, if any, is the default server.
    pub server: Vec<crate::vhost::ServerConfig>,
}

/// `proxy = [{ path = "/api/", upstream = "app" }]`: requests whose path starts with `path`
/// go to the named `[[upstream]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyLocation {
    /// A path prefix starting with `/` (`"/api/"` also takes `/api`; `"/"` takes everything).
    pub path: String,
    /// The `name` of an `[[upstream]]`.
    pub upstream: String,
    /// Largest request body passed on, in bytes (nginx's `client_max_body_size`); over it
    /// the client gets 413. Default: the listener's `max_body` (1 MiB without one). The
    /// body is streamed to the backend as it arrives, so a large limit costs no memory.
    #[serde(default)]
    pub max_body: Option<u64>,
}

/// How an upstream picks a backend for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancePolicy {
    /// In turn (nginx's default).
    #[default]
    RoundRobin,
    /// The one with the fewest requests in flight from this event loop (nginx's `least_conn`).
    LeastConn,
}

/// One `[[upstream]]`: a named group of backends (nginx's `upstream name { server ...; }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    /// The name a listener's `proxy` refers to. Required.
    pub name: String,
    /// The backends, `IP:port`. At least one.
    pub servers: Vec<String>,
    /// `round_robin` (default) or `least_conn`.
    pub balance: BalancePolicy,
    /// Limit on connecting to a backend (nginx's `proxy_connect_timeout`); default 5 s.
    pub connect_timeout: Dur,
    /// Limit on a backend's whole response once the request is sent; past it the client gets
    /// 504 (nginx's `proxy_read_timeout`, which is per read); default 60 s.
    pub read_timeout: Dur,
    /// Idle keep-alive connections kept per backend by each event loop (nginx's `keepalive`,
    /// which is per worker); 0 closes each after its response. Default 32.
    pub keepalive: usize,
    /// An idle connection is closed after this (nginx's `keepalive_timeout` in `upstream`);
    /// default 60 s.
    pub keepalive_timeout: Dur,
    /// Failures within `fail_timeout` that mark a backend down for `fail_timeout` (nginx's
    /// `max_fails`); 0 never marks it down. Default 1.
    pub max_fails: u32,
    /// See `max_fails` (nginx's `fail_timeout`); default 10 s.
    pub fail_timeout: Dur,
    /// Largest backend response body passed on, in bytes; default 64 MiB (a larger one is a
    /// 502).
    pub max_body: usize,
    /// Connections per backend at most, by each event loop (nginx's `server ... max_conns=`,
    /// which is per worker without a `zone`); 0 (the default) is no limit. Requests beyond
    /// it wait in a FIFO queue for a connection to come free.
    pub max_conns: usize,
    /// Requests that may wait per backend and event loop once `max_conns` are busy (nginx
    /// plus's `queue`); one more is answered 503. Default 1024.
    pub queue: usize,
    /// Longest wait in that queue; past it the client gets 504 (nginx plus's `queue ...
    /// timeout=`). Default 60 s.
    pub queue_timeout: Dur,
    /// HTTPS to the backends (nginx's `proxy_pass https://` with `proxy_ssl_verify on`,
    /// `proxy_ssl_name`, `proxy_ssl_server_name on` and `proxy_ssl_trusted_certificate`).
    pub tls: Option<UpstreamTls>,
}

/// `tls = { name = "api.internal", ca = "/etc/herd/upstream-ca.pem" }` in an `[[upstream]]`:
/// the backends speak HTTPS, their certificate is verified for `name` (also sent as SNI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTls {
    /// The name the backends' certificate must be valid for. Required.
    pub name: String,
    /// PEM file of the CA certificates it must chain to; without it, Mozilla's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl UpstreamTls {
    /// The connector for these settings (reads the CA file: also what `herd -t` checks).
    pub fn connector(&self) -> Result<herd_core::task::TlsConnector, String> {
        let c = match &self.ca {
            Some(ca) => herd_core::task::TlsConnector::ca_file(ca).map_err(|e| e.to_string())?,
            None => herd_core::task::TlsConnector::webpki_roots(),
        };
        Ok(c.alpn(&["http/1.1"]))
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            name: String::new(),
            servers: Vec::new(),
            balance: BalancePolicy::RoundRobin,
            connect_timeout: Dur(Duration::from_secs(5)),
            read_timeout: Dur(Duration::from_secs(60)),
            keepalive: 32,
            keepalive_timeout: Dur(Duration::from_secs(60)),
            max_fails: 1,
            fail_timeout: Dur(Duration::from_secs(10)),
            max_body: 64 << 20,
            max_conns: 0,
            queue: 1024,
            queue_timeout: Dur(Duration::from_secs(60)),
            tls: None,
        }
    }
}

/// Whether `name` can be verified and sent as SNI (a DNS name or an IP address).
fn rustls_name_ok(name: &str) -> Result<(), ()> {
    herd_core::tls::rustls::pki_types::ServerName::try_from(name.to_owned())
        .map(|_| ())
        .map_err(|_| ())
}

/// `compression = { ... }`: HTTP response compression on a listener. Present (even as `{}`)
/// means on, with these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompressionConfig {
    /// gzip level, 1 to 9 (0: no gzip on the fly); default 1.
    pub gzip_level: u32,
    /// Brotli quality, 1 to 11 (0: no Brotli on the fly); default 4.
    pub brotli_level: u32,
    /// Bodies shorter than this many bytes go out as they are; default 256.
    pub min_length: u64,
    /// Serve `name.br` / `name.gz` beside a static file to clients that accept them;
    /// default true.
    pub precompressed: bool,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            gzip_level: 1,
            brotli_level: 4,
            min_length: 256,
            precompressed: true,
        }
    }
}

/// `limit_req = { rate = "10r/s", ... }`: a per-client request-rate limit on an HTTP listener
/// (nginx's `limit_req_zone` + `limit_req`), one table for all workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitReqConfig {
    /// Requests per second or minute per client: `"10r/s"`, `"30r/m"`. Required.
    pub rate: String,
    /// Requests beyond the rate a client may make at once; default 0.
    pub burst: u32,
    /// Serve the burst at once instead of spacing it out at the rate; default false.
    pub nodelay: bool,
    /// The answer past the burst, 400 to 599; default 503 (nginx's), 429 is the HTTP one.
    pub status: u16,
    /// Clients the shared table holds at once (8 bytes each); default 65536.
    pub entries: usize,
}

impl Default for LimitReqConfig {
    fn default() -> Self {
        LimitReqConfig {
            rate: String::new(),
            burst: 0,
            nodelay: false,
            status: 503,
            entries: 65_536,
        }
    }
}

/// `ws_deflate = { ... }`: WebSocket compression on a listener. Present (even as `{}`)
/// means on, with these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WsDeflateConfig {
    /// zlib level, 0 (store) to 9; default 1.
    pub level: u32,
    /// Messages shorter than this many bytes go out uncompressed; default 256.
    pub threshold: usize,
    /// The server's LZ77 window as a power of two, 9 to 15; default 15.
    pub window_bits: u8,
    /// Keep compression contexts between messages (better ratio, about 300 KiB per
    /// connection); default false: contexts are reset per message and shared per loop.
    pub context_takeover: bool,
}

impl Default for WsDeflateConfig {
    fn default() -> Self {
        WsDeflateConfig {
            level: 1,
            threshold: 256,
            window_bits: 15,
            context_takeover: false,
        }
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            name: String::new(),
            bind: String::new(),
            protocol: Protocol::Http,
            reuseport: true,
            backlog: 1024,
            loops: None,
            root: None,
            ws_path: None,
            max_connections: None,
            max_connections_per_ip: None,
            idle_timeout: None,
            header_timeout: None,
            body_timeout: None,
            body_min_rate: None,
            send_timeout: None,
            send_min_rate: None,
            heartbeat_timeout: None,
            max_frame: None,
            max_body: None,
            flood_msgs_per_sec: None,
            flood_bytes_per_sec: None,
            notsent_lowat: None,
            tls: None,
            https_redirect: None,
            metrics: false,
            access_log_format: AccessFormat::Combined,
            allow_remote: false,
            ws_deflate: None,
            compression: None,
            limit_req: None,
            proxy_protocol: false,
            proxy_trusted: Vec::new(),
            proxy_timeout: None,
            proxy: Vec::new(),
            server: Vec::new(),
        }
    }
}

impl ListenerConfig {
    /// The resolved socket address (validated by [`Config::validate`]).
    pub fn addr(&self) -> Result<SocketAddr, String> {
        if let Ok(a) = self.bind.parse::<SocketAddr>() {
            return Ok(a);
        }
        self.bind
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {:?}: {e}", self.bind))?
            .next()
            .ok_or_else(|| format!("{:?} resolves to no address", self.bind))
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Worker processes (a number or `"auto"` = one per core).
    pub workers: Count,
    /// Event loops per worker per listener.
    pub loops: usize,
    /// Pid file of the master (needed by `-d` and `-s`).
    pub pid_file: Option<PathBuf>,
    /// Run workers as this user (the master keeps its user to bind and reload).
    pub user: Option<String>,
    /// Run workers with this group (default: the user's primary group).
    pub group: Option<String>,
    /// Graceful stop (QUIT, and old workers after a reload): how long in-flight work may take
    /// before connections are closed by force.
    pub shutdown_timeout: Dur,
    /// Graceful stop: a kept-alive connection with nothing in flight is closed only after it
    /// has been quiet this long; meanwhile each request on it is answered with
    /// `Connection: close` (so a client's next request is served, not cut off).
    pub drain_grace: Dur,
    /// Lingering close: after a close that follows output, read and drop what the peer still
    /// sends for at most this long (nginx's `lingering_close`); `0s` closes at once.
    pub lingering_close: Dur,
    /// Fast stop (TERM/INT): how long workers get before SIGKILL.
    pub stop_timeout: Dur,
    /// The overload guard: bytes a worker's connections may hold (buffers, queued output,
    /// request bodies) before it sheds load; past 80% keep-alive ends and the largest holders
    /// are not read, past all of it new requests get 503 and the largest holders are reset.
    /// Default: none.
    pub memory_budget: Option<u64>,
    /// Logging.
    pub log: LogConfig,
    /// Listening sockets and their protocols.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// Backend groups for the listeners' `proxy` locations.
    #[serde(rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: Count::Auto,
            loops: 1,
            pid_file: None,
            user: None,
            group: None,
            shutdown_timeout: Dur(Duration::from_secs(10)),
            drain_grace: Dur(Duration::from_secs(2)),
            lingering_close: Dur(Duration::from_secs(2)),
            stop_timeout: Dur(Duration::from_secs(5)),
            memory_budget: None,
            log: LogConfig::default(),
            listeners: Vec::new(),
            upstreams: Vec::new(),
        }
    }
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration, paths made absolute.
    pub config: Config,
}

/// Read, parse and validate a configuration file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|mut e| {
        if e.at.is_empty() {
            e.at = path.display().to_string();
        }
        e
    })
}

/// Parse and validate configuration text; relative paths resolve against `base`. A key the
/// schema does not have is an error, named with its path and a hint.
///
/// ```
/// let text = "workers = 2\n[[listener]]\nbind = \"127.0.0.1:7000\"\nprotocol = \"echo\"\n";
/// let loaded = herd_server::config::parse(text, std::path::Path::new("/tmp")).unwrap();
/// assert_eq!(loaded.config.workers.get(), 2);
/// let e = herd_server::config::parse(&format!("{text}rot = 1\n"), std::path::Path::new("/tmp"))
///     .unwrap_err();
/// assert_eq!(e.to_string(), "listener[0].rot: unknown key; did you mean `root`?");
/// ```
pub fn parse(text: &str, base: &Path) -> Result<Loaded, ConfigError> {
    let de = toml::de::Deserializer::parse(text)
        .map_err(|e| ConfigError::new("", one_line(&e.to_string())))?;
    let mut unknown = Vec::new();
    let parsed: Result<Config, _> =
        serde_ignored::deserialize(de, |p| unknown.push(unknown::segments(&p)));
    // Unknown keys first: a key in the wrong table (a top-level key below a [[listener]]) can
    // also leave a required key missing, and the misplacement is the cause to report.
    if let Some(e) = unknown::error(&unknown) {
        return Err(e);
    }
    let mut config = parsed.map_err(|e| ConfigError::new("", one_line(&e.to_string())))?;
    config.resolve_paths(base);
    config.fill_names();
    config.validate()?;
    Ok(Loaded { config })
}

/// toml's multi-line error (with a source excerpt) as one line: the position, then the
/// explanation.
fn one_line(msg: &str) -> String {
    let is_excerpt = |l: &str| {
        let t = l.trim_start();
        t.starts_with('|')
            || t.split_once(" |")
                .is_some_and(|(n, _)| n.parse::<u64>().is_ok())
    };
    let parts: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_excerpt(l))
        .collect();
    match parts.split_first() {
        Some((first, rest)) if !rest.is_empty() => format!("{first}: {}", rest.join(", ")),
        Some((first, _)) => first.to_string(),
        None => msg.trim().to_string(),
    }
}

fn absolute(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
    if let Ok(abs) = std::path::absolute(&*p) {
        *p = abs;
    }
}

/// The levels `log.level` accepts.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl Config {
    /// The configuration used when no file is given: the HTTP site on 127.0.0.1:8081 (with
    /// its WebSocket echo on `/ws`, configured like any other, which the page uses) and the
    /// frame demo on 127.0.0.1:8082, logging to stderr.
    pub fn builtin() -> Config {
        let mut c = Config::default();
        c.listeners.push(ListenerConfig {
            name: "site".into(),
            bind: "127.0.0.1:8081".into(),
            protocol: Protocol::Http,
            ws_path: Some("/ws".into()),
            ..ListenerConfig::default()
        });
        c.listeners.push(ListenerConfig {
            name: "frame-demo".into(),
            bind: "127.0.0.1:8082".into(),
            protocol: Protocol::Frame,
            ..ListenerConfig::default()
        });
        c
    }

    /// Number of worker processes.
    pub fn worker_count(&self) -> usize {
        self.workers.get().max(1)
    }

    /// Make every path absolute (relative ones against `base`), so the server may `chdir`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let mut all: Vec<&mut PathBuf> = Vec::new();
        all.extend(self.pid_file.as_mut());
        all.extend(self.log.file.as_mut());
        all.extend(self.log.access_file.as_mut());
        for l in &mut self.listeners {
            all.extend(l.root.as_mut());
            for srv in &mut l.server {
                all.extend(srv.root.as_mut());
                for loc in &mut srv.location {
                    all.extend(loc.root.as_mut());
                    all.extend(loc.alias.as_mut());
                    all.extend(loc.auth_basic_user_file.as_mut());
                }
                if let Some(t) = srv.tls.as_mut() {
                    all.extend(t.paths_mut());
                }
            }
            if let Some(t) = l.tls.as_mut() {
                all.extend(t.paths_mut());
            }
        }
        for p in all {
            absolute(base, p);
        }
    }

    fn fill_names(&mut self) {
        for l in &mut self.listeners {
            if l.name.is_empty() {
                l.name = format!("{}@{}", l.protocol.as_str(), l.bind);
            }
        }
    }

    /// Check everything that can be checked without binding: counts, addresses, paths,
    /// options that apply to the listener's protocol, users and groups.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Count::N(n) = self.workers {
            if !(1..=1024).contains(&n) {
                return Err(ConfigError::new("workers", "must be between 1 and 1024"));
            }
        }
        if !(1..=256).contains(&self.loops) {
            return Err(ConfigError::new("loops", "must be between 1 and 256"));
        }
        if self.memory_budget.is_some_and(|b| b < 1 << 20) {
            return Err(ConfigError::new(
                "memory_budget",
                "must be at least 1048576 (1 MiB), in bytes",
            ));
        }
        if !LEVELS.contains(&self.log.level.as_str()) {
            return Err(ConfigError::new(
                "log.level",
                format!("{:?} is not one of {}", self.log.level, LEVELS.join(", ")),
            ));
        }
        for (key, p) in [
            ("pid_file", &self.pid_file),
            ("log.file", &self.log.file),
            ("log.access_file", &self.log.access_file),
        ] {
            if let Some(p) = p {
                let dir = p.parent().unwrap_or(Path::new("/"));
                if !dir.is_dir() {
                    return Err(ConfigError::new(
                        key,
                        format!("directory {} does not exist", dir.display()),
                    ));
                }
            }
        }
        if let Some(u) = &self.user {
            crate::sys::lookup_user(u).map_err(|e| ConfigError::new("user", e.to_string()))?;
        }
        if let Some(g) = &self.group {
            crate::sys::lookup_group(g).map_err(|e| ConfigError::new("group", e.to_string()))?;
        }
        if self.listeners.is_empty() {
            return Err(ConfigError::new(
                "listener",
                "at least one [[listener]] is needed",
            ));
        }
        self.validate_upstreams()?;
        let mut seen_names = std::collections::HashSet::new();
        let mut seen_addrs = std::collections::HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let at = |k: &str| format!("listener[{i}].{k}");
            let addr = l.addr().map_err(|e| ConfigError::new(at("bind"), e))?;
            if !seen_addrs.insert(addr) {
                return Err(ConfigError::new(
                    at("bind"),
                    format!("{addr} is used by another listener"),
                ));
            }
            if !seen_names.insert(l.name.as_str()) {
                return Err(ConfigError::new(
                    at("name"),
                    format!("{:?} is used by another listener", l.name),
                ));
            }
            if !(1..=65535).contains(&l.backlog) {
                return Err(ConfigError::new(at("backlog"), "must be 1..=65535"));
            }
            if l.notsent_lowat.is_some_and(|n| n > 64 << 20) {
                return Err(ConfigError::new(
                    at("notsent_lowat"),
                    "must be at most 64 MiB (0 for the system default)",
                ));
            }
            if let Some(n) = l.loops {
                if !(1..=256).contains(&n) {
                    return Err(ConfigError::new(at("loops"), "must be between 1 and 256"));
                }
            }
            self.validate_protocol_keys(l, &at)?;
            if let Some(t) = &l.tls {
                t.check(l.protocol, &l.server, l.root.is_some())
                    .map_err(|e| ConfigError::new(at("tls"), e.to_string()))?;
            }
        }
        Ok(())
    }

    fn validate_upstreams(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let at = |k: &str| format!("upstream[{i}].{k}");
            if u.name.is_empty() {
                return Err(ConfigError::new(at("name"), "is required"));
            }
            if !names.insert(u.name.as_str()) {
                return Err(ConfigError::new(
                    at("name"),
                    format!("{:?} is used by another upstream", u.name),
                ));
            }
            if u.servers.is_empty() {
                return Err(ConfigError::new(
                    at("servers"),
                    "needs at least one backend, servers = [\"127.0.0.1:9001\"]",
                ));
            }
            for (j, s) in u.servers.iter().enumerate() {
                if s.parse::<std::net::SocketAddr>().is_err() {
                    return Err(ConfigError::new(
                        at(&format!("servers[{j}]")),
                        format!("{s:?} is not an IP:port address"),
                    ));
                }
            }
            if let Some(t) = &u.tls {
                if rustls_name_ok(&t.name).is_err() {
                    return Err(ConfigError::new(
                        at("tls.name"),
                        format!("{:?} is not a DNS name or IP address", t.name),
                    ));
                }
                t.connector()
                    .map_err(|e| ConfigError::new(at("tls.ca"), e))?;
            }
            for (key, d) in [
                ("connect_timeout", u.connect_timeout),
                ("read_timeout", u.read_timeout),
                ("fail_timeout", u.fail_timeout),
                ("queue_timeout", u.queue_timeout),
            ] {
                if d.0.is_zero() {
                    return Err(ConfigError::new(at(key), "must be more than 0"));
                }
            }
        }
        for (i, l) in self.listeners.iter().enumerate() {
            for (j, p) in l.proxy.iter().enumerate() {
                let at = |k: &str| format!("listener[{i}].proxy[{j}].{k}");
                if l.protocol != Protocol::Http {
                    return Err(ConfigError::new(
                        format!("listener[{i}].proxy"),
                        format!("applies to protocol http only, not {}", l.protocol.as_str()),
                    ));
                }
                if !p.path.starts_with('/') {
                    return Err(ConfigError::new(at("path"), "must start with '/'"));
                }
                if p.max_body == Some(0) {
                    return Err(ConfigError::new(at("max_body"), "must be more than 0"));
                }
                if !self.upstreams.iter().any(|u| u.name == p.upstream) {
                    return Err(ConfigError::new(
                        at("upstream"),
                        format!("no [[upstream]] is named {:?}", p.upstream),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_protocol_keys(
        &self,
        l: &ListenerConfig,
        at: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        use Protocol::*;
        let only = |key: &str, set: bool, allowed: &[Protocol]| {
            if set && !allowed.contains(&l.protocol) {
                let names: Vec<_> = allowed.iter().map(|p| p.as_str()).collect();
                Err(ConfigError::new(
                    at(key),
                    format!(
                        "applies to protocol {} only, not {}",
                        names.join("/"),
                        l.protocol.as_str()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        only("root", l.root.is_some(), &[Http])?;
        only("ws_path", l.ws_path.is_some(), &[Http])?;
        only("server", !l.server.is_empty(), &[Http])?;
        only("header_timeout", l.header_timeout.is_some(), &[Http, Admin])?;
        only("body_timeout", l.body_timeout.is_some(), &[Http, Admin])?;
        only("body_min_rate", l.body_min_rate.is_some(), &[Http, Admin])?;
        if l.send_min_rate == Some(0) {
            return Err(ConfigError::new(
                at("send_min_rate"),
                "must be more than 0 (leave it out for none)",
            ));
        }
        if l.body_min_rate == Some(0) {
            return Err(ConfigError::new(
                at("body_min_rate"),
                "must be more than 0 (leave it out for none)",
            ));
        }
        only("max_body", l.max_body.is_some(), &[Http, Admin])?;
        only("metrics", l.metrics, &[Http])?;
        only(
            "access_log_format",
            l.access_log_format != AccessFormat::Combined,
            &[Http, Admin],
        )?;
        only("allow_remote", l.allow_remote, &[Admin])?;
        if l.protocol == Admin && !l.allow_remote {
            if let Ok(a) = l.addr() {
                if !a.ip().is_loopback() {
                    return Err(ConfigError::new(
                        at("bind"),
                        format!(
                            "the admin listener must be on a loopback address, not {a} \
                             (set allow_remote = true to expose it)"
                        ),
                    ));
                }
            }
        }
        only("https_redirect", l.https_redirect.is_some(), &[Http])?;
        if l.https_redirect.is_some() && l.tls.is_some() {
            return Err(ConfigError::new(
                at("https_redirect"),
                "is for a plain-HTTP listener (this one has tls)",
            ));
        }
        if l.https_redirect == Some(0) {
            return Err(ConfigError::new(at("https_redirect"), "must be a port"));
        }
        only(
            "heartbeat_timeout",
            l.heartbeat_timeout.is_some(),
            &[Frame, Ws],
        )?;
        only("max_frame", l.max_frame.is_some(), &[Frame, Ws, Echo])?;
        only("ws_deflate", l.ws_deflate.is_some(), &[Http, Ws])?;
        only("compression", l.compression.is_some(), &[Http])?;
        only("limit_req", l.limit_req.is_some(), &[Http])?;
        if let Some(r) = &l.limit_req {
            let Some(rate) = herd_core::limit::Rate::parse(&r.rate) else {
                return Err(ConfigError::new(
                    at("limit_req.rate"),
                    format!(
                        "{:?} is not a rate: write requests per second or minute, as \"10r/s\" \
                         or \"30r/m\"",
                        r.rate
                    ),
                ));
            };
            if !(400..=599).contains(&r.status) {
                return Err(ConfigError::new(
                    at("limit_req.status"),
                    "must be 400 to 599 (429 or 503, usually)",
                ));
            }
            if !(8..=1 << 24).contains(&r.entries) {
                return Err(ConfigError::new(
                    at("limit_req.entries"),
                    "must be 8 to 16777216",
                ));
            }
            let window = f64::from(r.burst) / rate.per_sec();
            if window > herd_core::limit::MAX_WINDOW.as_secs_f64() {
                return Err(ConfigError::new(
                    at("limit_req.burst"),
                    format!("burst / rate is {window:.0} s; at most a day"),
                ));
            }
        }
        if let Some(c) = &l.compression {
            if c.gzip_level > 9 {
                return Err(ConfigError::new(
                    at("compression.gzip_level"),
                    "must be 0 to 9",
                ));
            }
            if c.brotli_level > 11 {
                return Err(ConfigError::new(
                    at("compression.brotli_level"),
                    "must be 0 to 11",
                ));
            }
        }
        if let Some(d) = &l.ws_deflate {
            if d.level > 9 {
                return Err(ConfigError::new(at("ws_deflate.level"), "must be 0 to 9"));
            }
            if !(9..=15).contains(&d.window_bits) {
                return Err(ConfigError::new(
                    at("ws_deflate.window_bits"),
                    "must be 9 to 15",
                ));
            }
        }
        if !l.proxy_protocol {
            for (key, set) in [
                ("proxy_trusted", !l.proxy_trusted.is_empty()),
                ("proxy_timeout", l.proxy_timeout.is_some()),
            ] {
                if set {
                    return Err(ConfigError::new(at(key), "needs proxy_protocol = true"));
                }
            }
        } else if l.proxy_trusted.is_empty() {
            return Err(ConfigError::new(
                at("proxy_trusted"),
                "proxy_protocol needs the networks of the load balancers that send the \
                 header, e.g. proxy_trusted = [\"10.0.0.0/8\"] ([\"0.0.0.0/0\", \"::/0\"] \
                 trusts every source)",
            ));
        }
        for (i, n) in l.proxy_trusted.iter().enumerate() {
            if let Err(e) = n.parse::<herd_core::proxy::Network>() {
                return Err(ConfigError::new(at(&format!("proxy_trusted[{i}]")), e));
            }
        }
        if l.proxy_timeout.is_some_and(|d| d.0.is_zero()) {
            return Err(ConfigError::new(at("proxy_timeout"), "must be more than 0"));
        }
        only(
            "flood_msgs_per_sec",
            l.flood_msgs_per_sec.is_some(),
            &[Frame],
        )?;
        only(
            "flood_bytes_per_sec",
            l.flood_bytes_per_sec.is_some(),
            &[Frame],
        )?;
        if let Some(root) = &l.root {
            if !root.is_dir() {
                return Err(ConfigError::new(
                    at("root"),
                    format!("{} is not a directory", root.display()),
                ));
            }
        }
        if !l.server.is_empty() {
            if l.https_redirect.is_some() {
                return Err(ConfigError::new(
                    at("server"),
                    "https_redirect answers every request; it leaves nothing for servers",
                ));
            }
            let i: usize = at("")
                .strip_prefix("listener[")
                .and_then(|r| r.split(']').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            crate::vhost::validate(i, &l.server, l.root.is_some())?;
            if l.tls.is_none() {
                if let Some(s) = l.server.iter().position(|s| s.tls.is_some()) {
                    return Err(ConfigError::new(
                        format!("listener[{i}].server[{s}].tls"),
                        "needs TLS on the listener: a `tls` table there (it may be `tls = {}` \
                         when every server has its own certificate)",
                    ));
                }
            }
        }
        if let Some(p) = &l.ws_path {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(ConfigError::new(at("ws_path"), "must start with '/'"));
            }
        }
        if l.max_frame == Some(0) || l.max_body == Some(0) {
            return Err(ConfigError::new(at("max_frame"), "must be positive"));
        }
        if !crate::protocols::available(l.protocol) {
            return Err(ConfigError::new(
                at("protocol"),
                format!(
                    "protocol {} is not available in this build yet",
                    l.protocol.as_str()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Loaded, ConfigError> {
        parse(text, Path::new("/tmp"))
    }

    const ECHO: &str = "[[listener]]\nbind = \"127.0.0.1:7000\"\nprotocol = \"echo\"\n";

    #[test]
    fn defaults_fill_in() {
        let c = p(ECHO).unwrap().config;
        assert_eq!(c.loops, 1);
        assert_eq!(c.workers, Count::Auto);
        assert!(c.worker_count() >= 1);
        assert_eq!(c.shutdown_timeout.0, Duration::from_secs(10));
        assert_eq!(c.drain_grace.0, Duration::from_secs(2));
        assert_eq!(c.log.level, "info");
        assert_eq!(c.listeners[0].name, "echo@127.0.0.1:7000");
        assert!(c.listeners[0].reuseport);
        // WebSocket only where configured: the built-in site asks for its page's echo.
        let http = "[[listener]]\nbind = \"127.0.0.1:7002\"\nprotocol = \"http\"\n";
        let c = p(&format!("{http}root = \"/tmp\"\n")).unwrap().config;
        assert_eq!(crate::protocols::ws_path(&c.listeners[0]), None);
        let c = p(&format!("{http}ws_path = \"/live\"\n")).unwrap().config;
        assert_eq!(
            crate::protocols::ws_path(&c.listeners[0]).as_deref(),
            Some("/live")
        );
        let b = Config::builtin();
        b.validate().unwrap();
        assert_eq!(
            crate::protocols::ws_path(&b.listeners[0]).as_deref(),
            Some("/ws")
        );
    }

    /// The error for `text` (which must be refused), as `herd -t` prints it.
    fn refused(text: &str) -> String {
        p(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_are_errors_with_their_full_path_and_a_hint() {
        // A typo: the nearest key at that place.
        assert_eq!(
            refused(&format!("{ECHO}rot = \"/\"\n")),
            "listener[0].rot: unknown key; did you mean `root`?"
        );
        assert_eq!(
            refused(&format!("wrokers = 3\n{ECHO}")),
            "wrokers: unknown key; did you mean `workers`?"
        );
        assert_eq!(
            refused(&format!("[log]\nlevle = \"x\"\n{ECHO}")),
            "log.levle: unknown key; did you mean `level`?"
        );
        // In a sub-table, through the `Option`, and in the second listener.
        let http = "[[listener]]\nbind = \"127.0.0.1:7002\"\nprotocol = \"http\"\n";
        let e = p(&format!(
            "{ECHO}{http}tls = {{ certt = \"c.pem\", key = \"k.pem\" }}\n"
        ))
        .unwrap_err();
        assert_eq!(
            (e.at.as_str(), e.msg.as_str()),
            ("listener[1].tls.certt", "unknown key; did you mean `cert`?")
        );
        assert_eq!(
            refused(&format!(
                "{http}[[listener.tls.certs]]\ncert = \"c\"\nkey = \"k\"\nocps = \"o\"\n"
            )),
            "listener[0].tls.certs[0].ocps: unknown key; did you mean `ocsp`?"
        );
        // A key of a listener's sub-table, written on the listener.
        assert_eq!(
            refused(&format!("{ECHO}{http}gzip_level = 6\n")),
            "listener[1].gzip_level: unknown key: `gzip_level` belongs in the `compression` \
             table: compression = { gzip_level = ... }"
        );
        // Nothing close: no guess.
        assert_eq!(
            refused(&format!("{ECHO}colour = \"blue\"\n")),
            "listener[0].colour: unknown key (docs/config.md lists the keys)"
        );
        // Every unknown key is named, in one error (in the order toml hands them over).
        let e = refused(&format!(
            "wrokers = 3\n[log]\nlevle = \"x\"\n{ECHO}rot = \"/\"\n"
        ));
        assert_eq!(
            e,
            "listener[0].rot: unknown key; did you mean `root`?; \
             also log.levle: unknown key; did you mean `level`?; \
             also wrokers: unknown key; did you mean `workers`?"
        );
        // Unknown keys are reported before the errors they may cause.
        let e = p(&format!(
            "{http}[[listener.tls.certs]]\ncert = \"c\"\nkye = \"k\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.at, "listener[0].tls.certs[0].kye", "{e}");
    }

    #[test]
    fn upstreams_and_proxy_locations_are_checked() {
        let up = "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9001\"]\n";
        let l = "[[listener]]\nbind = \"127.0.0.1:7003\"\nprotocol = \"http\"\n";
        let ok = p(&format!(
            "{l}proxy = [{{ path = \"/api/\", upstream = \"app\" }}]\n{up}balance = \"least_conn\"\n"
        ))
        .unwrap();
        let u = &ok.config.upstreams[0];
        assert_eq!(u.balance, BalancePolicy::LeastConn);
        assert_eq!((u.keepalive, u.max_fails), (32, 1));
        assert_eq!((u.max_conns, u.queue), (0, 1024));
        assert_eq!(u.queue_timeout.0, Duration::from_secs(60));
        assert_eq!(ok.config.listeners[0].proxy[0].upstream, "app");
        let capped = p(&format!(
            "{l}{up}max_conns = 32\nqueue = 100\nqueue_timeout = \"3s\"\n"
        ))
        .unwrap();
        let u = &capped.config.upstreams[0];
        assert_eq!((u.max_conns, u.queue), (32, 100));
        assert_eq!(u.queue_timeout.0, Duration::from_secs(3));
        let e = p(&format!("{l}{up}queue_timeout = \"0s\"\n")).unwrap_err();
        assert_eq!(e.at, "upstream[0].queue_timeout", "{e}");
        let e = p(&format!("{l}{up}max_con = 4\n")).unwrap_err();
        assert!(e.to_string().contains("did you mean `max_conns`"), "{e}");
        let e = p(&format!(
            "{l}proxy = [{{ path = \"/api/\", upstream = \"nope\" }}]\n{up}"
        ))
        .unwrap_err();
        assert_eq!(e.at, "listener[0].proxy[0].upstream", "{e}");
        let e = p(&format!(
            "{l}proxy = [{{ path = \"api\", upstream = \"app\" }}]\n{up}"
        ))
        .unwrap_err();
        assert_eq!(e.at, "listener[0].proxy[0].path", "{e}");
        let e = p(&format!("{l}{up}keepalvie = 4\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "upstream[0].keepalvie: unknown key; did you mean `keepalive`?"
        );
        let e = p(&format!(
            "{l}proxy = [{{ path = \"/\", upstream = \"app\", pass = 1 }}]\n{up}"
        ))
        .unwrap_err();
        assert_eq!(e.at, "listener[0].proxy[0].pass", "{e}");
        let e = p(&format!(
            "{l}[[upstream]]\nname = \"app\"\nservers = [\"localhost\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.at, "upstream[0].servers[0]", "{e}");
        let e = p(&format!("{l}[[upstream]]\nname = \"app\"\n")).unwrap_err();
        assert_eq!(e.at, "upstream[0].servers", "{e}");
    }

    #[test]
    fn nginx_directives_name_the_herd_equivalent() {
        let http = "[[listener]]\nbind = \"127.0.0.1:7002\"\nprotocol = \"http\"\n";
        for (key, herd) in [
            (
                "ssl_certificate",
                "herd's equivalent is `tls.cert` on a [[listener]]",
            ),
            ("ssl_certificate_key", "herd's equivalent is `tls.key`"),
            ("gzip", "herd's equivalent is `compression = {}`"),
            (
                "server_name",
                "herd's equivalent is `server` blocks below the listener",
            ),
            (
                "proxy_pass",
                "herd's equivalent is `proxy` on a [[listener]]",
            ),
            ("listen", "herd's equivalent is `bind`"),
            ("keepalive_timeout", "herd's equivalent is `idle_timeout`"),
            ("client_max_body_size", "herd's equivalent is `max_body`"),
        ] {
            let e = p(&format!("{http}{key} = \"x\"\n")).unwrap_err();
            assert_eq!(e.at, format!("listener[0].{key}"));
            assert!(
                e.msg
                    .starts_with(&format!("unknown key: `{key}` is nginx's"))
                    && e.msg.contains(herd),
                "{key}: {e}"
            );
        }
        let e = p(&format!("worker_processes = 4\n{ECHO}")).unwrap_err();
        assert!(e.msg.contains("`workers`"), "{e}");
    }

    #[test]
    fn a_top_level_key_below_a_table_header_is_reported_as_such() {
        let e = p(&format!("{ECHO}{ECHO}workers = 3\n")).unwrap_err();
        assert_eq!(e.at, "listener[1].workers");
        assert_eq!(
            e.msg,
            "`workers` is a top-level key but is written after [[listener]] number 2, so TOML \
             reads it as part of that listener: move it above the first [[listener]] \
             (top-level keys go before every table)"
        );
        let e = p(&format!(
            "[log]\nlevel = \"info\"\npid_file = \"/tmp/h.pid\"\n{ECHO}"
        ))
        .unwrap_err();
        assert_eq!(e.at, "log.pid_file");
        assert!(
            e.msg.starts_with("`pid_file` is a top-level key but is written after [log], so TOML reads it as part of that table: move it above [log]"),
            "{e}"
        );
        // A listener key below its [listener.tls] header lands in the tls table.
        let e = p("[[listener]]\nbind = \"127.0.0.1:7002\"\n[listener.tls]\ncert = \"c\"\nkey = \"k\"\nmax_body = 10\n")
            .unwrap_err();
        assert_eq!(e.at, "listener[0].tls.max_body");
        assert!(
            e.msg.starts_with("`max_body` is a [[listener]] key but is written after [listener.tls] (of [[listener]] number 1)"),
            "{e}"
        );
        // `loops` is a listener key too: below a listener it is that listener's.
        let c = p(&format!("{ECHO}loops = 2\n")).unwrap().config;
        assert_eq!((c.loops, c.listeners[0].loops), (1, Some(2)));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("workers = 0\n", "workers"),
            ("loops = 0\n", "loops"),
            ("[log]\nlevel = \"loud\"\n", "log.level"),
            ("pid_file = \"/no/such/dir/herd.pid\"\n", "pid_file"),
            ("user = \"no-such-user-herd\"\n", "user"),
        ];
        for (prefix, key) in cases {
            let e = p(&format!("{prefix}{ECHO}")).unwrap_err();
            assert_eq!(e.at, key, "{prefix}: {e}");
        }
        assert_eq!(p("").unwrap_err().at, "listener");
        let bad_bind = "[[listener]]\nbind = \"nonsense\"\nprotocol = \"echo\"\n";
        assert_eq!(p(bad_bind).unwrap_err().at, "listener[0].bind");
        let dup = format!("{ECHO}{ECHO}");
        assert_eq!(p(&dup).unwrap_err().at, "listener[1].bind");
        let wrong = format!("{ECHO}root = \"/\"\n");
        let e = p(&wrong).unwrap_err();
        assert_eq!(e.at, "listener[0].root");
        assert!(e.msg.contains("http"), "{e}");
    }

    #[test]
    fn admin_listeners_stay_on_loopback_unless_allowed() {
        let admin = |bind: &str, extra: &str| {
            p(&format!(
                "[[listener]]\nbind = \"{bind}\"\nprotocol = \"admin\"\n{extra}"
            ))
        };
        assert!(admin("127.0.0.1:0", "").is_ok());
        assert!(admin("[::1]:0", "").is_ok());
        let e = admin("0.0.0.0:0", "").unwrap_err();
        assert_eq!(e.at, "listener[0].bind");
        assert!(e.msg.contains("allow_remote"), "{e}");
        assert!(admin("0.0.0.0:0", "allow_remote = true\n").is_ok());
        let c = admin("127.0.0.1:0", "access_log_format = \"json\"\n").unwrap();
        assert_eq!(c.config.listeners[0].access_log_format, AccessFormat::Json);
        // Keys for other protocols are refused, as every protocol key is.
        let e = p(&format!("{ECHO}metrics = true\n")).unwrap_err();
        assert_eq!(e.at, "listener[0].metrics");
        let e = p(&format!("{ECHO}allow_remote = true\n")).unwrap_err();
        assert_eq!(e.at, "listener[0].allow_remote");
        let c = p(&format!("[log]\nformat = \"json\"\nburst = 3\n{ECHO}")).unwrap();
        assert_eq!(
            (c.config.log.format, c.config.log.burst),
            (LogFormat::Json, 3)
        );
    }

    #[test]
    fn proxy_protocol_needs_trusted_networks() {
        let with = |extra: &str| p(&format!("{ECHO}{extra}"));
        let c = with("proxy_protocol = true\nproxy_trusted = [\"10.0.0.0/8\", \"::1\"]\nproxy_timeout = \"2s\"\n")
            .unwrap()
            .config;
        let l = &c.listeners[0];
        assert!(l.proxy_protocol);
        assert_eq!(l.proxy_trusted, ["10.0.0.0/8", "::1"]);
        assert_eq!(l.proxy_timeout, Some(Dur(Duration::from_secs(2))));
        // On without a trust list: refused, with the way to trust everyone in the message.
        let e = with("proxy_protocol = true\n").unwrap_err();
        assert_eq!(e.at, "listener[0].proxy_trusted");
        assert!(e.msg.contains("0.0.0.0/0"), "{e}");
        for (extra, at) in [
            (
                "proxy_trusted = [\"10.0.0.0/8\"]\n",
                "listener[0].proxy_trusted",
            ),
            ("proxy_timeout = \"1s\"\n", "listener[0].proxy_timeout"),
            (
                "proxy_protocol = true\nproxy_trusted = [\"::1\", \"10.0.0.0/33\"]\n",
                "listener[0].proxy_trusted[1]",
            ),
            (
                "proxy_protocol = true\nproxy_trusted = [\"lb.example\"]\n",
                "listener[0].proxy_trusted[0]",
            ),
            (
                "proxy_protocol = true\nproxy_trusted = [\"::/0\"]\nproxy_timeout = \"0s\"\n",
                "listener[0].proxy_timeout",
            ),
        ] {
            assert_eq!(with(extra).unwrap_err().at, at, "{extra}");
        }
    }

    #[test]
    fn ws_deflate_is_a_table_with_defaults_and_ranges() {
        let ws = "[[listener]]\nbind = \"127.0.0.1:7001\"\nprotocol = \"ws\"\n";
        let c = p(&format!("{ws}ws_deflate = {{}}\n")).unwrap().config;
        assert_eq!(c.listeners[0].ws_deflate, Some(WsDeflateConfig::default()));
        let c = p(&format!(
            "{ws}ws_deflate = {{ level = 6, threshold = 0, window_bits = 10, context_takeover = true }}\n"
        ))
        .unwrap()
        .config;
        let d = c.listeners[0].ws_deflate.clone().unwrap();
        assert_eq!(
            (d.level, d.threshold, d.window_bits, d.context_takeover),
            (6, 0, 10, true)
        );
        let o = crate::protocols::ws_options(&c.listeners[0])
            .deflate
            .unwrap();
        assert!(!o.server_no_context_takeover && !o.client_no_context_takeover);
        assert_eq!((o.level, o.server_max_window_bits), (6, 10));
        assert!(crate::protocols::ws_options(&ListenerConfig::default())
            .deflate
            .is_none());
        assert_eq!(
            refused(&format!("{ws}ws_deflate = {{ levle = 3 }}\n")),
            "listener[0].ws_deflate.levle: unknown key; did you mean `level`?"
        );
        for (bad, key) in [
            ("level = 10", "listener[0].ws_deflate.level"),
            ("window_bits = 8", "listener[0].ws_deflate.window_bits"),
            ("window_bits = 16", "listener[0].ws_deflate.window_bits"),
        ] {
            let e = p(&format!("{ws}ws_deflate = {{ {bad} }}\n")).unwrap_err();
            assert_eq!(e.at, key, "{bad}: {e}");
        }
        let e = p(&format!("{ECHO}ws_deflate = {{}}\n")).unwrap_err();
        assert_eq!(e.at, "listener[0].ws_deflate");
        let http = "[[listener]]\nbind = \"127.0.0.1:7002\"\nprotocol = \"http\"\n";
        assert!(p(&format!("{http}ws_deflate = {{}}\n")).is_ok());
    }

    #[test]
    fn compression_is_a_table_for_http_listeners() {
        let http = "[[listener]]\nbind = \"127.0.0.1:7002\"\nprotocol = \"http\"\n";
        let c = p(&format!("{http}compression = {{}}\n")).unwrap().config;
        let l = &c.listeners[0];
        assert_eq!(l.compression, Some(CompressionConfig::default()));
        let o = crate::protocols::compression(l).unwrap();
        assert_eq!((o.gzip_level, o.brotli_level, o.min_length), (1, 4, 256));
        assert!(crate::protocols::compression(&ListenerConfig::default()).is_none());
        let c = p(&format!(
            "{http}compression = {{ gzip_level = 6, brotli_level = 0, min_length = 1000, precompressed = false }}\n"
        ))
        .unwrap()
        .config;
        let o = crate::protocols::compression(&c.listeners[0]).unwrap();
        assert_eq!((o.gzip_level, o.brotli_level, o.min_length), (6, 0, 1000));
        assert!(!c.listeners[0].compression.as_ref().unwrap().precompressed);
        for (bad, key) in [
            ("gzip_level = 10", "listener[0].compression.gzip_level"),
            ("brotli_level = 12", "listener[0].compression.brotli_level"),
        ] {
            let e = p(&format!("{http}compression = {{ {bad} }}\n")).unwrap_err();
            assert_eq!(e.at, key, "{bad}: {e}");
        }
        let e = p(&format!("{ECHO}compression = {{}}\n")).unwrap_err();
        assert_eq!(e.at, "listener[0].compression");
    }

    #[test]
    fn syntax_and_type_errors_are_reported() {
        let e = p("workers = [\n").unwrap_err();
        assert!(e.msg.starts_with("TOML parse error at line 1"), "{e}");
        assert!(!e.msg.contains('\n'), "{e}");
        let e = p(&format!("workers = \"many\"\n{ECHO}")).unwrap_err();
        assert!(e.msg.contains("auto"), "{e}");
        let e = p(&format!("shutdown_timeout = \"5 parsecs\"\n{ECHO}")).unwrap_err();
        assert!(e.msg.contains("duration"), "{e}");
        let e = p(&format!("workers = -2\n{ECHO}")).unwrap_err();
        assert!(e.msg.contains("got -2"), "{e}");
        let e = p(&format!("stop_timeout = -1\n{ECHO}")).unwrap_err();
        assert!(e.msg.contains("negative duration"), "{e}");
        let e = p(&format!("stop_timeout = true\n{ECHO}")).unwrap_err();
        assert!(e.msg.contains("a duration such as"), "{e}");
    }

    #[test]
    fn durations_and_counts() {
        let c = p(&format!(
            "workers = \"auto\"\nshutdown_timeout = 3\nstop_timeout = \"250ms\"\n{ECHO}idle_timeout = \"2m\"\n"
        ))
        .unwrap()
        .config;
        assert_eq!(c.shutdown_timeout.0, Duration::from_secs(3));
        assert_eq!(c.stop_timeout.0, Duration::from_millis(250));
        assert_eq!(
            c.listeners[0].idle_timeout,
            Some(Dur(Duration::from_secs(120)))
        );
        assert!(Dur::parse("99999999999999999h").is_err());
        assert!(Dur::parse("99999999999999999999").is_err());
        // Every form docs/config.md shows, and humantime's others.
        for (text, want) in [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("1m", Duration::from_secs(60)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("8760h", Duration::from_secs(8760 * 3600)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("7", Duration::from_secs(7)),
            (" 3s ", Duration::from_secs(3)),
            ("1h 30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("2days", Duration::from_secs(2 * 86400)),
            ("250us", Duration::from_micros(250)),
        ] {
            assert_eq!(Dur::parse(text), Ok(Dur(want)), "{text}");
        }
        for bad in ["", "s", "-1s", "10 parsecs", "1e3s", "soon"] {
            let e = Dur::parse(bad).unwrap_err();
            assert!(
                e.contains("invalid duration") || e.contains("too long"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_config_dir() {
        let c = parse(
            &format!("pid_file = \"run/herd.pid\"\n[log]\nfile = \"x.log\"\n{ECHO}"),
            Path::new("/"),
        );
        // /run exists on Linux.
        let c = c.unwrap().config;
        assert_eq!(c.pid_file.unwrap(), PathBuf::from("/run/herd.pid"));
        assert_eq!(c.log.file.unwrap(), PathBuf::from("/x.log"));
    }

    #[test]
    fn serializes_for_workers_and_back() {
        let c = p(&format!(
            "workers = 3\nstop_timeout = \"1500ms\"\n{ECHO}max_frame = 100\n"
        ))
        .unwrap()
        .config;
        let json = serde_json::to_string(&c).unwrap();
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = p(&s);
        }

        #[test]
        fn durations_round_trip(secs in 0u64..100_000_000_000, nanos in 0u32..1_000_000_000) {
            let d = Dur(Duration::new(secs, nanos));
            proptest::prop_assert_eq!(Dur::parse(&d.to_string()).unwrap(), d);
        }
    }
}
