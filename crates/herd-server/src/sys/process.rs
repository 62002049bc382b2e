//! Process control for the `herd` server: fork, sessions, signals to other processes, waiting,
//! spawning children that inherit chosen file descriptors, taking inherited descriptors over,
//! and user/group look-ups.
//!
//! Every libc call the multi-process server needs is wrapped here as a small safe function, so
//! the rest of the crate stays free of `unsafe` (`#![deny(unsafe_code)]`, allowed only on
//! [`crate::sys`]). Each `unsafe` block has a `// SAFETY:` line. What this module must not do:
//! decide policy (when to fork, which signal means what); that is the server's. Who calls it:
//! the master, worker, daemon, pid-file and signal modules of this crate.
//!
//! Two wrappers have preconditions that cannot be expressed in types, and check them at run
//! time instead: [`fork`] refuses to fork a process that has more than one thread (a child of a
//! multithreaded process may only call async-signal-safe functions, and the server's code after
//! fork is ordinary Rust), and [`take_inherited_fd`] hands out each descriptor at most once (an
//! `OwnedFd` must own its descriptor exclusively).

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Mutex;

/// A process id.
pub type Pid = i32;

/// The signals the server sends and handles, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// SIGHUP: reload the configuration.
    Hup,
    /// SIGINT: fast stop.
    Int,
    /// SIGQUIT: graceful stop.
    Quit,
    /// SIGTERM: fast stop.
    Term,
    /// SIGKILL: cannot be caught.
    Kill,
    /// SIGUSR1: reopen log files.
    Usr1,
    /// SIGUSR2: binary upgrade.
    Usr2,
    /// SIGCHLD: a child changed state.
    Chld,
    /// SIGWINCH: window change (nginx uses it to retire workers; herd ignores it).
    Winch,
    /// SIGSTOP: suspend (cannot be caught; tests use it to hold a worker still).
    Stop,
    /// SIGCONT: resume a stopped process.
    Cont,
}

impl Signal {
    /// The platform's signal number.
    ///
    /// ```
    /// use herd_server::signals::Signal;
    /// assert_eq!(Signal::from_raw(Signal::Quit.as_raw()), Some(Signal::Quit));
    /// ```
    pub fn as_raw(self) -> i32 {
        match self {
            Signal::Hup => libc::SIGHUP,
            Signal::Int => libc::SIGINT,
            Signal::Quit => libc::SIGQUIT,
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Usr1 => libc::SIGUSR1,
            Signal::Usr2 => libc::SIGUSR2,
            Signal::Chld => libc::SIGCHLD,
            Signal::Winch => libc::SIGWINCH,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }

    /// The signal with this number, if it is one of ours.
    pub fn from_raw(n: i32) -> Option<Signal> {
        [
            Signal::Hup,
            Signal::Int,
            Signal::Quit,
            Signal::Term,
            Signal::Kill,
            Signal::Usr1,
            Signal::Usr2,
            Signal::Chld,
            Signal::Winch,
            Signal::Stop,
            Signal::Cont,
        ]
        .into_iter()
        .find(|s| s.as_raw() == n)
    }

    /// The conventional name without the `SIG` prefix (`"HUP"`, `"QUIT"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Int => "INT",
            Signal::Quit => "QUIT",
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
            Signal::Usr1 => "USR1",
            Signal::Usr2 => "USR2",
            Signal::Chld => "CHLD",
            Signal::Winch => "WINCH",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

/// Which side of a [`fork`] the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// The original process; the child has this pid.
    Parent(Pid),
    /// The new process.
    Child,
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit with this code.
    Exited(i32),
    /// A signal (by number) killed it.
    Signaled(i32),
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Number of threads in this process (from `/proc/self/task`; Linux).
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Fork the process. Refuses (error `Other`) unless the process has exactly one thread, so the
/// child may go on running ordinary Rust code.
pub fn fork() -> io::Result<Fork> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {threads} threads"
        )));
    }
    // SAFETY: the process has a single thread (checked above, and nothing in it can start one
    // concurrently since we are that thread), so the child is an exact copy with no lock held
    // by a thread that no longer exists.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

/// Start a new session with this process as its leader (detaches from the terminal).
pub fn setsid() -> io::Result<Pid> {
    // SAFETY: setsid takes no arguments and only changes this process's session.
    cvt(unsafe { libc::setsid() })
}

/// Set the file mode creation mask; returns the previous one.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail and only changes this process's mask.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Leave the process at once with `code`, without running destructors or atexit handlers (for
/// the intermediate process of a double fork).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Point stdin, stdout and stderr at `/dev/null`.
pub fn stdio_to_devnull() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    for target in 0..=2 {
        // SAFETY: both descriptors are open (null is owned here, 0-2 are the standard streams);
        // dup2 atomically replaces the target, which std's stdio handles keep using by number.
        cvt(unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// Send `sig` to process `pid`.
pub fn kill(pid: Pid, sig: Signal) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill only sends a signal; pid > 0 addresses exactly one process.
    cvt(unsafe { libc::kill(pid, sig.as_raw()) }).map(|_| ())
}

/// True if a process with this pid exists (we may or may not be allowed to signal it).
pub fn process_exists(pid: Pid) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Wait (blocking) for child `pid` to end and reap it.
pub fn waitpid(pid: Pid) -> io::Result<ExitStatus> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid, exclusively borrowed int for waitpid to write.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break;
    }
    Ok(if libc::WIFEXITED(status) {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    } else {
        ExitStatus::Signaled(libc::WTERMSIG(status))
    })
}

/// Set or clear `FD_CLOEXEC` on `fd` in this process.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD on any integer is harmless; an invalid fd gives EBADF.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    if new != flags {
        // SAFETY: only the descriptor flags of an open fd change.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, new) })?;
    }
    Ok(())
}

fn sigset(sigs: &[Signal]) -> io::Result<libc::sigset_t> {
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is valid, exclusively borrowed storage for a sigset_t.
    cvt(unsafe { libc::sigemptyset(&mut set) })?;
    for s in sigs {
        // SAFETY: as above; the signal number is a valid one from `Signal`.
        cvt(unsafe { libc::sigaddset(&mut set, s.as_raw()) })?;
    }
    Ok(set)
}

/// Unblock `sigs` for the calling thread (threads it starts later inherit its mask). A child
/// spawned by [`spawn_inheriting`] with these signals blocked calls this once its handlers
/// are in place; signals that arrived meanwhile are delivered then.
pub fn unblock_signals(sigs: &[Signal]) -> io::Result<()> {
    let set = sigset(sigs)?;
    // SAFETY: set is an initialised sigset_t; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Spawn `cmd` so that the child inherits exactly the listed descriptors (under the same
/// numbers) besides stdio; when `death_signal` is given, receives it when this process dies
/// (Linux `PR_SET_PDEATHSIG`; the child exits at once if this process died before it could
/// arm that); and starts with `blocked` signals blocked, so that a signal sent before the
/// child has installed its handlers waits instead of killing it (see [`unblock_signals`]).
///
/// The descriptors keep `FD_CLOEXEC` in this process, so other children never see them.
/// The caller should spawn from the thread that will live as long as the process: Linux sends
/// the death signal when the *thread* that forked the child exits.
pub fn spawn_inheriting(
    cmd: &mut Command,
    keep_fds: &[RawFd],
    death_signal: Option<Signal>,
    blocked: &[Signal],
) -> io::Result<Child> {
    let fds: Vec<RawFd> = keep_fds.to_vec();
    let parent = std::process::id() as Pid;
    let death = death_signal.map(Signal::as_raw);
    let block = sigset(blocked)?;
    let hook = move || -> io::Result<()> {
        // Runs in the child between fork and exec: only async-signal-safe calls, no allocation.
        // SAFETY: block is an initialised sigset_t owned by this closure; sigprocmask is
        // async-signal-safe and the child has a single thread.
        if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &block, std::ptr::null_mut()) } == -1 {
            return Err(io::Error::last_os_error());
        }
        for &fd in &fds {
            // SAFETY: fcntl is async-signal-safe; fd came from the parent and is open in the
            // child (fork copies the table), or the call fails with EBADF.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags == -1 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above; only the child's descriptor flags change.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(sig) = death {
            set_death_signal(sig)?;
            // SAFETY: getppid is async-signal-safe and cannot fail.
            if unsafe { libc::getppid() } != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    };
    // SAFETY: the hook above only makes async-signal-safe calls (sigprocmask, fcntl, prctl,
    // getppid) on memory it owns, and does not allocate (io::Error from an os error code is
    // not boxed).
    unsafe {
        cmd.pre_exec(hook);
    }
    cmd.spawn()
}

#[cfg(target_os = "linux")]
fn set_death_signal(sig: i32) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory; async-signal-safe.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    cvt(rc).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn set_death_signal(_sig: i32) -> io::Result<()> {
    Ok(())
}

static TAKEN_FDS: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

/// Take ownership of a descriptor inherited from the parent process (a listening socket or
/// the master's notification socket). It must be open; each number can be taken once (a
/// second call fails with `AlreadyExists`). `FD_CLOEXEC` is set again on it.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is stdio, not an inherited socket"),
        ));
    }
    let mut taken = TAKEN_FDS.lock().unwrap_or_else(|p| p.into_inner());
    let set = taken.get_or_insert_with(HashSet::new);
    if set.contains(&fd) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("descriptor {fd} was already taken"),
        ));
    }
    set_cloexec(fd, true)?; // also proves it is open (EBADF otherwise)
    set.insert(fd);
    // SAFETY: fd is open (checked just now), is not stdio, and is handed out once only (the
    // set above), so the OwnedFd is its sole owner in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// True if `fd` is an open socket in the listening state.
pub fn is_listening_socket(fd: RawFd) -> bool {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: val and len are valid and sized for SO_ACCEPTCONN's int result.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && val != 0
}

/// Look up a user by name: its uid and primary gid.
pub fn lookup_user(name: &str) -> io::Result<(u32, u32)> {
    // SAFETY: all-zero bytes are a valid `passwd` (integers and null pointers), and
    // getpwnam_r has the shape `lookup_entry` calls.
    unsafe { lookup_entry("user", name, libc::getpwnam_r, |p| (p.pw_uid, p.pw_gid)) }
}

/// Look up a group by name: its gid.
pub fn lookup_group(name: &str) -> io::Result<u32> {
    // SAFETY: all-zero bytes are a valid `group` (integers and null pointers), and
    // getgrnam_r has the shape `lookup_entry` calls.
    unsafe { lookup_entry("group", name, libc::getgrnam_r, |g| g.gr_gid) }
}

/// The reentrant `get*nam_r(name, entry, buf, len, result)` functions of libc.
type GetByName<E> = unsafe extern "C" fn(
    *const libc::c_char,
    *mut E,
    *mut libc::c_char,
    libc::size_t,
    *mut *mut E,
) -> libc::c_int;

/// Runs one `get*nam_r` lookup and reads what it found with `read` while the strings it
/// points at are still alive. Starts with a 16 KiB buffer and grows it on ERANGE (a group
/// with thousands of members needs more), up to 4 MiB.
///
/// # Safety
/// All-zero bytes must be a valid `E`, and `getnam_r` must be a libc function of that shape
/// for `E` (it fills `entry` with pointers into `buf` only, and sets `result` to `entry` or
/// to null).
unsafe fn lookup_entry<E, T>(
    what: &str,
    name: &str,
    getnam_r: GetByName<E>,
    read: impl FnOnce(&E) -> T,
) -> io::Result<T> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut len = 16 * 1024;
    loop {
        let mut buf = vec![0u8; len];
        // SAFETY: the caller guarantees that all-zero bytes are a valid E.
        let mut entry: E = unsafe { std::mem::zeroed() };
        let mut result: *mut E = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the sizes given, and the caller guarantees that
        // getnam_r writes only into entry, buf and result.
        let rc = unsafe {
            getnam_r(
                cname.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && len < 4 << 20 {
            len *= 4;
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such {what}: {name}"),
            ));
        }
        return Ok(read(&entry));
    }
}

/// The effective user id of this process.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn signal_numbers_round_trip() {
        for s in [Signal::Hup, Signal::Quit, Signal::Usr2, Signal::Kill] {
            assert_eq!(Signal::from_raw(s.as_raw()), Some(s));
        }
        assert_eq!(Signal::from_raw(0), None);
        assert_eq!(Signal::Usr1.to_string(), "SIGUSR1");
    }

    #[test]
    fn fork_refuses_with_threads() {
        // Hold a second thread alive so the process is certainly multithreaded.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(thread_count().unwrap() > 1);
        assert!(fork().is_err());
        drop(tx);
        let _ = t.join();
    }

    #[test]
    fn process_exists_and_kill_zero() {
        assert!(process_exists(std::process::id() as Pid));
        assert!(!process_exists(0));
        assert!(!process_exists(-5));
        assert!(kill(0, Signal::Term).is_err());
    }

    #[test]
    fn spawn_inheriting_passes_only_listed_fds() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (fd, ofd) = (l.as_raw_fd(), other.as_raw_fd());
        // The child reports which descriptors it has, then waits on stdin so we can read its
        // blocked-signal mask from /proc while it is alive.
        let script = format!(
            "test -e /proc/self/fd/{fd} && echo kept; test -e /proc/self/fd/{ofd} && echo leaked; \
             echo done; exec cat >/dev/null"
        );
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child =
            spawn_inheriting(&mut cmd, &[fd], Some(Signal::Term), &[Signal::Usr2]).unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 64];
        while !seen.contains("done") {
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "child exited early: {seen:?}");
            seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        assert_eq!(seen, "kept\ndone\n");
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        assert_ne!(
            mask & (1 << (libc::SIGUSR2 - 1)),
            0,
            "SIGUSR2 not blocked: {mask:x}"
        );
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        unblock_signals(&[Signal::Usr2]).unwrap();
        assert!(is_listening_socket(fd));
        assert!(!is_listening_socket(-1));
    }

    #[test]
    fn take_inherited_fd_once() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = l.into_raw_fd();
        let owned = take_inherited_fd(fd).unwrap();
        assert_eq!(
            take_inherited_fd(fd).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(take_inherited_fd(1).is_err());
        let l = std::net::TcpListener::from(owned);
        assert!(l.local_addr().is_ok());
    }

    #[test]
    fn user_lookup() {
        assert_eq!(lookup_user("root").unwrap().0, 0);
        assert!(lookup_user("no-such-user-herd").is_err());
        assert_eq!(lookup_group("root").unwrap(), 0);
        assert!(lookup_group("no-such-group-herd").is_err());
    }

    /// A getgrnam_r that needs a 100,000-byte buffer, as one for a huge group would.
    unsafe extern "C" fn needs_big_buffer(
        _name: *const libc::c_char,
        entry: *mut libc::group,
        _buf: *mut libc::c_char,
        len: libc::size_t,
        result: *mut *mut libc::group,
    ) -> libc::c_int {
        if len < 100_000 {
            return libc::ERANGE;
        }
        // SAFETY: lookup_entry passes valid pointers to its own entry and result.
        unsafe {
            (*entry).gr_gid = 4242;
            *result = entry;
        }
        0
    }

    /// A getgrnam_r for which no buffer is ever big enough.
    unsafe extern "C" fn never_fits(
        _name: *const libc::c_char,
        _entry: *mut libc::group,
        _buf: *mut libc::c_char,
        _len: libc::size_t,
        _result: *mut *mut libc::group,
    ) -> libc::c_int {
        libc::ERANGE
    }

    #[test]
    fn lookups_grow_the_buffer_on_erange_up_to_a_cap() {
        // SAFETY: all-zero bytes are a valid group; the fakes have getgrnam_r's shape.
        let gid = unsafe { lookup_entry("group", "big", needs_big_buffer, |g| g.gr_gid) };
        assert_eq!(gid.unwrap(), 4242);
        // SAFETY: as above.
        let err = unsafe { lookup_entry("group", "huge", never_fits, |g| g.gr_gid) };
        assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::ERANGE));
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by `waitpid`, the function under test
    fn waitpid_reports_exit_code() {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg("exit 3")
            .spawn()
            .unwrap();
        assert_eq!(waitpid(child.id() as Pid).unwrap(), ExitStatus::Exited(3));
    }
}
