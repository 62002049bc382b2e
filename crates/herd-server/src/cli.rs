//! The command line (clap derive): `-c FILE`, `-t`, `-s reload|reopen|quit|stop`, `-d`,
//! `--version`, and the hidden `--worker` used by the master to start workers.
//!
//! Parsing only; [`crate::run`] acts on it.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::signals::Signal;

/// herd: an nginx-style server for herd's HTTP, WebSocket, frame and echo services.
#[derive(Debug, Clone, Parser)]
#[command(name = "herd", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Without it the built-in configuration runs: the site on
    /// 127.0.0.1:8081 and the frame demo on 127.0.0.1:8082.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Test the configuration and exit (0: valid, 1: invalid, with the reason).
    #[arg(short = 't', long = "test")]
    pub test: bool,

    /// Send a signal to the running master (found through the configured pid file).
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    pub signal: Option<SignalCmd>,

    /// Run as a daemon (detach, write the pid file, log to the configured file).
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// Internal: run as a worker process (started by the master).
    #[arg(long = "worker", hide = true)]
    pub worker: bool,
}

/// What `-s` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignalCmd {
    /// Re-read the configuration (SIGHUP).
    Reload,
    /// Reopen log files (SIGUSR1).
    Reopen,
    /// Graceful stop (SIGQUIT).
    Quit,
    /// Fast stop (SIGTERM).
    Stop,
}

impl SignalCmd {
    /// The signal sent to the master.
    pub fn signal(self) -> Signal {
        match self {
            SignalCmd::Reload => Signal::Hup,
            SignalCmd::Reopen => Signal::Usr1,
            SignalCmd::Quit => Signal::Quit,
            SignalCmd::Stop => Signal::Term,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_nginx_style_flags() {
        let c = Cli::try_parse_from(["herd", "-c", "x.toml", "-s", "reload"]).unwrap();
        assert_eq!(c.config, Some(PathBuf::from("x.toml")));
        assert_eq!(c.signal.unwrap().signal(), Signal::Hup);
        let c = Cli::try_parse_from(["herd", "-t", "-d"]).unwrap();
        assert!(c.test && c.daemon && !c.worker);
        assert!(Cli::try_parse_from(["herd", "-s", "explode"]).is_err());
        assert_eq!(SignalCmd::Stop.signal(), Signal::Term);
        assert_eq!(SignalCmd::Reopen.signal(), Signal::Usr1);
        assert_eq!(SignalCmd::Quit.signal(), Signal::Quit);
    }
}
