//! The `herd` server: an nginx-style master/worker server for herd's protocols, driven by a
//! TOML configuration file and signals.
//!
//! Top to bottom:
//! - [`cli`]: the command line; [`run`] dispatches: `-s` ([`send_signal`]), `-t`, a worker
//!   (`--worker`, see [`worker`]), or a master (optionally detached first, see [`daemon`]).
//! - [`config`]: the schema, defaults, strict key checking (unknown keys are errors) and
//!   validation.
//! - [`master`]: the single-threaded supervisor: it binds every socket ([`listeners`]), writes
//!   the [`pidfile`], starts one worker process per slot and acts on signals (reload, reopen,
//!   graceful and fast stop, binary upgrade), respawning workers that die.
//! - [`worker`]: a worker process: inherited sockets, one herd-core server per listener
//!   ([`protocols`]), signals, the [`status`] snapshot served by the bundled [`site`].
//! - [`logging`] (pid- and role-tagged lines, reopen on USR1) and [`signals`] (waiting for
//!   signals and worker messages without threads).
//!
//! Every system call this crate needs beyond std (fork, sessions, signals, waiting, spawning
//! with inherited descriptors, user look-ups) is wrapped in its private `sys` module, each
//! `unsafe` block with a `// SAFETY:` line. The crate is `#![deny(unsafe_code)]` with the lint
//! allowed on `sys` alone, so the compiler rejects `unsafe` anywhere else. The root package's
//! `herd` binary is `fn main() { herd_server::main() }`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod echo;
pub mod listeners;
pub mod logging;
pub mod master;
pub mod metrics;
pub mod pidfile;
pub mod probe;
pub mod protocols;
pub mod reverse_proxy;
pub mod sd_notify;
pub mod signals;
pub mod site;
pub mod status;
#[allow(unsafe_code)]
mod sys;
pub mod tls;
pub mod vhost;
pub mod worker;

/// A process id, as the pid-file functions ([`pidfile`]) and signals take it.
pub use sys::Pid;
// Public for the process tests at the repository root, which check whether they run as root
// and can drop privileges to `nobody` before trying the `user = ...` setting.
pub use sys::{geteuid, lookup_user};

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::cli::{Cli, SignalCmd};
use crate::config::{Config, ConfigError, Loaded};
use crate::listeners::{ListenerSet, INHERIT_ENV};
use crate::logging::Logs;
use crate::master::{Master, Startup};
use crate::pidfile::PidFile;
use crate::signals::Waiter;

/// Parse the command line, run, and exit with the resulting code.
pub fn main() -> ! {
    std::process::exit(run(Cli::parse()))
}

/// Run what the command line asks for; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    if cli.worker {
        return worker::run();
    }
    // Resolve the executable now: a daemon changes directory, and the file may be replaced
    // before a binary upgrade runs it.
    let exe = resolve_exe();
    let loaded = load(&cli);
    if let Some(cmd) = cli.signal {
        return send_signal(cmd, &loaded);
    }
    let what = cli
        .config
        .as_ref()
        .map_or("the built-in configuration".to_string(), |p| {
            format!("configuration file {}", p.display())
        });
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            // One line per error (several unknown keys are reported together).
            for line in e.lines() {
                if cli.test {
                    eprintln!("herd: {what} is invalid: {line}");
                } else {
                    eprintln!("herd: {line}");
                }
            }
            return 1;
        }
    };
    if cli.test {
        eprintln!("herd: {what} is valid");
        return 0;
    }
    let config = loaded.config;
    // Absolute, now (before a daemon changes to `/`), so a reload and the new binary of an
    // upgrade find the file.
    let config_path = cli
        .config
        .as_deref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let mut args: Vec<OsString> = Vec::new();
    if let Some(p) = &config_path {
        args.extend([OsString::from("-c"), p.clone().into_os_string()]);
    }
    let inherited = std::env::var(INHERIT_ENV).ok();
    let detached = if cli.daemon && inherited.is_none() {
        let Some(pid_path) = &config.pid_file else {
            eprintln!("herd: daemon mode needs `pid_file` in the configuration");
            return 1;
        };
        if config.log.file.is_none() {
            eprintln!("herd: warning: no `[log] file`: the daemon's log goes to /dev/null");
        }
        if let Some(pid) = pidfile::live_holder(pid_path) {
            eprintln!(
                "herd: {} names running process {pid}; is herd already running?",
                pid_path.display()
            );
            return 1;
        }
        match daemon::daemonize() {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("herd: cannot become a daemon: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    let startup = Startup {
        config_path,
        exe,
        args,
    };
    let started = start_master(startup, config, inherited.as_deref());
    match (started, detached) {
        (Ok(m), Some(d)) => {
            if let Err(e) = d.report(Ok(())) {
                tracing::warn!("cannot report start-up to the terminal: {e}");
            }
            m.run()
        }
        (Ok(m), None) => m.run(),
        (Err(e), Some(d)) => {
            tracing::error!("{e}");
            let _ = d.report(Err(e));
            1
        }
        (Err(e), None) => {
            tracing::error!("{e}");
            eprintln!("herd: {e}");
            1
        }
    }
}

fn load(cli: &Cli) -> Result<Loaded, ConfigError> {
    match &cli.config {
        Some(p) => config::load(p),
        None => {
            let c = Config::builtin();
            c.validate().map(|()| Loaded { config: c })
        }
    }
}

/// Logs, pid file, sockets and signal handlers, in that order; then the supervisor.
fn start_master(
    startup: Startup,
    config: Config,
    inherited: Option<&str>,
) -> Result<Master, String> {
    let logs = Logs::init("master", &config.log).map_err(|e| format!("log file: {e}"))?;
    let pid_file = config
        .pid_file
        .as_deref()
        .map(PidFile::create)
        .transpose()
        .map_err(|e| format!("pid file: {e}"))?;
    let mut listeners = match inherited {
        Some(spec) => {
            let set = ListenerSet::inherit(spec);
            tracing::info!("binary upgrade: inherited {} listening sockets", set.len());
            set
        }
        None => match ListenerSet::from_systemd(&config) {
            Some(set) => {
                tracing::info!("socket activation: {} listening sockets", set.len());
                set
            }
            None => ListenerSet::new(),
        },
    };
    let result = listeners
        .prepare(&config)
        .and_then(|()| Waiter::new(&signals::CONTROL_SIGNALS).map_err(|e| format!("signals: {e}")))
        .and_then(|waiter| {
            listeners.retain(&[&config]);
            Master::new(startup, config, listeners, waiter, logs, None)
                .map_err(|e| format!("start: {e}"))
        });
    match result {
        Ok(mut m) => {
            m.set_pid_file(pid_file);
            Ok(m)
        }
        Err(e) => {
            if let Some(p) = pid_file {
                p.remove();
            }
            Err(e)
        }
    }
}

/// `herd -s CMD`: signal the master named in the configured pid file.
pub fn send_signal(cmd: SignalCmd, loaded: &Result<Loaded, ConfigError>) -> i32 {
    let cfg = match loaded {
        Ok(l) => &l.config,
        Err(e) => {
            eprintln!("herd: cannot read the configuration to find the pid file: {e}");
            return 1;
        }
    };
    let Some(path) = &cfg.pid_file else {
        eprintln!("herd: no `pid_file` in the configuration; cannot find the master");
        return 1;
    };
    let pid = match pidfile::read(path) {
        Ok(Some(pid)) => pid,
        Ok(None) => {
            eprintln!("herd: {} does not exist; is herd running?", path.display());
            return 1;
        }
        Err(e) => {
            eprintln!("herd: {e}");
            return 1;
        }
    };
    match crate::sys::kill(pid, cmd.signal()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("herd: cannot send {} to {pid}: {e}", cmd.signal());
            1
        }
    }
}

/// The path of the running executable as the user named it (argv\[0\], made absolute or found
/// on `PATH`), falling back to `/proc/self/exe`'s target.
fn resolve_exe() -> PathBuf {
    if let Some(arg0) = std::env::args_os().next().map(PathBuf::from) {
        if arg0.components().count() > 1 {
            if let Ok(abs) = std::path::absolute(&arg0) {
                if abs.is_file() {
                    return abs;
                }
            }
        } else if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let c = dir.join(&arg0);
                if c.is_file() {
                    return c;
                }
            }
        }
    }
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("herd"))
}
