//! Unknown keys in a configuration file, and why each one is wrong.
//!
//! [`super::parse`] collects every key serde did not use (through `serde_ignored`) and turns
//! them into one [`ConfigError`]: the first key's full path (`listener[1].gzip_level`,
//! `listener[0].tls.certt`) and, for each key, the most useful explanation found: a top-level
//! (or listener) key written after a table header, which TOML therefore reads into that table;
//! an nginx directive and herd's equivalent; a key that belongs in a sub-table
//! (`gzip_level` -> `compression.gzip_level`); or the nearest valid key by edit distance. The
//! valid keys of each table are read from the serde derives themselves ([`fields_of`]), so
//! they cannot drift from the schema. Nothing here reads files or has side effects.

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::{
    CompressionConfig, Config, ConfigError, LimitReqConfig, ListenerConfig, LogConfig,
    ProxyLocation, UpstreamConfig, WsDeflateConfig,
};
use crate::tls::{CertConfig, TlsConfig};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    /// `name` in `a.name`.
    Key(String),
    /// `1` in `listener[1]`.
    Index(usize),
}

/// The segments of a path reported by `serde_ignored` (its `Option` and newtype markers
/// dropped: a reader wants the keys).
pub(super) fn segments(p: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    let mut out = Vec::new();
    let mut at = p;
    loop {
        at = match at {
            Path::Root => break,
            Path::Seq { parent, index } => {
                out.push(Seg::Index(*index));
                parent
            }
            Path::Map { parent, key } => {
                out.push(Seg::Key(key.clone()));
                parent
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => parent,
        };
    }
    out.reverse();
    out
}

/// `listener[1].tls.certt`.
pub(super) fn display(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// One error for every unknown key: the first one's, with the others in `more`, so one
/// `herd -t` run names them all.
pub(super) fn error(keys: &[Vec<Seg>]) -> Option<ConfigError> {
    let (first, rest) = keys.split_first()?;
    let mut e = ConfigError::new(display(first), explain(first));
    e.more = rest
        .iter()
        .map(|k| ConfigError::new(display(k), explain(k)))
        .collect();
    Some(e)
}

/// A table of the schema that an unknown key can be found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Top,
    Log,
    Listener(usize),
    Tls(usize),
    Cert(usize, usize),
    Compression,
    LimitReq,
    WsDeflate,
    Upstream(usize),
    Proxy,
    Server(usize),
    ServerTls(usize),
    Location(usize),
}

impl Table {
    /// The table a path of segments leads to.
    fn at(segs: &[Seg]) -> Option<Table> {
        use Seg::{Index, Key};
        let key = |s: &Seg, k: &str| matches!(s, Key(x) if x == k);
        Some(match segs {
            [] => Table::Top,
            [l] if key(l, "log") => Table::Log,
            [l, Index(i)] if key(l, "listener") => Table::Listener(*i),
            [u, Index(i)] if key(u, "upstream") => Table::Upstream(*i),
            [l, Index(_), p, Index(_)] if key(l, "listener") && key(p, "proxy") => Table::Proxy,
            [l, Index(i), s, Index(_)] if key(l, "listener") && key(s, "server") => {
                Table::Server(*i)
            }
            [l, Index(i), s, Index(_), t]
                if key(l, "listener") && key(s, "server") && key(t, "tls") =>
            {
                Table::ServerTls(*i)
            }
            [l, Index(i), s, Index(_), c, Index(_)]
                if key(l, "listener") && key(s, "server") && key(c, "location") =>
            {
                Table::Location(*i)
            }
            [l, Index(i), Key(t)] if key(l, "listener") => match t.as_str() {
                "tls" => Table::Tls(*i),
                "compression" => Table::Compression,
                "limit_req" => Table::LimitReq,
                "ws_deflate" => Table::WsDeflate,
                _ => return None,
            },
            [l, Index(i), t, c, Index(j)]
                if key(l, "listener") && key(t, "tls") && key(c, "certs") =>
            {
                Table::Cert(*i, *j)
            }
            _ => return None,
        })
    }

    /// The keys valid in this table.
    fn fields(self) -> &'static [&'static str] {
        match self {
            Table::Top => fields_of::<Config>(),
            Table::Log => fields_of::<LogConfig>(),
            Table::Listener(_) => fields_of::<ListenerConfig>(),
            Table::Tls(_) => fields_of::<TlsConfig>(),
            Table::Cert(..) | Table::ServerTls(_) => fields_of::<CertConfig>(),
            Table::Compression => fields_of::<CompressionConfig>(),
            Table::LimitReq => fields_of::<LimitReqConfig>(),
            Table::WsDeflate => fields_of::<WsDeflateConfig>(),
            Table::Upstream(_) => fields_of::<UpstreamConfig>(),
            Table::Proxy => fields_of::<ProxyLocation>(),
            Table::Server(_) => fields_of::<crate::vhost::ServerConfig>(),
            Table::Location(_) => fields_of::<crate::vhost::LocationConfig>(),
        }
    }

    /// The tables this one is inside, nearest first, for a table usually opened by a header
    /// (`[log]`, `[[listener]]`, `[listener.tls]`): a key of an outer table written below that
    /// header lands in this one. Empty for the top level and inline tables.
    fn outer(self) -> Vec<Table> {
        match self {
            Table::Log | Table::Listener(_) | Table::Upstream(_) => vec![Table::Top],
            Table::Tls(i) => vec![Table::Listener(i), Table::Top],
            Table::Cert(i, _) => vec![Table::Tls(i), Table::Listener(i), Table::Top],
            Table::Server(i) => vec![Table::Listener(i), Table::Top],
            Table::Location(i) | Table::ServerTls(i) => {
                vec![Table::Server(i), Table::Listener(i), Table::Top]
            }
            _ => Vec::new(),
        }
    }

    /// Its header as written in the file, and what to call it.
    fn header(self) -> (String, &'static str) {
        match self {
            Table::Log => ("[log]".into(), "that table"),
            Table::Listener(i) => (format!("[[listener]] number {}", i + 1), "that listener"),
            Table::Upstream(i) => (format!("[[upstream]] number {}", i + 1), "that upstream"),
            Table::Tls(i) => (
                format!("[listener.tls] (of [[listener]] number {})", i + 1),
                "that tls table",
            ),
            Table::Cert(i, j) => (
                format!(
                    "[[listener.tls.certs]] number {} (of [[listener]] number {})",
                    j + 1,
                    i + 1
                ),
                "that certificate",
            ),
            Table::Server(i) => (
                format!("[[listener.server]] (of [[listener]] number {})", i + 1),
                "that server",
            ),
            Table::Location(i) => (
                format!(
                    "[[listener.server.location]] (of [[listener]] number {})",
                    i + 1
                ),
                "that location",
            ),
            Table::ServerTls(i) => (
                format!("[listener.server.tls] (of [[listener]] number {})", i + 1),
                "that tls table",
            ),
            _ => (String::new(), "that table"),
        }
    }

    /// What a key of this table is called, and where it must go instead.
    fn owner(self) -> (&'static str, &'static str) {
        match self {
            Table::Top => (
                "a top-level key",
                "move it above the first [[listener]] (top-level keys go before every table)",
            ),
            Table::Listener(_) => (
                "a [[listener]] key",
                "move it above [listener.tls] and [[listener.server]], with the listener's other keys",
            ),
            Table::Server(_) => (
                "a [[listener.server]] key",
                "move it above the server's first [[listener.server.location]]",
            ),
            Table::Tls(_) => (
                "a tls key",
                "move it above the first [[listener.tls.certs]]",
            ),
            _ => ("a key of another table", "move it to its table"),
        }
    }

    /// Sub-tables of this table, by key.
    fn children(self) -> &'static [(&'static str, Table)] {
        match self {
            Table::Listener(_) => &[
                ("compression", Table::Compression),
                ("limit_req", Table::LimitReq),
                ("ws_deflate", Table::WsDeflate),
                ("tls", Table::Tls(0)),
            ],
            _ => &[],
        }
    }
}

/// nginx directives operators write by habit, and herd's equivalent (`None`: there is none,
/// and why).
const NGINX: &[(&str, Result<&str, &str>)] = &[
    (
        "ssl_certificate",
        Ok("`tls.cert` on a [[listener]]: tls = { cert = \"...\", key = \"...\" } (docs/tls.md)"),
    ),
    (
        "ssl_certificate_key",
        Ok("`tls.key` on a [[listener]] (docs/tls.md)"),
    ),
    ("ssl_stapling_file", Ok("`tls.ocsp` (docs/tls.md)")),
    (
        "ssl_client_certificate",
        Ok("`tls.client_ca` (docs/tls.md)"),
    ),
    ("ssl_verify_client", Ok("`tls.client_auth` (docs/tls.md)")),
    ("ssl_session_cache", Ok("`tls.session_cache` (docs/tls.md)")),
    ("ssl_session_tickets", Ok("`tls.tickets` (docs/tls.md)")),
    (
        "ssl_protocols",
        Ok("`tls.tls12` (TLS 1.3 is always on, docs/tls.md)"),
    ),
    (
        "ssl_ciphers",
        Err("rustls's safe default cipher suites are always used"),
    ),
    (
        "server_name",
        Ok("`server` blocks below the listener, each [[listener.server]] with \
            server_name = [\"example.com\", \"*.example.com\"] (docs/vhosts.md)"),
    ),
    (
        "proxy_pass",
        Ok("`proxy` on a [[listener]]: proxy = [{ path = \"/api/\", upstream = \"app\" }], with an [[upstream]] named app (docs/reverse-proxy.md)"),
    ),
    (
        "location",
        Ok("[[listener.server.location]] with path = \"/prefix/\" (or \"= /x\", \"^~ /x\", \"~ regex\") inside a [[listener.server]] (docs/vhosts.md); `proxy` on a [[listener]] for proxied path prefixes (docs/reverse-proxy.md)"),
    ),
    (
        "proxy_connect_timeout",
        Ok("`upstream` tables' connect_timeout: [[upstream]] connect_timeout = \"5s\" (docs/reverse-proxy.md)"),
    ),
    (
        "proxy_read_timeout",
        Ok("`upstream` tables' read_timeout (docs/reverse-proxy.md)"),
    ),
    (
        "proxy_next_upstream",
        Err("a failed connect, or an idempotent request whose backend closed before answering, always goes to the next backend (docs/reverse-proxy.md)"),
    ),
    (
        "proxy_set_header",
        Err("Host is passed as the client sent it, and X-Forwarded-For/-Proto/-Host and Forwarded are always added (docs/reverse-proxy.md)"),
    ),
    (
        "least_conn",
        Ok("`upstream` tables' balance = \"least_conn\" (docs/reverse-proxy.md)"),
    ),
    (
        "index",
        Ok("`server` blocks: index = [\"index.html\"] in a [[listener.server]] or its locations (docs/vhosts.md); a listener's own `root` uses index.html"),
    ),
    (
        "gzip",
        Ok("`compression = {}` on a [[listener]] (gzip and Brotli, docs/compression.md)"),
    ),
    (
        "gzip_static",
        Ok("`compression.precompressed` (docs/compression.md)"),
    ),
    (
        "gzip_comp_level",
        Ok("`compression.gzip_level` (docs/compression.md)"),
    ),
    (
        "gzip_min_length",
        Ok("`compression.min_length` (docs/compression.md)"),
    ),
    (
        "listen",
        Ok("`bind` on a [[listener]]: bind = \"0.0.0.0:80\""),
    ),
    ("worker_processes", Ok("`workers` (a number or \"auto\")")),
    (
        "worker_connections",
        Ok("`max_connections` on a [[listener]] (per worker)"),
    ),
    ("worker_shutdown_timeout", Ok("`shutdown_timeout`")),
    ("keepalive_timeout", Ok("`idle_timeout` on a [[listener]]")),
    (
        "client_header_timeout",
        Ok("`header_timeout` on a [[listener]]"),
    ),
    (
        "client_body_timeout",
        Ok("`body_timeout` on a [[listener]]"),
    ),
    (
        "client_max_body_size",
        Ok("`max_body` on a [[listener]], in bytes"),
    ),
    (
        "limit_req_zone",
        Ok("`limit_req = { rate = \"10r/s\", entries = 65536 }` on a [[listener]]"),
    ),
    (
        "limit_conn",
        Ok("`max_connections_per_ip` on a [[listener]] (per worker)"),
    ),
    (
        "set_real_ip_from",
        Ok("`proxy_trusted`, with `proxy_protocol = true` (docs/proxy.md)"),
    ),
    ("pid", Ok("`pid_file`")),
    ("error_log", Ok("`file` and `level` in [log]")),
    ("access_log", Ok("`access_file` in [log]")),
    (
        "log_format",
        Ok("`access_log_format` on a [[listener]] (combined or json)"),
    ),
];

/// Why the last segment of `segs` is not a key.
fn explain(segs: &[Seg]) -> String {
    let Some((Seg::Key(key), place)) = segs.split_last() else {
        return "unknown key".into();
    };
    let Some(table) = Table::at(place) else {
        return "unknown key".into();
    };
    let key = key.as_str();
    // Written below a header, so TOML put it in that table.
    if let Some(outer) = table
        .outer()
        .into_iter()
        .find(|o| o.fields().contains(&key))
    {
        let (header, that) = table.header();
        let (what, mut fix) = outer.owner();
        if table == Table::Log {
            fix = "move it above [log] (top-level keys go before every table)";
        }
        return format!(
            "`{key}` is {what} but is written after {header}, so TOML reads it as part of \
             {that}: {fix}"
        );
    }
    if let Some((_, herd)) = NGINX.iter().find(|(n, _)| *n == key) {
        return match herd {
            Ok(eq) => format!("unknown key: `{key}` is nginx's; herd's equivalent is {eq}"),
            Err(why) => {
                format!("unknown key: `{key}` is nginx's and herd has no equivalent: {why}")
            }
        };
    }
    for (name, child) in table.children() {
        if child.fields().contains(&key) {
            return format!(
                "unknown key: `{key}` belongs in the `{name}` table: {name} = {{ {key} = ... }}"
            );
        }
    }
    match nearest(key, table.fields()) {
        Some(near) => format!("unknown key; did you mean `{near}`?"),
        None => "unknown key (docs/config.md lists the keys)".into(),
    }
}

/// The candidate closest to `key` by edit distance (a swap of two letters counts as one), if
/// it is close enough to be a typo.
fn nearest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = match key.chars().count() {
        0..=3 => 1,
        4..=6 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (strsim::osa_distance(key, c), *c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// The field names of a struct with `#[derive(Deserialize)]` (after renames), as serde passes
/// them to `deserialize_struct`.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that only records the field list it is asked for, then fails.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Seg {
        Seg::Key(k.into())
    }

    #[test]
    fn field_lists_come_from_the_derives() {
        let top = Table::Top.fields();
        assert!(
            top.contains(&"listener") && top.contains(&"workers"),
            "{top:?}"
        );
        assert!(
            !top.contains(&"listeners"),
            "the serde name, after the rename"
        );
        assert!(Table::Listener(0).fields().contains(&"proxy_timeout"));
        assert_eq!(Table::Cert(0, 0).fields(), ["cert", "key", "ocsp"]);
    }

    #[test]
    fn odd_paths_get_a_plain_message_and_never_panic() {
        assert_eq!(explain(&[]), "unknown key");
        assert_eq!(explain(&[key("listener"), Seg::Index(3)]), "unknown key");
        assert_eq!(
            explain(&[key("proxy_trusted"), key("x")]),
            "unknown key",
            "not a table of the schema"
        );
        assert_eq!(
            display(&[
                key("listener"),
                Seg::Index(2),
                key("tls"),
                key("certs"),
                Seg::Index(0)
            ]),
            "listener[2].tls.certs[0]"
        );
        assert!(error(&[]).is_none());
    }

    #[test]
    fn typos_are_matched_only_when_close() {
        let f = Table::Listener(0).fields();
        assert_eq!(nearest("rot", f), Some("root"));
        assert_eq!(nearest("max_bdoy", f), Some("max_body"));
        assert_eq!(nearest("idle_timeuot", f), Some("idle_timeout"));
        assert_eq!(nearest("colour", f), None);
        assert_eq!(nearest("x", f), None);
    }

    #[test]
    fn nginx_names_are_not_herd_keys_and_point_at_real_ones() {
        // (`keepalive_timeout` is also an [[upstream]] key, as in nginx's upstream block; the
        // hint is for the listener, where it is unknown.)
        let known: Vec<&str> = [Table::Top, Table::Log, Table::Listener(0)]
            .iter()
            .flat_map(|t| t.fields().iter().copied())
            .collect();
        for (nginx, herd) in NGINX {
            assert!(
                !known.contains(nginx),
                "{nginx} is a herd key: the hint never shows"
            );
            if let Ok(eq) = herd {
                // The first `...` names herd's key: its first word must be one.
                let first = eq.split('`').nth(1).unwrap();
                let word: String = first
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                assert!(known.contains(&word.as_str()), "{nginx}: {word} in {eq}");
            }
        }
    }
}
