//! Unix implementation of [`crate::sys`]: sockets through socket2, limits through libc.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// A bound, listening, non-blocking listener (`SO_REUSEADDR`, and `SO_REUSEPORT` if asked).
pub fn listen(
    addr: SocketAddr,
    reuse_port: bool,
    backlog: i32,
) -> io::Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    Ok(sock.into())
}

/// Set, once on a listener, the TCP options every socket it accepts inherits: `TCP_NODELAY`
/// when `nodelay`, and `TCP_NOTSENT_LOWAT` when `notsent_lowat` is given. Linux copies a
/// listener's TCP options into each accepted socket, so this costs nothing per connection; on
/// other systems `nodelay` is still set per accepted socket (see [`ACCEPT_INHERITS_OPTIONS`])
/// and the low-water mark is not available.
pub fn set_inherited_options(
    listener: &std::net::TcpListener,
    nodelay: bool,
    notsent_lowat: Option<u32>,
) -> io::Result<()> {
    let sock = socket2::SockRef::from(listener);
    if nodelay {
        sock.set_tcp_nodelay(true)?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(bytes) = notsent_lowat {
        sock.set_tcp_notsent_lowat(bytes)?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = notsent_lowat;
    Ok(())
}

/// Whether accepted sockets inherit the options [`set_inherited_options`] put on their
/// listener (so the accept path need not set them again).
pub const ACCEPT_INHERITS_OPTIONS: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// True for EMFILE / ENFILE (out of file descriptors).
pub fn is_fd_exhausted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// True for accept errors that concern one connection only (it went away before accept).
pub fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO) | Some(libc::EPERM)
    )
}

/// The soft and hard limits on open file descriptors.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the valid, exclusively borrowed struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Set the soft limit on open file descriptors (the hard limit is kept).
pub fn set_nofile_limit(soft: u64) -> io::Result<()> {
    let (_, hard) = nofile_limit()?;
    let lim = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct we pass by reference.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Send up to `count` bytes of `file` from `*offset` to the socket with `sendfile(2)`,
/// advancing `*offset` by what was sent. Returns the number of bytes sent (0 at end of file).
pub fn sendfile(
    sock: &impl std::os::fd::AsRawFd,
    file: &std::fs::File,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut off = i64::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    // SAFETY: both descriptors are open for the duration of the call (borrowed), and `off`
    // is a valid, exclusively borrowed off_t that the kernel updates.
    let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = off as u64;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The accept path relies on accepted sockets inheriting the listener's TCP options; check
    /// that this kernel does so, for both options, and that data still flows.
    #[test]
    fn accepted_sockets_inherit_listener_options() {
        let l = listen("127.0.0.1:0".parse().unwrap(), false, 16).unwrap();
        set_inherited_options(&l, true, Some(32 * 1024)).unwrap();
        l.set_nonblocking(false).unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut a, _) = l.accept().unwrap();
        let sock = socket2::SockRef::from(&a);
        if ACCEPT_INHERITS_OPTIONS {
            assert!(sock.tcp_nodelay().unwrap());
            #[cfg(any(target_os = "linux", target_os = "android"))]
            assert_eq!(sock.tcp_notsent_lowat().unwrap(), 32 * 1024);
        }
        a.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[test]
    fn no_low_water_mark_leaves_the_default() {
        let l = listen("127.0.0.1:0".parse().unwrap(), false, 16).unwrap();
        set_inherited_options(&l, false, None).unwrap();
        let sock = socket2::SockRef::from(&l);
        assert!(!sock.tcp_nodelay().unwrap());
    }
}
