//! mio-echo: a hand-written mio echo loop, the syscall floor herd's echo must match.
//!
//! Per thread: its own SO_REUSEPORT listener on 127.0.0.1 (so `--threads N` spreads
//! connections in the kernel), one edge-triggered mio `Poll`, a slab of connections and one
//! 64 KiB scratch read buffer. Per readable event it reads until `WouldBlock` or a short read
//! (a read that returned less than the buffer drained the socket, so another read would only
//! collect EAGAIN), writes each chunk straight back, keeps only the bytes the socket did not
//! take and registers WRITABLE only after such a partial write. A connection with more than
//! 1 MiB unwritten stops being read until it drains. No allocation per message, no epoll_ctl
//! per message. Started by `bench/echo.sh`; no extras beyond that, it is the baseline.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::thread;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Socket, Type};

const LISTENER: Token = Token(usize::MAX);
const SCRATCH: usize = 64 * 1024;
/// Unwritten bytes above which a connection is not read until it drains.
const MAX_PENDING: usize = 1 << 20;

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet accepted by the socket.
    pending: Vec<u8>,
    /// WRITABLE is registered (only while `pending` is not empty).
    want_write: bool,
}

fn main() {
    let opts = herd_bench_peers::from_env("mio-echo");
    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    let mut listeners = Vec::with_capacity(opts.threads);
    for _ in 0..opts.threads {
        listeners.push(reuseport_listener(addr).unwrap_or_else(|e| {
            eprintln!("mio-echo: listen on {addr}: {e}");
            std::process::exit(1)
        }));
    }
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|l| thread::spawn(move || run_loop(l)))
        .collect();
    for l in loops {
        if let Ok(Err(e)) = l.join() {
            eprintln!("mio-echo: {e}");
            std::process::exit(1);
        }
    }
}

fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(TcpListener::from_std(s.into()))
}

fn run_loop(mut listener: TcpListener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut scratch = vec![0u8; SCRATCH];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept_all(&poll, &mut listener, &mut conns);
                continue;
            }
            let key = ev.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let mut open = true;
            if ev.is_writable() && conn.want_write {
                open = flush(&poll, key, conn, &mut scratch);
            }
            if open && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                open = read_echo(&poll, key, conn, &mut scratch);
            }
            if !open {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

fn accept_all(poll: &Poll, listener: &mut TcpListener, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                let token = Token(entry.key());
                if poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE)
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        pending: Vec::new(),
                        want_write: false,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE, ENFILE, ...: leave the rest in the backlog for the next wake-up.
                eprintln!("mio-echo: accept: {e}");
                return;
            }
        }
    }
}

/// Reads and echoes until the socket is drained. Returns false when the connection is done.
fn read_echo(poll: &Poll, key: usize, conn: &mut Conn, scratch: &mut [u8]) -> bool {
    while conn.pending.len() < MAX_PENDING {
        let n = match conn.stream.read(scratch) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        if conn.pending.is_empty() {
            match conn.stream.write(&scratch[..n]) {
                Ok(w) if w == n => {}
                Ok(w) => conn.pending.extend_from_slice(&scratch[w..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.pending.extend_from_slice(&scratch[..n])
                }
                Err(_) => return false,
            }
            if !conn.pending.is_empty() && !want_writable(poll, key, conn, true) {
                return false;
            }
        } else {
            conn.pending.extend_from_slice(&scratch[..n]);
        }
        if n < scratch.len() {
            return true;
        }
    }
    true
}

/// Writes pending bytes after a writable event; once drained, goes back to READABLE only and
/// resumes reading if it had stopped. Returns false when the connection is done.
fn flush(poll: &Poll, key: usize, conn: &mut Conn, scratch: &mut [u8]) -> bool {
    let was_full = conn.pending.len() >= MAX_PENDING;
    while !conn.pending.is_empty() {
        match conn.stream.write(&conn.pending) {
            Ok(0) => return false,
            Ok(w) => {
                conn.pending.drain(..w);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    conn.pending = Vec::new();
    if !want_writable(poll, key, conn, false) {
        return false;
    }
    // Reading stopped at MAX_PENDING: the socket may hold data no new edge will announce.
    !was_full || read_echo(poll, key, conn, scratch)
}

fn want_writable(poll: &Poll, key: usize, conn: &mut Conn, on: bool) -> bool {
    if conn.want_write == on {
        return true;
    }
    conn.want_write = on;
    let interest = if on {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    poll.registry()
        .reregister(&mut conn.stream, Token(key), interest)
        .is_ok()
}
