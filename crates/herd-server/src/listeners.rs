//! The master's listening sockets: bound once, kept open for the master's whole life, handed to
//! workers by descriptor number, and to a new binary (upgrade) through `HERD_INHERIT_FDS`.
//!
//! A listener with `reuseport = true` gets one `SO_REUSEPORT` socket per worker slot (the
//! kernel spreads connections over slots; a respawned or reloaded worker takes over its slot's
//! socket and its queued connections); with `reuseport = false` all workers share one socket.
//! Because the master never closes a socket that the configuration still uses, neither a
//! crashed worker nor a reload closes a kernel accept queue. Before the first socket of a new
//! address is bound with `SO_REUSEPORT`, a plain bind probes the address, so a second server
//! on the same port is an error instead of silently sharing the port.
//!
//! Called by the master only. Workers take their descriptors over with the crate's
//! `sys::take_inherited_fd` (see [`crate::worker`]).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};

use crate::config::Config;

/// The environment variable that passes listening sockets to a new binary.
pub const INHERIT_ENV: &str = "HERD_INHERIT_FDS";

/// Which socket of a listener: per slot, or the shared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// The configured address.
    pub addr: SocketAddr,
    /// The worker slot (`None`: one socket shared by every worker).
    pub slot: Option<usize>,
}

impl Key {
    fn encode(&self) -> String {
        match self.slot {
            Some(s) => format!("{}#{s}", self.addr),
            None => format!("{}#*", self.addr),
        }
    }

    fn decode(s: &str) -> Option<Key> {
        let (addr, slot) = s.rsplit_once('#')?;
        let slot = match slot {
            "*" => None,
            n => Some(n.parse().ok()?),
        };
        Some(Key {
            addr: addr.parse().ok()?,
            slot,
        })
    }
}

struct Entry {
    key: Key,
    sock: TcpListener,
}

/// Every listening socket the master holds.
#[derive(Default)]
pub struct ListenerSet {
    entries: Vec<Entry>,
}

impl ListenerSet {
    /// An empty set.
    pub fn new() -> ListenerSet {
        ListenerSet::default()
    }

    /// Adopt sockets passed by an old master (`HERD_INHERIT_FDS`). Entries that cannot be taken
    /// are skipped with a warning; they will be bound afresh if the configuration needs them.
    pub fn inherit(spec: &str) -> ListenerSet {
        let mut set = ListenerSet::new();
        for item in spec.split(';').filter(|s| !s.is_empty()) {
            let parsed = item
                .rsplit_once('=')
                .and_then(|(k, fd)| Some((Key::decode(k)?, fd.parse::<RawFd>().ok()?)));
            let Some((key, fd)) = parsed else {
                tracing::warn!("{INHERIT_ENV}: cannot parse {item:?}");
                continue;
            };
            if !crate::sys::is_listening_socket(fd) {
                tracing::warn!("{INHERIT_ENV}: descriptor {fd} is not a listening socket");
                continue;
            }
            match crate::sys::take_inherited_fd(fd) {
                Ok(owned) => set.entries.push(Entry {
                    key,
                    sock: TcpListener::from(owned),
                }),
                Err(e) => tracing::warn!("{INHERIT_ENV}: descriptor {fd}: {e}"),
            }
        }
        set
    }

    /// Adopt the sockets systemd passed by socket activation (`LISTEN_PID` is this process,
    /// `LISTEN_FDS` descriptors from 3), each as the socket of the configured listener bound
    /// to the same address: slot 0 of a `reuseport` listener (the other slots bind beside it,
    /// which needs `ReusePort=yes` in the `.socket` unit) or the shared socket of one with
    /// `reuseport = false`. A socket no listener is configured for is closed with a warning.
    /// `None` when herd was not socket-activated. The `LISTEN_*` variables are removed, so
    /// neither workers nor a new binary take them again.
    pub fn from_systemd(cfg: &Config) -> Option<ListenerSet> {
        let pid = std::env::var("LISTEN_PID").ok()?;
        let fds = std::env::var("LISTEN_FDS").ok();
        for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(v);
        }
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
        let n: RawFd = fds.and_then(|f| f.parse().ok()).unwrap_or(0);
        let mut set = ListenerSet::new();
        for fd in 3..3 + n {
            if !crate::sys::is_listening_socket(fd) {
                tracing::warn!("LISTEN_FDS: descriptor {fd} is not a listening TCP socket");
                continue;
            }
            let sock = match crate::sys::take_inherited_fd(fd) {
                Ok(owned) => TcpListener::from(owned),
                Err(e) => {
                    tracing::warn!("LISTEN_FDS: descriptor {fd}: {e}");
                    continue;
                }
            };
            let Ok(local) = sock.local_addr() else {
                continue;
            };
            let listener = cfg
                .listeners
                .iter()
                .find(|l| l.addr().is_ok_and(|a| a == local));
            match listener {
                Some(l) => {
                    tracing::info!("socket activation: {local} for listener {}", l.name);
                    set.entries.push(Entry {
                        key: Key {
                            addr: local,
                            slot: l.reuseport.then_some(0),
                        },
                        sock,
                    });
                }
                None => tracing::warn!(
                    "socket activation: no listener is configured for {local}; closing it"
                ),
            }
        }
        Some(set)
    }

    /// The keys `cfg` needs.
    fn wanted(cfg: &Config) -> Vec<(Key, i32)> {
        let n = cfg.worker_count();
        let mut out = Vec::new();
        for l in &cfg.listeners {
            let Ok(addr) = l.addr() else { continue };
            if l.reuseport {
                out.extend((0..n).map(|s| {
                    (
                        Key {
                            addr,
                            slot: Some(s),
                        },
                        l.backlog,
                    )
                }));
            } else {
                out.push((Key { addr, slot: None }, l.backlog));
            }
        }
        out
    }

    fn find(&self, key: Key) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Make sure every socket `cfg` needs exists, binding the missing ones. On error nothing
    /// new is kept and the message says which address failed.
    pub fn prepare(&mut self, cfg: &Config) -> Result<(), String> {
        let before = self.entries.len();
        let result = self.bind_missing(cfg);
        if result.is_err() {
            self.entries.truncate(before);
        }
        result
    }

    fn bind_missing(&mut self, cfg: &Config) -> Result<(), String> {
        for (key, backlog) in Self::wanted(cfg) {
            if self.find(key).is_some() {
                continue;
            }
            let reuse = key.slot.is_some();
            let known_addr = self.entries.iter().any(|e| e.key.addr == key.addr);
            if known_addr
                && self
                    .entries
                    .iter()
                    .any(|e| e.key.addr == key.addr && (e.key.slot.is_some() != reuse))
            {
                return Err(format!(
                    "{}: switching reuseport on a bound address needs a restart",
                    key.addr
                ));
            }
            // Port 0: later slots must share the first slot's actual port.
            let mut addr = key.addr;
            if addr.port() == 0 {
                if let Some(e) = self.entries.iter().find(|e| e.key.addr == key.addr) {
                    addr = e.sock.local_addr().map_err(|e| e.to_string())?;
                }
            }
            if reuse && !known_addr {
                // A plain bind fails if anyone listens there already (SO_REUSEPORT would not).
                let probe = herd_core::os::listen(addr, false, 1)
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                if addr.port() == 0 {
                    addr = probe.local_addr().map_err(|e| e.to_string())?;
                }
                drop(probe);
            }
            let sock = herd_core::os::listen(addr, reuse, backlog).map_err(|e| {
                let hint = if known_addr && reuse {
                    " (a socket-activated reuseport listener needs ReusePort=yes in the \
                     .socket unit, or reuseport = false)"
                } else {
                    ""
                };
                format!("cannot listen on {addr}: {e}{hint}")
            })?;
            tracing::debug!("bound {} (slot {:?})", addr, key.slot);
            self.entries.push(Entry { key, sock });
        }
        Ok(())
    }

    /// Close every socket that none of `cfgs` needs.
    ///
    /// A per-slot socket of a `reuseport` listener that is still configured stays open even
    /// when the worker count dropped below its slot: closing a listening socket resets the
    /// connections waiting in its accept queue, and the kernel keeps routing new ones to it
    /// until the moment it closes. [`fds_for`](Self::fds_for) hands such a socket to a
    /// remaining worker instead, so a reload to fewer workers loses nothing. (Its share of new
    /// connections then goes to that worker: with 3 slots on 2 workers, worker 0 takes two
    /// thirds until the count grows back or the listener is removed.)
    pub fn retain(&mut self, cfgs: &[&Config]) {
        let keep: Vec<Key> = cfgs
            .iter()
            .flat_map(|c| Self::wanted(c))
            .map(|(k, _)| k)
            .collect();
        let per_slot: Vec<SocketAddr> = keep
            .iter()
            .filter(|k| k.slot.is_some())
            .map(|k| k.addr)
            .collect();
        self.entries.retain(|e| {
            if keep.contains(&e.key) {
                return true;
            }
            if e.key.slot.is_some() && per_slot.contains(&e.key.addr) {
                tracing::info!(
                    "keeping listener {} slot {:?} for the remaining workers (its queue stays)",
                    e.key.addr,
                    e.key.slot
                );
                return true;
            }
            tracing::info!("closing listener {} (slot {:?})", e.key.addr, e.key.slot);
            false
        });
    }

    /// `(listener name, descriptor)` for each listener of `cfg` as worker `slot` sees them:
    /// for a `reuseport` listener the slot's own socket, then any socket of a slot beyond the
    /// worker count that falls to this worker (slot `j` goes to worker `j % workers`; see
    /// [`retain`](Self::retain)).
    pub fn fds_for(&self, cfg: &Config, slot: usize) -> Vec<(String, RawFd)> {
        let workers = cfg.worker_count().max(1);
        let mut out = Vec::new();
        for l in &cfg.listeners {
            let Ok(addr) = l.addr() else { continue };
            let key = Key {
                addr,
                slot: l.reuseport.then_some(slot),
            };
            if let Some(e) = self.find(key) {
                out.push((l.name.clone(), e.sock.as_raw_fd()));
            }
            if l.reuseport {
                for e in &self.entries {
                    let inherited = e.key.addr == addr
                        && e.key
                            .slot
                            .is_some_and(|j| j >= workers && j % workers == slot);
                    if inherited {
                        out.push((l.name.clone(), e.sock.as_raw_fd()));
                    }
                }
            }
        }
        out
    }

    /// Every descriptor (to pass to a new binary).
    pub fn all_fds(&self) -> Vec<RawFd> {
        self.entries.iter().map(|e| e.sock.as_raw_fd()).collect()
    }

    /// The value of [`INHERIT_ENV`] describing every socket.
    pub fn export(&self) -> String {
        self.entries
            .iter()
            .map(|e| format!("{}={}", e.key.encode(), e.sock.as_raw_fd()))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The actual local address of each listener of `cfg` (first slot's socket).
    pub fn local_addrs(&self, cfg: &Config) -> Vec<(String, SocketAddr)> {
        self.fds_for(cfg, 0)
            .into_iter()
            .filter_map(|(name, fd)| {
                let e = self.entries.iter().find(|e| e.sock.as_raw_fd() == fd)?;
                Some((name, e.sock.local_addr().ok()?))
            })
            .collect()
    }

    /// Number of sockets held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no socket is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Count, ListenerConfig, Protocol};

    fn cfg(workers: usize, listeners: &[(&str, bool)]) -> Config {
        Config {
            workers: Count::N(workers),
            listeners: listeners
                .iter()
                .map(|(bind, reuseport)| ListenerConfig {
                    name: bind.to_string(),
                    bind: bind.to_string(),
                    protocol: Protocol::Echo,
                    reuseport: *reuseport,
                    ..ListenerConfig::default()
                })
                .collect(),
            ..Config::default()
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn keys_round_trip() {
        for s in ["127.0.0.1:80#0", "[::1]:8080#*", "10.0.0.1:1#17"] {
            assert_eq!(Key::decode(s).unwrap().encode(), s);
        }
        assert!(Key::decode("nonsense").is_none());
        assert!(Key::decode("127.0.0.1:80#x").is_none());
    }

    #[test]
    fn one_socket_per_slot_or_shared_and_kept_across_prepare() {
        let a = format!("127.0.0.1:{}", free_port());
        let b = format!("127.0.0.1:{}", free_port());
        let c = cfg(3, &[(&a, true), (&b, false)]);
        let mut set = ListenerSet::new();
        set.prepare(&c).unwrap();
        assert_eq!(set.len(), 4);
        let fds0 = set.fds_for(&c, 0);
        let fds1 = set.fds_for(&c, 1);
        assert_eq!(fds0.len(), 2);
        assert_ne!(fds0[0].1, fds1[0].1, "per-slot sockets differ");
        assert_eq!(fds0[1].1, fds1[1].1, "the shared socket is shared");
        // Preparing again keeps the same sockets.
        let before = set.all_fds();
        set.prepare(&c).unwrap();
        assert_eq!(set.all_fds(), before);
        // Fewer workers, one listener gone: the gone listener's socket closes; the slots past
        // the worker count stay open (their queues hold accepted-by-the-kernel connections)
        // and go to the remaining workers, own slot first.
        let two = cfg(2, &[(&a, true)]);
        set.prepare(&two).unwrap();
        set.retain(&[&two]);
        assert_eq!(set.len(), 3);
        let slot2 = set.fds_for(&c, 2)[0].1;
        let w0: Vec<RawFd> = set.fds_for(&two, 0).iter().map(|f| f.1).collect();
        let w1: Vec<RawFd> = set.fds_for(&two, 1).iter().map(|f| f.1).collect();
        assert_eq!(w0, vec![fds0[0].1, slot2]);
        assert_eq!(w1, vec![fds1[0].1]);
        let one = cfg(1, &[(&a, true)]);
        set.retain(&[&one]);
        let all: Vec<RawFd> = set.fds_for(&one, 0).iter().map(|f| f.1).collect();
        assert_eq!(all, vec![fds0[0].1, fds1[0].1, slot2]);
        assert!(set.fds_for(&one, 0).iter().all(|(name, _)| *name == a));
        // Growing back uses the same sockets again, each for its own slot.
        set.prepare(&c).unwrap();
        assert_eq!(set.all_fds()[..3], before[..3]);
        assert_eq!(set.fds_for(&c, 2)[0], (a.clone(), slot2));
        // A listener that is gone closes every one of its sockets.
        let d = format!("127.0.0.1:{}", free_port());
        let other = cfg(2, &[(&d, true)]);
        set.prepare(&other).unwrap();
        set.retain(&[&other]);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn a_port_in_use_is_an_error_and_rolls_back() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap().to_string();
        let ok = format!("127.0.0.1:{}", free_port());
        let c = cfg(2, &[(&ok, true), (&busy, true)]);
        let mut set = ListenerSet::new();
        let e = set.prepare(&c).unwrap_err();
        assert!(e.contains(&busy), "{e}");
        assert!(set.is_empty());
    }

    #[test]
    fn port_zero_slots_share_the_port() {
        let c = cfg(2, &[("127.0.0.1:0", true)]);
        let mut set = ListenerSet::new();
        set.prepare(&c).unwrap();
        let addrs: Vec<_> = set
            .entries
            .iter()
            .map(|e| e.sock.local_addr().unwrap())
            .collect();
        assert_eq!(addrs[0], addrs[1]);
        assert_ne!(addrs[0].port(), 0);
        assert_eq!(set.local_addrs(&c)[0].1, addrs[0]);
    }

    #[test]
    fn export_lists_every_socket() {
        let a = format!("127.0.0.1:{}", free_port());
        let c = cfg(2, &[(&a, true)]);
        let mut set = ListenerSet::new();
        set.prepare(&c).unwrap();
        let env = set.export();
        assert_eq!(env.split(';').count(), 2);
        assert!(env.starts_with(&format!("{a}#0=")), "{env}");
    }
}
