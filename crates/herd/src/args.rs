//! A tiny command-line parser shared by the examples: `--port P --loops N [--host H]`.
//!
//! Examples take the same flags so external benchmarks can drive any of them
//! (`cargo run --release --example echo -- --port 9000 --loops 1`). Real servers use the
//! `herd` binary's clap-based CLI instead.

use std::net::SocketAddr;

/// Parsed example flags.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    /// `--host` (default 127.0.0.1).
    pub host: String,
    /// `--port` (default given by the example).
    pub port: u16,
    /// `--loops` (default: available cores).
    pub loops: usize,
    /// Any other `--key value` pairs, for example-specific options.
    pub extra: Vec<(String, String)>,
}

impl ServeArgs {
    /// Parse `std::env::args()`; exits with a usage line on a malformed flag.
    pub fn from_env(default_port: u16) -> ServeArgs {
        match Self::parse(std::env::args().skip(1), default_port) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}\nusage: [--host H] [--port P] [--loops N] [--<option> V ...]");
                std::process::exit(2);
            }
        }
    }

    /// Parse an argument list (without the program name).
    ///
    /// ```
    /// let a = herd::args::ServeArgs::parse(["--port", "9000", "--loops", "1"].map(String::from), 1).unwrap();
    /// assert_eq!((a.port, a.loops), (9000, 1));
    /// ```
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        default_port: u16,
    ) -> Result<ServeArgs, String> {
        let mut a = ServeArgs {
            host: "127.0.0.1".into(),
            port: default_port,
            loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            extra: Vec::new(),
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let Some(key) = flag.strip_prefix("--") else {
                return Err(format!("unexpected argument {flag:?}"));
            };
            let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |_| format!("bad value for {flag}: {val:?}");
            match key {
                "host" => a.host = val.clone(),
                "port" => a.port = val.parse().map_err(bad)?,
                "loops" => a.loops = val.parse::<usize>().map_err(bad)?.max(1),
                _ => a.extra.push((key.to_string(), val.clone())),
            }
        }
        Ok(a)
    }

    /// `host:port` as a socket address.
    pub fn addr(&self) -> SocketAddr {
        format!("{}:{}", self.host, self.port)
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], self.port)))
    }

    /// An extra `--key value`, parsed.
    pub fn get<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.extra
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
    }
}
