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

/// Make the coming close of `sock` abortive (`SO_LINGER` on with a zero time): the kernel
/// drops what is still unsent and answers with a reset instead of trying to deliver it to a
/// peer that does not read (an orphaned socket would otherwise hold its buffer, and look
/// open to the peer, for minutes).
pub fn abort_on_close(sock: &impl std::os::fd::AsFd) -> io::Result<()> {
    socket2::SockRef::from(sock).set_linger(Some(std::time::Duration::ZERO))
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

/// Open `rel` (a relative path) for reading below the directory `dir`, non-blocking, with the
/// kernel refusing any resolution that leaves `dir` (`..` past it, absolute symlinks, symlinks
/// leading outside, `/proc` magic links): `openat2(2)` with `RESOLVE_BENEATH |
/// RESOLVE_NO_MAGICLINKS`. Such an escape fails with `EXDEV` (or `ELOOP` for a magic link).
/// Returns `Ok(None)` where `openat2` is unavailable (Linux before 5.6, a seccomp filter, other
/// systems), so the caller can fall back to opening by path and checking where it led; after
/// the first such answer the system call is not tried again.
pub fn open_beneath(
    dir: &std::fs::File,
    rel: &std::path::Path,
) -> io::Result<Option<std::fs::File>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::{AsRawFd, FromRawFd};
        use std::os::unix::ffi::OsStrExt;
        use std::sync::atomic::{AtomicBool, Ordering};

        static UNAVAILABLE: AtomicBool = AtomicBool::new(false);
        if UNAVAILABLE.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let path = std::ffi::CString::new(rel.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        /// `struct open_how` of linux/openat2.h (libc's is `non_exhaustive`, so not
        /// constructible here); the kernel takes its size as the version.
        #[repr(C)]
        struct OpenHow {
            flags: u64,
            mode: u64,
            resolve: u64,
        }
        let how = OpenHow {
            flags: (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        };
        // EAGAIN is a rename or mount racing the lookup: retry a few times, then report it.
        let mut attempts = 0;
        loop {
            attempts += 1;
            // SAFETY: `path` is a NUL-terminated string and `how` a fully initialised open_how,
            // both alive for the call; the kernel only reads them (the size passed is the
            // struct's own). `dir` is an open descriptor borrowed for the call.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    dir.as_raw_fd(),
                    path.as_ptr(),
                    &how as *const OpenHow,
                    std::mem::size_of::<OpenHow>(),
                )
            };
            if fd >= 0 {
                // SAFETY: openat2 returned a new descriptor that nothing else owns.
                return Ok(Some(unsafe { std::fs::File::from_raw_fd(fd as i32) }));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) if attempts < 8 => continue,
                Some(libc::ENOSYS) | Some(libc::EPERM) if !UNAVAILABLE.load(Ordering::Relaxed) => {
                    // EPERM here is a seccomp filter, not a file permission (that is EACCES).
                    UNAVAILABLE.store(true, Ordering::Relaxed);
                    return Ok(None);
                }
                _ => return Err(err),
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (dir, rel);
        Ok(None)
    }
}

/// True for the errors [`open_beneath`] reports when a path would leave its directory.
pub fn is_escape_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EXDEV))
}

/// Read from a connected socket: `recvfrom(fd, buf, len, 0, NULL, NULL)`, issued with
/// `syscall(2)`.
///
/// This is the system call std's `TcpStream::read` makes (through libc's `recv`), minus libc's
/// cancellation-point wrapper around it: two atomic read-modify-writes on the thread's cancel
/// state and four function calls per read, which herd's loop threads, never cancelled with
/// `pthread_cancel`, do not need. The loop reads once per message, so this is on the hottest
/// path there is.
#[inline]
pub fn recv(sock: &impl std::os::fd::AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    recv_flags(sock, buf, 0)
}

/// `recv` with `MSG_PEEK`: copies what waits in the socket without consuming it (the PROXY
/// header stage looks at a connection's first bytes this way, once per connection).
pub fn peek(sock: &impl std::os::fd::AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    recv_flags(sock, buf, libc::MSG_PEEK as libc::c_long)
}

#[inline]
fn recv_flags(
    sock: &impl std::os::fd::AsRawFd,
    buf: &mut [u8],
    flags: libc::c_long,
) -> io::Result<usize> {
    let fd = sock.as_raw_fd() as libc::c_long;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call (exclusively
    // borrowed); recvfrom accepts null address and length pointers for a connected socket.
    // Every argument is passed as a full register-width integer or pointer.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            flags,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    byte_count(n)
}

/// Write to a connected socket: `sendto(fd, buf, len, MSG_NOSIGNAL, NULL, 0)`, issued with
/// `syscall(2)`: std's `TcpStream::write` (libc's `send`, same flags) without libc's
/// cancellation-point wrapper; see [`recv`].
#[inline]
pub fn send(sock: &impl std::os::fd::AsRawFd, buf: &[u8]) -> io::Result<usize> {
    sendto_flags(sock, buf, libc::MSG_NOSIGNAL)
}

/// [`send`] with `MSG_MORE`: the kernel holds a partial segment back for the write that
/// follows (a response head before its `sendfile` body), as `TCP_CORK` would for one call, so
/// head and body leave in one segment. The next write without the flag pushes it.
#[inline]
pub fn send_more(sock: &impl std::os::fd::AsRawFd, buf: &[u8]) -> io::Result<usize> {
    sendto_flags(sock, buf, libc::MSG_NOSIGNAL | libc::MSG_MORE)
}

#[inline(always)]
fn sendto_flags(
    sock: &impl std::os::fd::AsRawFd,
    buf: &[u8],
    flags: libc::c_int,
) -> io::Result<usize> {
    let fd = sock.as_raw_fd() as libc::c_long;
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call (borrowed);
    // sendto accepts a null address of length 0 for a connected socket. Every argument is
    // passed as a full register-width integer or pointer.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            buf.len(),
            flags as libc::c_long,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::c_long,
        )
    };
    byte_count(n)
}

/// A byte-count system call's result: the count, or the thread's `errno` when negative.
#[inline]
fn byte_count(n: libc::c_long) -> io::Result<usize> {
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
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

/// The system-wide monotonic clock (`CLOCK_MONOTONIC`) in microseconds: the same value in
/// every process on the machine, so workers that share a rate-limit table agree on time.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec for the call; CLOCK_MONOTONIC
    // always exists on Linux, so the call cannot fail (a failure would leave `ts` at zero).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_nsec as u64 / 1000)
}

/// An anonymous memory file (`memfd_create`, close-on-exec) of `len` zero bytes: memory a
/// process can share with the children it passes the descriptor to, never written to disk.
pub fn memory_file(name: &str, len: u64) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let name = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `name` is a valid NUL-terminated string for the call; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nothing else.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(len)?;
    Ok(file)
}

/// A file mapped into memory shared with every other process that maps it
/// (`MAP_SHARED`), seen as atomic 64-bit words. Unmapped on drop.
pub struct SharedWords {
    ptr: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is only ever accessed through `&[AtomicU64]`, which is Send and Sync;
// the pointer is owned by this value alone.
unsafe impl Send for SharedWords {}
// SAFETY: as above: shared access goes through atomics only.
unsafe impl Sync for SharedWords {}

impl SharedWords {
    /// Map the first `words * 8` bytes of `file` (which must be at least that long) read-write
    /// and shared.
    pub fn map(file: &std::fs::File, words: usize) -> io::Result<SharedWords> {
        use std::os::fd::AsRawFd;
        let bytes = words
            .checked_mul(8)
            .filter(|&b| b > 0)
            .ok_or(io::ErrorKind::InvalidInput)?;
        if file.metadata()?.len() < bytes as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared file shorter than its table",
            ));
        }
        // SAFETY: a fresh mapping (null hint) of a descriptor we borrow for the call; the
        // kernel checks the length and protection against the file; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast()).ok_or(io::ErrorKind::Other)?;
        Ok(SharedWords { ptr, len: words })
    }

    /// The mapped words.
    pub fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        // SAFETY: the mapping is `len * 8` bytes, page-aligned (so aligned for AtomicU64),
        // readable and writable, and lives until drop; AtomicU64 has the layout of u64 and
        // permits shared mutation (here by other processes too), so a shared slice is sound.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: exactly the region mapped in `map`, not used after this (we are dropped).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len * 8) };
    }
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

    /// `recv` and `send` behave like std's `read` and `write` on a socket: data both ways,
    /// `WouldBlock` on an empty non-blocking socket, 0 at the peer's FIN, and an error (not a
    /// signal: `MSG_NOSIGNAL`) when writing to a connection the peer has reset.
    #[test]
    fn raw_recv_and_send_match_std_semantics() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        // Nothing in this test may block for long: a wrong answer fails, it does not hang.
        a.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        a.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let e = recv(&a, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        c.write_all(b"hello").unwrap();
        a.set_nonblocking(false).unwrap();
        assert_eq!(recv(&a, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(send(&a, b"world!").unwrap(), 6);
        let mut got = [0u8; 6];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"world!");
        // Reset the connection from the client side (linger 0), then write into it.
        socket2::SockRef::from(&c)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(c);
        let mut failed = None;
        for _ in 0..100 {
            match send(&a, b"x") {
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let e = failed.expect("writing to a reset connection fails");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{e}"
        );
        let (b, _) = {
            let mut c2 = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            c2.write_all(b"z").unwrap();
            drop(c2);
            l.accept().unwrap()
        };
        b.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        assert_eq!(recv(&b, &mut buf).unwrap(), 1);
        assert_eq!(recv(&b, &mut buf).unwrap(), 0, "0 at the peer's FIN");
    }

    #[test]
    fn no_low_water_mark_leaves_the_default() {
        let l = listen("127.0.0.1:0".parse().unwrap(), false, 16).unwrap();
        set_inherited_options(&l, false, None).unwrap();
        let sock = socket2::SockRef::from(&l);
        assert!(!sock.tcp_nodelay().unwrap());
    }

    /// `open_beneath` opens what lies below its directory and refuses, with the error
    /// `is_escape_error` recognises, every way out: `..`, a relative symlink climbing out, an
    /// absolute symlink. Skipped where `openat2` is unavailable.
    #[test]
    fn open_beneath_stays_below_its_directory() {
        let base = std::env::temp_dir().join(format!("herd-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), b"inside").unwrap();
        std::fs::write(base.join("secret.txt"), b"outside").unwrap();
        std::os::unix::fs::symlink("sub/a.txt", root.join("rel-in")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", root.join("rel-out")).unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("abs-out")).unwrap();
        let dir = std::fs::File::open(&root).unwrap();
        let open = |rel: &str| open_beneath(&dir, std::path::Path::new(rel));
        match open("sub/a.txt") {
            Ok(None) => {
                eprintln!("openat2 unavailable here; the fallback path is tested by http_static");
            }
            Ok(Some(mut f)) => {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                assert_eq!(s, "inside");
                assert!(open("rel-in").unwrap().is_some());
                for escape in [
                    "../secret.txt",
                    "sub/../../secret.txt",
                    "rel-out",
                    "abs-out",
                ] {
                    let e = open(escape).expect_err(escape);
                    assert!(is_escape_error(&e), "{escape}: {e}");
                }
                let missing = open("nope").unwrap_err();
                assert_eq!(missing.kind(), io::ErrorKind::NotFound);
            }
            Err(e) => panic!("opening a plain file failed: {e}"),
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
