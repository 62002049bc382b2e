//! Virtual hosts: a listener's `[[listener.server]]` blocks, each picked by the request's
//! `Host` header (nginx's `server { server_name ...; }`), with `[[listener.server.location]]`
//! blocks inside, matched against the path in nginx's order (exact `= /p`, then the longest
//! prefix, which wins outright with `^~`, then the regexes `~` / `~*` in the order written,
//! then that longest prefix).
//!
//! A location serves files below its `root` (the whole URI) or `alias` (the URI minus the
//! location's prefix) through herd-core's [`StaticDir`], so traversal (`..`, encoded slashes,
//! symlinks out of the directory) is refused the same way as for a listener's `root`. It can
//! also try files in turn (`try_files`), answer at once (`return`), replace error answers by a
//! page (`error_page`), add headers (`add_header`, `expires`) and ask for a password
//! (`auth_basic` with an htpasswd file: bcrypt, `{SHA}` and `{PLAIN}` entries).
//!
//! The configuration types live here too; [`crate::config`] embeds them in
//! [`ListenerConfig`](crate::config::ListenerConfig) and calls [`validate`]. Everything a
//! request needs is built once per listener by [`Vhosts::new`]: the host lookup is a
//! [`NameTable`] (one hash probe for exact names, a scan of the wildcard names only when that
//! misses; the TLS certificate of a server block is chosen by SNI through the same table type), and the
//! location lookup one hash probe plus a scan of the prefixes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use herd_core::http::header::HeaderName;
use herd_core::http::{header, Body, HeaderValue, Request, Response, StatusCode};
use herd_core::http::{Router, StaticDir};
use herd_core::names::NameTable;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::config::{ConfigError, Dur};

/// One `[[listener.server]]`: a virtual host (nginx's `server { ... }`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Host names this server answers: `example.com`, `*.example.com`, `www.example.*`
    /// (nginx's `server_name`). Case does not matter; a port in `Host` is ignored.
    pub server_name: Vec<String>,
    /// Answer requests whose `Host` no server names (nginx's `listen ... default_server`).
    /// Without one, the first server (or the listener's own `root`) is the default.
    pub default: bool,
    /// Directory for every location without its own `root` or `alias`.
    pub root: Option<PathBuf>,
    /// Index files of directory URLs (default `["index.html"]`), for locations without their own.
    pub index: Vec<String>,
    /// Status code -> URI of the page to answer with instead (`{ 404 = "/404.html" }`), for
    /// locations without their own.
    pub error_page: BTreeMap<String, String>,
    /// The locations, matched in nginx's order.
    pub location: Vec<LocationConfig>,
    /// This server's own certificate, chosen by the SNI name with the same rules as `Host`
    /// (nginx's `ssl_certificate` inside a `server`); needs `tls` on the listener. Without
    /// it, the listener's certificates answer for this server's names.
    pub tls: Option<crate::tls::CertConfig>,
}

/// `return = { status = 301, url = "https://$host$request_uri" }` (nginx's `return`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnConfig {
    /// The status (100..=599).
    pub status: u16,
    /// For 301, 302, 303, 307 and 308 the `Location`; otherwise the body text. Variables:
    /// `$scheme`, `$host`, `$request_uri`, `$uri`.
    #[serde(default)]
    pub url: String,
}

/// One `[[listener.server.location]]` (nginx's `location ... { ... }`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LocationConfig {
    /// `/prefix`, `= /exact`, `^~ /prefix` (no regex check after it), `~ regex`, `~* regex`
    /// (case-insensitive).
    pub path: String,
    /// Files below this directory, by the whole URI (nginx's `root`).
    pub root: Option<PathBuf>,
    /// Files below this directory, by the URI minus the location's prefix (nginx's `alias`).
    pub alias: Option<PathBuf>,
    /// Index files of directory URLs, tried in order (nginx's `index`).
    pub index: Vec<String>,
    /// Files to try in order (`$uri`, `$uri/`); the last entry is a URI to serve instead or
    /// `=404` (nginx's `try_files`).
    pub try_files: Vec<String>,
    /// Answer at once (nginx's `return`).
    #[serde(rename = "return")]
    pub ret: Option<ReturnConfig>,
    /// Status code -> URI of the page to answer with instead (nginx's `error_page`).
    pub error_page: BTreeMap<String, String>,
    /// Headers added to 2xx and 3xx answers (nginx's `add_header`).
    pub add_header: BTreeMap<String, String>,
    /// `Cache-Control: max-age` and `Expires` on 2xx and 3xx answers (nginx's `expires`).
    pub expires: Option<Dur>,
    /// Ask for a password, with this realm (nginx's `auth_basic`).
    pub auth_basic: Option<String>,
    /// The htpasswd file of `auth_basic` (nginx's `auth_basic_user_file`).
    pub auth_basic_user_file: Option<PathBuf>,
}

/// How a location's `path` matches.
#[derive(Debug, Clone)]
enum Match {
    Exact(String),
    Prefix { prefix: String, no_regex: bool },
    Regex(regex::Regex),
}

/// Parse a location's `path` (`= /x`, `^~ /x`, `~ re`, `~* re`, `/x`).
fn parse_match(p: &str) -> Result<Match, String> {
    let p = p.trim();
    let path = |s: &str| -> Result<String, String> {
        let s = s.trim();
        if s.starts_with('/') {
            Ok(s.to_string())
        } else {
            Err(format!("{s:?} must start with '/'"))
        }
    };
    let re = |s: &str, ci: bool| {
        regex::RegexBuilder::new(s.trim())
            .case_insensitive(ci)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| one_line(&e.to_string()))
    };
    if let Some(r) = p.strip_prefix("~*") {
        Ok(Match::Regex(re(r, true)?))
    } else if let Some(r) = p.strip_prefix('~') {
        Ok(Match::Regex(re(r, false)?))
    } else if let Some(r) = p.strip_prefix("^~") {
        Ok(Match::Prefix {
            prefix: path(r)?,
            no_regex: true,
        })
    } else if let Some(r) = p.strip_prefix('=') {
        Ok(Match::Exact(path(r)?))
    } else {
        Ok(Match::Prefix {
            prefix: path(p)?,
            no_regex: false,
        })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Check a name of `server_name`.
fn check_name(n: &str) -> Result<(), String> {
    let body = n
        .strip_prefix("*.")
        .or_else(|| n.strip_suffix(".*"))
        .unwrap_or(n);
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?} is not a host name, `*.name` or `name.*` (regex names are not supported)"
        ))
    }
}

/// Check the `server` blocks of listener `i` (called by [`crate::config::Config::validate`]);
/// `has_root` says whether the listener has its own `root` (the implicit default server).
pub fn validate(i: usize, servers: &[ServerConfig], has_root: bool) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    let mut defaults = 0;
    let _ = has_root;
    for (s, srv) in servers.iter().enumerate() {
        let at = |k: &str| format!("listener[{i}].server[{s}].{k}");
        for n in &srv.server_name {
            check_name(n).map_err(|e| ConfigError::new(at("server_name"), e))?;
            if !names.insert(n.to_ascii_lowercase()) {
                return Err(ConfigError::new(
                    at("server_name"),
                    format!("{n:?} is named by another server of this listener"),
                ));
            }
        }
        if srv.server_name.is_empty() && !srv.default {
            return Err(ConfigError::new(
                at("server_name"),
                "is required (or default = true)",
            ));
        }
        defaults += usize::from(srv.default);
        if defaults > 1 {
            return Err(ConfigError::new(
                at("default"),
                "only one server of a listener can be the default",
            ));
        }
        check_dir(srv.root.as_deref()).map_err(|e| ConfigError::new(at("root"), e))?;
        check_index(&srv.index).map_err(|e| ConfigError::new(at("index"), e))?;
        check_error_pages(&srv.error_page).map_err(|e| ConfigError::new(at("error_page"), e))?;
        for (j, loc) in srv.location.iter().enumerate() {
            let at = |k: &str| format!("listener[{i}].server[{s}].location[{j}].{k}");
            let m = parse_match(&loc.path).map_err(|e| ConfigError::new(at("path"), e))?;
            if loc.root.is_some() && loc.alias.is_some() {
                return Err(ConfigError::new(
                    at("alias"),
                    "root and alias exclude each other",
                ));
            }
            if loc.alias.is_some() && !matches!(m, Match::Prefix { .. } | Match::Exact(_)) {
                return Err(ConfigError::new(
                    at("alias"),
                    "needs a prefix or exact location (a regex one has no prefix to replace)",
                ));
            }
            check_dir(loc.root.as_deref()).map_err(|e| ConfigError::new(at("root"), e))?;
            check_dir(loc.alias.as_deref()).map_err(|e| ConfigError::new(at("alias"), e))?;
            check_index(&loc.index).map_err(|e| ConfigError::new(at("index"), e))?;
            check_error_pages(&loc.error_page)
                .map_err(|e| ConfigError::new(at("error_page"), e))?;
            if let Some((last, _)) = loc.try_files.split_last() {
                let ok = match last.strip_prefix('=') {
                    Some(code) => code.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c)),
                    None => last.starts_with('/') || last.starts_with("$uri"),
                };
                if !ok {
                    return Err(ConfigError::new(
                        at("try_files"),
                        format!("the last entry {last:?} must be a URI (\"/index.html\") or =code (\"=404\")"),
                    ));
                }
            }
            if let Some(r) = &loc.ret {
                if !(100..=599).contains(&r.status) {
                    return Err(ConfigError::new(at("return.status"), "must be 100..=599"));
                }
            }
            for (k, v) in &loc.add_header {
                if HeaderName::from_bytes(k.as_bytes()).is_err() {
                    return Err(ConfigError::new(
                        at("add_header"),
                        format!("{k:?} is not a header name"),
                    ));
                }
                if HeaderValue::from_str(v).is_err() {
                    return Err(ConfigError::new(
                        at("add_header"),
                        format!("{v:?} is not a header value"),
                    ));
                }
            }
            match (&loc.auth_basic, &loc.auth_basic_user_file) {
                (Some(realm), Some(file)) => {
                    if realm.contains('"') || HeaderValue::from_str(realm).is_err() {
                        return Err(ConfigError::new(
                            at("auth_basic"),
                            "the realm must be printable text without '\"'",
                        ));
                    }
                    Htpasswd::load(file)
                        .map_err(|e| ConfigError::new(at("auth_basic_user_file"), e))?;
                }
                (None, None) => {}
                (Some(_), None) => {
                    return Err(ConfigError::new(
                        at("auth_basic_user_file"),
                        "auth_basic needs an htpasswd file",
                    ))
                }
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        at("auth_basic"),
                        "auth_basic_user_file needs auth_basic = \"realm\"",
                    ))
                }
            }
        }
    }
    Ok(())
}

fn check_dir(p: Option<&Path>) -> Result<(), String> {
    match p {
        Some(p) if !p.is_dir() => Err(format!("{} is not a directory", p.display())),
        _ => Ok(()),
    }
}

fn check_index(names: &[String]) -> Result<(), String> {
    match names
        .iter()
        .find(|n| n.is_empty() || n.contains('/') || n == &".." || n == &".")
    {
        Some(n) => Err(format!("{n:?} is not a file name")),
        None => Ok(()),
    }
}

fn check_error_pages(pages: &BTreeMap<String, String>) -> Result<(), String> {
    for (code, page) in pages {
        if !code.parse::<u16>().is_ok_and(|c| (300..=599).contains(&c)) {
            return Err(format!("{code:?} is not a status code 300..=599"));
        }
        if !page.starts_with('/') {
            return Err(format!("{page:?} must be a URI starting with '/'"));
        }
    }
    Ok(())
}

/// The users of an htpasswd file.
#[derive(Debug, Default)]
struct Htpasswd {
    users: HashMap<String, String>,
    /// SHA-1 of `Authorization` values already verified, so a bcrypt hash (tens of
    /// milliseconds) is computed once per client credential, not per request. Bounded.
    verified: Mutex<HashSet<[u8; 20]>>,
}

/// Most verified credentials remembered per location.
const VERIFIED_MAX: usize = 1024;

impl Htpasswd {
    /// `user:hash` lines; `#` comments and blank lines skipped. Hashes: bcrypt (`$2a$`,
    /// `$2b$`, `$2y$`), `{SHA}` + base64 SHA-1, `{PLAIN}` + the password.
    fn load(path: &Path) -> Result<Htpasswd, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("{}:{}: not user:hash", path.display(), n + 1));
            };
            let known = hash.starts_with("$2a$")
                || hash.starts_with("$2b$")
                || hash.starts_with("$2y$")
                || hash.starts_with("{SHA}")
                || hash.starts_with("{PLAIN}");
            if !known {
                return Err(format!(
                    "{}:{}: unsupported hash (bcrypt, {{SHA}} and {{PLAIN}} are)",
                    path.display(),
                    n + 1
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::default(),
        })
    }

    /// Whether the `Authorization` header value names a user with the right password.
    fn check(&self, authorization: &[u8]) -> bool {
        let key: [u8; 20] = Sha1::digest(authorization).into();
        if self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return true;
        }
        let Some(b64) = authorization
            .strip_prefix(b"Basic ")
            .or_else(|| authorization.strip_prefix(b"basic "))
        else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim_ascii()) else {
            return false;
        };
        let Ok(raw) = String::from_utf8(raw) else {
            return false;
        };
        let Some((user, pass)) = raw.split_once(':') else {
            return false;
        };
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let ok = if let Some(h) = hash.strip_prefix("{SHA}") {
            base64::engine::general_purpose::STANDARD.encode(Sha1::digest(pass.as_bytes())) == h
        } else if let Some(p) = hash.strip_prefix("{PLAIN}") {
            p == pass
        } else {
            bcrypt::verify(pass, hash).unwrap_or(false)
        };
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= VERIFIED_MAX {
                    v.clear();
                }
                v.insert(key);
            }
        }
        ok
    }
}

/// Where a location's files are.
#[derive(Debug, Clone)]
enum Files {
    None,
    Root(Arc<StaticDir>),
    Alias(Arc<StaticDir>, String),
}

/// A location ready to answer.
struct Location {
    m: Match,
    files: Files,
    index: Vec<String>,
    try_files: Vec<String>,
    ret: Option<ReturnConfig>,
    error_page: HashMap<u16, String>,
    add_header: Vec<(HeaderName, HeaderValue)>,
    expires: Option<u64>,
    auth: Option<(HeaderValue, Htpasswd)>,
}

/// A server ready to answer.
struct Server {
    exact: HashMap<String, usize>,
    /// Prefix locations, longest first.
    prefixes: Vec<usize>,
    regexes: Vec<usize>,
    locations: Vec<Location>,
    /// The answer when no location matches: the server's root, index and error pages.
    fallback: Location,
    first_name: String,
}

/// Every server of a listener, and how to pick one by `Host`.
pub struct Vhosts {
    servers: Vec<Server>,
    /// Every `server_name`, to the server's index (the matching TLS certificates use too).
    names: NameTable<usize>,
    default: usize,
    tls: bool,
}

fn dir(p: &Path) -> std::io::Result<Arc<StaticDir>> {
    Ok(Arc::new(StaticDir::new(p)?))
}

impl Vhosts {
    /// Build the servers of a listener (validated by [`validate`]); `root` is the listener's
    /// own `root` (served as a server with no names, the default unless a server says
    /// `default = true`); `tls` gives `$scheme`.
    pub fn new(
        servers: &[ServerConfig],
        root: Option<&Path>,
        tls: bool,
    ) -> std::io::Result<Vhosts> {
        let mut out = Vhosts {
            servers: Vec::new(),
            names: NameTable::new(),
            default: 0,
            tls,
        };
        let mut all: Vec<ServerConfig> = servers.to_vec();
        let explicit_default = servers.iter().position(|s| s.default);
        if let Some(r) = root {
            all.insert(
                0,
                ServerConfig {
                    root: Some(r.to_path_buf()),
                    ..ServerConfig::default()
                },
            );
        }
        out.default = match (explicit_default, root.is_some()) {
            (Some(d), true) => d + 1,
            (Some(d), false) => d,
            (None, _) => 0,
        };
        for (idx, s) in all.iter().enumerate() {
            for n in &s.server_name {
                out.names.insert(n, idx);
            }
            out.servers.push(Server::new(s)?);
        }
        Ok(out)
    }

    /// The index of the server for a `Host` value (port and case ignored).
    fn pick(&self, host: &str) -> usize {
        self.names
            .get(strip_port(host))
            .copied()
            .unwrap_or(self.default)
    }

    /// Answer a request.
    pub fn serve(&self, req: &Request<Body>) -> Response<Body> {
        // An absolute-form target's host wins over `Host` (RFC 9112 3.2.2).
        let host = req
            .uri()
            .host()
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("");
        let server = &self.servers[self.pick(host)];
        // Locations match the decoded, normalised path (as nginx's do), so `/%70rivate/` or
        // `//private/` cannot step around `location /private/`.
        let Some(uri) = normalize(req.uri().path()) else {
            tracing::warn!(
                reason = "bad_path",
                "{host}: refused request path {:?} (bad escape, encoded slash or control byte, or `..` above the root)",
                req.uri().path()
            );
            return text(StatusCode::BAD_REQUEST, "400 Bad Request\n");
        };
        let cx = Cx {
            req,
            host,
            server,
            tls: self.tls,
        };
        cx.answer(&uri, 0)
    }

    /// A router answering every path with [`serve`](Self::serve).
    pub fn router(self) -> Router {
        let me = Arc::new(self);
        let other = me.clone();
        Router::new()
            .any("/", move |req: Request<Body>| me.serve(&req))
            .any("/*", move |req: Request<Body>| other.serve(&req))
    }
}

impl Server {
    fn new(s: &ServerConfig) -> std::io::Result<Server> {
        let base_files = match &s.root {
            Some(r) => Files::Root(dir(r)?),
            None => Files::None,
        };
        let index = if s.index.is_empty() {
            vec!["index.html".to_string()]
        } else {
            s.index.clone()
        };
        let pages = |m: &BTreeMap<String, String>| -> HashMap<u16, String> {
            m.iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.clone())))
                .collect()
        };
        let mut out = Server {
            exact: HashMap::new(),
            prefixes: Vec::new(),
            regexes: Vec::new(),
            locations: Vec::new(),
            fallback: Location {
                m: Match::Prefix {
                    prefix: "/".into(),
                    no_regex: false,
                },
                files: base_files.clone(),
                index: index.clone(),
                try_files: Vec::new(),
                ret: None,
                error_page: pages(&s.error_page),
                add_header: Vec::new(),
                expires: None,
                auth: None,
            },
            first_name: s
                .server_name
                .iter()
                .find(|n| !n.contains('*'))
                .cloned()
                .unwrap_or_default(),
        };
        for (j, l) in s.location.iter().enumerate() {
            let m = parse_match(&l.path)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let files = match (&l.root, &l.alias, &m) {
                (Some(r), _, _) => Files::Root(dir(r)?),
                (None, Some(a), Match::Prefix { prefix, .. } | Match::Exact(prefix)) => {
                    Files::Alias(dir(a)?, prefix.clone())
                }
                _ => base_files.clone(),
            };
            let auth = match (&l.auth_basic, &l.auth_basic_user_file) {
                (Some(realm), Some(file)) => Some((
                    HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
                        .map_err(std::io::Error::other)?,
                    Htpasswd::load(file).map_err(std::io::Error::other)?,
                )),
                _ => None,
            };
            let mut error_page = out.fallback.error_page.clone();
            error_page.extend(pages(&l.error_page));
            match &m {
                Match::Exact(p) => {
                    out.exact.insert(p.clone(), j);
                }
                Match::Prefix { .. } => out.prefixes.push(j),
                Match::Regex(_) => out.regexes.push(j),
            }
            out.locations.push(Location {
                m,
                files,
                index: if l.index.is_empty() {
                    index.clone()
                } else {
                    l.index.clone()
                },
                try_files: l.try_files.clone(),
                ret: l.ret.clone(),
                error_page,
                add_header: l
                    .add_header
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((
                            HeaderName::from_bytes(k.as_bytes()).ok()?,
                            HeaderValue::from_str(v).ok()?,
                        ))
                    })
                    .collect(),
                expires: l.expires.map(|d| d.0.as_secs()),
                auth,
            });
        }
        let locs = &out.locations;
        out.prefixes.sort_by_key(|&j| match &locs[j].m {
            Match::Prefix { prefix, .. } => std::cmp::Reverse(prefix.len()),
            _ => std::cmp::Reverse(0),
        });
        Ok(out)
    }

    /// The location for `path`, in nginx's order.
    fn find(&self, path: &str) -> &Location {
        if let Some(&j) = self.exact.get(path) {
            return &self.locations[j];
        }
        let prefix = self.prefixes.iter().copied().find(|&j| {
            matches!(&self.locations[j].m, Match::Prefix { prefix, .. } if path.starts_with(prefix.as_str()))
        });
        if let Some(j) = prefix {
            if matches!(self.locations[j].m, Match::Prefix { no_regex: true, .. }) {
                return &self.locations[j];
            }
        }
        for &j in &self.regexes {
            if let Match::Regex(r) = &self.locations[j].m {
                if r.is_match(path) {
                    return &self.locations[j];
                }
            }
        }
        prefix.map_or(&self.fallback, |j| &self.locations[j])
    }
}

/// One request's context.
struct Cx<'a> {
    req: &'a Request<Body>,
    host: &'a str,
    server: &'a Server,
    tls: bool,
}

impl Cx<'_> {
    /// Answer for `uri` (the request's path, or one `try_files` / `error_page` leads to).
    /// `depth` bounds internal redirects.
    fn answer(&self, uri: &str, depth: u8) -> Response<Body> {
        let loc = self.server.find(uri);
        if let Some(denied) = self.check_auth(loc) {
            return denied;
        }
        let mut resp = self.content(loc, uri, depth);
        let status = resp.status();
        if depth == 0 && (status.is_client_error() || status.is_server_error()) {
            if let Some(page) = loc.error_page.get(&status.as_u16()) {
                let mut p = self.answer(page, 1);
                if p.status().is_success() {
                    *p.status_mut() = status;
                    return p;
                }
            }
        }
        if status.is_success() || status.is_redirection() {
            let h = resp.headers_mut();
            for (k, v) in &loc.add_header {
                h.insert(k.clone(), v.clone());
            }
            if let Some(secs) = loc.expires {
                expires(h, secs);
            }
        }
        resp
    }

    fn content(&self, loc: &Location, uri: &str, depth: u8) -> Response<Body> {
        if let Some(r) = &loc.ret {
            let value = self.expand(&r.url, uri);
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            if matches!(r.status, 301 | 302 | 303 | 307 | 308) {
                let mut resp = text(status, "");
                if let Ok(v) = HeaderValue::from_str(&value) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                return resp;
            }
            return text(status, &value);
        }
        if loc.try_files.is_empty() {
            return self.file(loc, uri);
        }
        let (last, tries) = loc.try_files.split_last().expect("not empty");
        for t in tries {
            let cand = t.replace("$uri", uri);
            if cand.ends_with('/') && !uri.ends_with('/') && t.ends_with("$uri/") {
                // `$uri/`: a directory; its index answers if one exists.
                let r = self.file(loc, &cand);
                if r.status().is_success() {
                    return r;
                }
                continue;
            }
            let r = self.file(loc, &cand);
            if r.status() != StatusCode::NOT_FOUND && r.status() != StatusCode::MOVED_PERMANENTLY {
                return r;
            }
        }
        if let Some(code) = last.strip_prefix('=') {
            let status = code
                .parse()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::NOT_FOUND);
            return text(status, &format!("{status}\n"));
        }
        let target = last.replace("$uri", uri);
        if depth >= 4 {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "redirection cycle\n");
        }
        self.answer_inner(&target, depth + 1)
    }

    /// The 401 answer if `loc` asks for a password the request does not carry.
    fn check_auth(&self, loc: &Location) -> Option<Response<Body>> {
        let (challenge, users) = loc.auth.as_ref()?;
        let ok = self
            .req
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| users.check(v.as_bytes()));
        if ok {
            return None;
        }
        let mut r = text(StatusCode::UNAUTHORIZED, "401 Unauthorized\n");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge.clone());
        Some(r)
    }

    /// An internal redirect: the location for `uri` answers (its password too, so a
    /// `try_files` fallback cannot lead around `auth_basic`), without error pages again.
    fn answer_inner(&self, uri: &str, depth: u8) -> Response<Body> {
        let loc = self.server.find(uri);
        if let Some(denied) = self.check_auth(loc) {
            return denied;
        }
        self.content(loc, uri, depth)
    }

    /// The file for `uri` from the location's directory (index files for directory URLs).
    fn file(&self, loc: &Location, uri: &str) -> Response<Body> {
        let (dir, rel) = match &loc.files {
            Files::None => return text(StatusCode::NOT_FOUND, "404 Not Found\n"),
            Files::Root(d) => (d, uri.strip_prefix('/').unwrap_or(uri).to_string()),
            Files::Alias(d, prefix) => {
                let rest = uri.strip_prefix(prefix.as_str()).unwrap_or("");
                (d, rest.trim_start_matches('/').to_string())
            }
        };
        if rel.is_empty() || rel.ends_with('/') {
            for name in &loc.index {
                let r = dir.serve(self.req, &encode(&format!("{rel}{name}")));
                if r.status() != StatusCode::NOT_FOUND {
                    return r;
                }
            }
            return text(StatusCode::NOT_FOUND, "404 Not Found\n");
        }
        dir.serve(self.req, &encode(&rel))
    }

    /// `$scheme`, `$host`, `$request_uri` and `$uri` in `s`.
    fn expand(&self, s: &str, uri: &str) -> String {
        if !s.contains('$') {
            return s.to_string();
        }
        let host = strip_port(self.host);
        let host = if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
            self.server.first_name.as_str()
        } else {
            host
        };
        let request_uri = self.req.uri().path_and_query().map_or("/", |p| p.as_str());
        s.replace("$scheme", if self.tls { "https" } else { "http" })
            .replace("$request_uri", request_uri)
            .replace("$host", host)
            .replace("$uri", uri)
    }
}

/// `Cache-Control: max-age=secs` and `Expires` that many seconds from now.
fn expires(h: &mut herd_core::http::HeaderMap, secs: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut date = herd_proto::http1::DateCache::new();
    date.update(now.saturating_add(secs));
    if let Ok(v) = HeaderValue::from_bytes(date.header_value()) {
        h.insert(header::EXPIRES, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={secs}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The request path decoded and normalised: `%XX` escapes decoded, `//` merged, `.` and `..`
/// segments resolved. `None` for what no file name can hold or what would leave the root: a
/// bad escape, an encoded `/`, a backslash, a control byte, invalid UTF-8, `..` above `/`.
fn normalize(path: &str) -> Option<String> {
    let raw = path.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let hi = hex(*raw.get(i + 1)?)?;
            let lo = hex(*raw.get(i + 2)?)?;
            let d = (hi * 16 + lo) as u8;
            if d == b'/' {
                return None;
            }
            bytes.push(d);
            i += 3;
        } else {
            bytes.push(b);
            i += 1;
        }
    }
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\') {
        return None;
    }
    let decoded = String::from_utf8(bytes).ok()?;
    let mut segs: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop()?;
            }
            s => segs.push(s),
        }
    }
    // `/a/`, `/a/.` and `/a/b/..` name a directory.
    let dir = matches!(decoded.rsplit('/').next(), Some("" | "." | ".."));
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if dir || segs.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// A decoded path percent-encoded again for [`StaticDir::serve`] (which decodes it): every
/// byte but the unreserved and `/`, sub-delimiters, `:` and `@`.
fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `host[:port]` or `[v6]:port` without the port.
fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']').map_or(h, |(a, _)| &h[..a.len() + 2]);
    }
    h.rsplit_once(':').map_or(h, |(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(names: &[&[&str]], default: Option<usize>) -> Vhosts {
        let servers: Vec<ServerConfig> = names
            .iter()
            .enumerate()
            .map(|(i, n)| ServerConfig {
                server_name: n.iter().map(|s| s.to_string()).collect(),
                default: default == Some(i),
                ..ServerConfig::default()
            })
            .collect();
        Vhosts::new(&servers, None, false).unwrap()
    }

    #[test]
    fn hosts_pick_exact_then_wildcards_then_the_default() {
        let v = vh(
            &[
                &["a.test"],
                &["*.b.test", "b.test"],
                &["www.c.*"],
                &["d.test"],
            ],
            Some(3),
        );
        assert_eq!(v.pick("a.test"), 0);
        assert_eq!(v.pick("A.Test:8080"), 0);
        assert_eq!(v.pick("x.b.test"), 1);
        assert_eq!(v.pick("x.y.b.test"), 1);
        assert_eq!(v.pick("b.test"), 1);
        assert_eq!(v.pick("www.c.org"), 2);
        assert_eq!(v.pick("nothing"), 3);
        assert_eq!(v.pick(""), 3);
        assert_eq!(v.pick("a.test."), 0);
        assert_eq!(vh(&[&["a"], &["b"]], None).pick("zzz"), 0);
    }

    #[test]
    fn locations_follow_nginx_order() {
        let loc = |p: &str| LocationConfig {
            path: p.into(),
            ..LocationConfig::default()
        };
        let s = ServerConfig {
            server_name: vec!["x".into()],
            location: vec![
                loc("/"),
                loc("/images/"),
                loc("^~ /static/"),
                loc("~* \\.png$"),
                loc("= /exact"),
                loc("~ ^/images/big"),
            ],
            ..ServerConfig::default()
        };
        let srv = Server::new(&s).unwrap();
        let which = |p: &str| {
            let l = srv.find(p) as *const Location;
            srv.locations.iter().position(|x| std::ptr::eq(x, l))
        };
        assert_eq!(which("/exact"), Some(4));
        assert_eq!(which("/exact/more"), Some(0));
        assert_eq!(which("/images/a.jpg"), Some(1));
        assert_eq!(
            which("/images/a.PNG"),
            Some(3),
            "the regex beats the prefix"
        );
        assert_eq!(which("/images/big.jpg"), Some(5));
        assert_eq!(which("/static/a.png"), Some(2), "^~ stops the regexes");
        assert_eq!(which("/other"), Some(0));
    }

    /// A listener like `bench/vhost.sh`'s: the target server (`site.test`, `*.wild.test`)
    /// after `servers - 1` decoys with longer wildcard names, each with an exact, a `^~`, a
    /// regex and a `/` location.
    fn bench_vhosts(servers: usize) -> Vhosts {
        let loc = |p: &str| LocationConfig {
            path: p.into(),
            ..LocationConfig::default()
        };
        let server = |names: Vec<String>| ServerConfig {
            server_name: names,
            location: vec![
                loc("= /health"),
                loc("^~ /static/"),
                loc("~* \\.(png|jpe?g|css)$"),
                loc("/"),
            ],
            ..ServerConfig::default()
        };
        let mut all: Vec<ServerConfig> = (1..servers)
            .map(|i| server(vec![format!("d{i}.test"), format!("*.decoy{i}.test")]))
            .collect();
        all.push(server(vec!["site.test".into(), "*.wild.test".into()]));
        Vhosts::new(&all, None, false).unwrap()
    }

    /// `HERD_VHOST_BENCH_N` rounds of pick + find over 3 hosts x 4 paths.
    #[inline(never)]
    fn bench_loop(v: &Vhosts, n: usize) -> usize {
        let hosts = ["site.test", "a.wild.test", "SITE.TEST:8080"];
        let paths = ["/health", "/static/app.js", "/img/a.png", "/docs/page.html"];
        let mut sum = 0;
        for _ in 0..n {
            for h in hosts {
                for p in paths {
                    let i = v.pick(std::hint::black_box(h));
                    let l = v.servers[i].find(std::hint::black_box(p));
                    sum += i + usize::from(l.expires.is_some());
                }
            }
        }
        sum
    }

    fn bench(servers: usize) {
        let n = std::env::var("HERD_VHOST_BENCH_N")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000);
        let v = bench_vhosts(servers);
        let target = v.servers.len() - 1;
        assert!(["site.test", "a.wild.test"]
            .iter()
            .all(|h| v.pick(h) == target));
        let t = std::time::Instant::now();
        let sum = std::hint::black_box(bench_loop(&v, n));
        let ops = n * 12;
        println!(
            "{servers} server(s): {ops} pick+find, {:.1} ns each (sum {sum}); \
             for instructions: valgrind --tool=callgrind --toggle-collect='*bench_loop*'",
            t.elapsed().as_nanos() as f64 / ops as f64
        );
    }

    /// The cost of picking a server and finding a location with 1 server block; run with
    /// `--ignored` (under callgrind, see `bench/vhost.sh`).
    #[test]
    #[ignore]
    fn bench_pick_find_1() {
        bench(1);
    }

    /// The same with 10 server blocks, the target's names scanned last.
    #[test]
    #[ignore]
    fn bench_pick_find_10() {
        bench(10);
    }

    #[test]
    fn paths_are_decoded_and_normalised() {
        let n = |p: &str| normalize(p);
        assert_eq!(n("/").as_deref(), Some("/"));
        assert_eq!(n("/a/b").as_deref(), Some("/a/b"));
        assert_eq!(n("/a/b/").as_deref(), Some("/a/b/"));
        assert_eq!(n("/%70rivate/x").as_deref(), Some("/private/x"));
        assert_eq!(n("//private//x").as_deref(), Some("/private/x"));
        assert_eq!(n("/./private/./x").as_deref(), Some("/private/x"));
        assert_eq!(n("/x/../private/x").as_deref(), Some("/private/x"));
        assert_eq!(n("/a/.").as_deref(), Some("/a/"));
        assert_eq!(n("/a/b/..").as_deref(), Some("/a/"));
        assert_eq!(n("/a/%2e%2e/b").as_deref(), Some("/b"));
        assert_eq!(n("/caf%C3%A9").as_deref(), Some("/café"));
        for bad in [
            "/..",
            "/../x",
            "/a/../../x",
            "/%2e%2e/x",
            "/a%2fb",
            "/a%2F..",
            "/%5c",
            "/a\\b",
            "/%00",
            "/%0a",
            "/%",
            "/%g0",
            "/%ff",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
        assert_eq!(encode("/café 100%?#.txt"), "/caf%C3%A9%20100%25%3F%23.txt");
        assert_eq!(encode("/a-b_c.d~e/f"), "/a-b_c.d~e/f");
    }

    #[test]
    fn bad_locations_and_names_are_refused() {
        assert!(parse_match("~ (").is_err());
        assert!(parse_match("= nope").is_err());
        assert!(parse_match("nope").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("*.ok.test").is_ok());
        assert!(check_name("ok.*").is_ok());
        assert!(check_name("*").is_err());
    }

    #[test]
    fn htpasswd_formats() {
        let dir = std::env::temp_dir().join(format!("herd-htpasswd-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("users");
        let bc = bcrypt::hash("b-pass", 4).unwrap();
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(b"s-pass"));
        std::fs::write(
            &f,
            format!("# users\nb:{bc}\ns:{{SHA}}{sha}\np:{{PLAIN}}p-pass\n"),
        )
        .unwrap();
        let h = Htpasswd::load(&f).unwrap();
        let basic = |up: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(up)
            )
        };
        assert!(h.check(basic("b:b-pass").as_bytes()));
        assert!(h.check(basic("b:b-pass").as_bytes()), "cached");
        assert!(!h.check(basic("b:wrong").as_bytes()));
        assert!(h.check(basic("s:s-pass").as_bytes()));
        assert!(!h.check(basic("s:x").as_bytes()));
        assert!(h.check(basic("p:p-pass").as_bytes()));
        assert!(!h.check(basic("nobody:p-pass").as_bytes()));
        assert!(!h.check(b"Basic !!!"));
        assert!(!h.check(b"Bearer x"));
        std::fs::write(&f, "u:$apr1$xyz\n").unwrap();
        assert!(Htpasswd::load(&f).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
