//! systemd's readiness protocol (`sd_notify(3)`) without libsystemd: when systemd starts herd
//! with `Type=notify` it passes a datagram socket in `NOTIFY_SOCKET` (a path, or `@name` for
//! an abstract socket), and the master sends it newline-separated `KEY=value` states:
//! `READY=1` with `MAINPID=` once every worker of the first generation is ready, `RELOADING=1`
//! when a HUP is taken and `READY=1` again once the new generation is ready (or the reload
//! failed and the old one stays), `STOPPING=1` when a stop begins. A new master started by a
//! binary upgrade sends `READY=1` with its own `MAINPID=`, so systemd follows the upgrade (the
//! unit says `NotifyAccess=all`); the old master then stops without `STOPPING=1`.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op. A failed send is logged once and ignored:
//! systemd's view must never stop the server.

use std::io;
use std::os::unix::net::UnixDatagram;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub struct SdNotify {
    sock: UnixDatagram,
    warned: bool,
}

impl SdNotify {
    /// The socket named by `NOTIFY_SOCKET`, if set and usable (a warning says why not).
    pub fn from_env() -> Option<SdNotify> {
        let target = std::env::var_os(NOTIFY_SOCKET_ENV)?;
        let target = target.to_string_lossy().into_owned();
        match SdNotify::connect(&target) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("{NOTIFY_SOCKET_ENV}={target}: {e}; not notifying systemd");
                None
            }
        }
    }

    /// A connection to `target`: a filesystem path, or `@name` for an abstract socket.
    pub fn connect(target: &str) -> io::Result<SdNotify> {
        let sock = UnixDatagram::unbound()?;
        if let Some(name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.connect_addr(&addr)?;
        } else {
            sock.connect(target)?;
        }
        Ok(SdNotify {
            sock,
            warned: false,
        })
    }

    /// Send one notification (`KEY=value` lines).
    pub fn send(&mut self, state: &str) {
        if let Err(e) = self.sock.send(state.as_bytes()) {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!("cannot notify systemd ({state:?}): {e}");
            }
        }
    }
}

/// `READY=1` for the running master, with its pid and a status line.
pub fn ready_message(pid: u32, generation: u64, workers: usize) -> String {
    format!("READY=1\nMAINPID={pid}\nSTATUS=generation {generation}, {workers} workers\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("herd-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut n = SdNotify::connect(path.to_str().unwrap()).unwrap();
        n.send(&ready_message(42, 3, 2));
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..len]).unwrap(),
            "READY=1\nMAINPID=42\nSTATUS=generation 3, 2 workers\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("herd-sd-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let mut n = SdNotify::connect(&format!("@{name}")).unwrap();
        n.send("STOPPING=1\n");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\n");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        assert!(SdNotify::connect("/nonexistent/herd/notify").is_err());
    }
}
