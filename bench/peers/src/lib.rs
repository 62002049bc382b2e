//! Shared plumbing for the benchmark peers in `src/bin/`: command-line options.
//!
//! Every peer is started the same way by `bench/*.sh`: `PEER --port P --threads N`
//! (`--loops N` is accepted as a synonym, so a script can start herd and a peer with the same
//! words). Peers listen on 127.0.0.1 only. This crate holds no server logic: each binary is
//! the idiomatic server of its stack, written the way that stack's users would write it.

#![forbid(unsafe_code)]

use std::process::exit;

/// Options common to every peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerOpts {
    /// TCP port to listen on (on 127.0.0.1).
    pub port: u16,
    /// Worker threads or event loops.
    pub threads: usize,
}

/// Parses `--port P [--threads N | --loops N]` from `args` (without the program name).
///
/// ```
/// let o = herd_bench_peers::parse(["--port", "9000", "--loops", "2"].map(String::from)).unwrap();
/// assert_eq!((o.port, o.threads), (9000, 2));
/// ```
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<PeerOpts, String> {
    let mut port = None;
    let mut threads = 1usize;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => port = Some(value()?.parse().map_err(|e| format!("--port: {e}"))?),
            "--threads" | "--loops" => {
                threads = value()?.parse().map_err(|e| format!("{flag}: {e}"))?;
                if threads == 0 {
                    return Err(format!("{flag} must be at least 1"));
                }
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(PeerOpts {
        port: port.ok_or("--port is required")?,
        threads,
    })
}

/// [`parse`] of the process arguments; prints usage and exits with status 2 on an error.
pub fn from_env(name: &str) -> PeerOpts {
    parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("{name}: {e}\nusage: {name} --port P [--threads N]");
        exit(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<PeerOpts, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            p(&["--port", "1", "--threads", "3"]),
            Ok(PeerOpts {
                port: 1,
                threads: 3
            })
        );
        assert_eq!(p(&["--port", "7"]).unwrap().threads, 1);
        assert!(p(&[]).is_err());
        assert!(p(&["--port"]).is_err());
        assert!(p(&["--port", "70000"]).is_err());
        assert!(p(&["--port", "1", "--threads", "0"]).is_err());
        assert!(p(&["--port", "1", "--bogus"]).is_err());
    }
}
