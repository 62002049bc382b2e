//! The master's pid file: created atomically, refused while a live process holds it, renamed
//! to `.oldbin` during a binary upgrade, removed on exit only if it still names this process.
//!
//! Used by the master (create, rename, remove) and by `herd -s` (read the master's pid). It
//! never signals anyone itself.

use std::io;
use std::path::{Path, PathBuf};

use crate::sys::{process_exists, Pid};

/// Read the pid in `path`: `Ok(None)` if the file does not exist.
pub fn read(path: &Path) -> io::Result<Option<Pid>> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse::<Pid>().map(Some).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a pid: {:?}", path.display(), s.trim()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The pid of a live process (other than this one) named in `path`, if any.
pub fn live_holder(path: &Path) -> Option<Pid> {
    match read(path) {
        Ok(Some(pid)) if pid != std::process::id() as Pid && is_running(pid) => Some(pid),
        _ => None,
    }
}

/// True if `pid` exists and is not a zombie (an exited process nobody has reaped yet).
pub fn is_running(pid: Pid) -> bool {
    if !process_exists(pid) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain any byte.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

/// `path` with `.oldbin` appended (`herd.pid` → `herd.pid.oldbin`).
pub fn oldbin(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".oldbin");
    PathBuf::from(s)
}

/// A pid file this process wrote.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: Pid,
}

impl PidFile {
    /// Write this process's pid to `path` (via a temporary file and a rename), unless a live
    /// process already holds it.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        if let Some(other) = live_holder(path) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} names process {other}, which is running (another herd?); \
                     stop it or remove the file",
                    path.display()
                ),
            ));
        }
        let pid = std::process::id() as Pid;
        write_atomic(path, pid)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }

    /// Where the file is now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Move the file (e.g. to `.oldbin` and back).
    pub fn rename(&mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.path = to.to_path_buf();
        Ok(())
    }

    /// Write the pid again at the current path (if someone removed the file).
    pub fn rewrite(&self) -> io::Result<()> {
        write_atomic(&self.path, self.pid)
    }

    /// Remove the file if it still names this process.
    pub fn remove(self) {
        if matches!(read(&self.path), Ok(Some(p)) if p == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn write_atomic(path: &Path, pid: Pid) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{pid}"));
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("herd-pid-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn create_rename_remove() {
        let d = dir("crr");
        let p = d.join("herd.pid");
        let mut f = PidFile::create(&p).unwrap();
        assert_eq!(read(&p).unwrap(), Some(std::process::id() as Pid));
        // Our own pid is not "another live process".
        assert_eq!(live_holder(&p), None);
        let old = oldbin(&p);
        assert!(old.to_string_lossy().ends_with("herd.pid.oldbin"));
        f.rename(&old).unwrap();
        assert_eq!(read(&p).unwrap(), None);
        f.remove();
        assert!(!old.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_a_live_holder_and_replaces_a_stale_one() {
        let d = dir("live");
        let p = d.join("herd.pid");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(&p, format!("{}\n", child.id())).unwrap();
        let e = PidFile::create(&p).unwrap_err();
        assert!(e.to_string().contains(&child.id().to_string()), "{e}");
        child.kill().unwrap();
        child.wait().unwrap();
        // Now stale: replaced.
        let f = PidFile::create(&p).unwrap();
        assert_eq!(read(&p).unwrap(), Some(std::process::id() as Pid));
        // Remove leaves a file naming someone else alone.
        std::fs::write(&p, "1\n").unwrap();
        f.remove();
        assert!(p.exists());
        std::fs::write(&p, "garbage").unwrap();
        assert!(read(&p).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
