//! Background processes for tests: free loopback ports, children that are killed when the
//! guard drops (also when the test panics), bounded waits for readiness, and signals for
//! fault injection (a crash is SIGKILL, a hang SIGSTOP).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (the OS picks it; it is released before returning, so there is
/// a small window in which another process could take it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on loopback")
}

/// Sends `signal` (a name `kill -l` knows: `KILL`, `STOP`, `CONT`, `TERM`, `INT`) to `pid`;
/// false when there is no such process (or it may not be signalled).
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a process `pid` exists (a zombie still does).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A child process whose stdout+stderr go to a log file, killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// Spawns `cmd`, sending its output to `<dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
            _dir: None,
        }
    }

    /// Keeps `dir` alive (and deletes it) together with the process.
    pub fn own_dir(mut self, dir: tempfile::TempDir) -> Proc {
        self._dir = Some(dir);
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file the process writes its output to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(code)` if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` to the process (see [`send_signal`]), failing the test if it cannot.
    pub fn signal(&self, signal: &str) {
        assert!(
            send_signal(self.child.id(), signal),
            "{}: cannot send SIG{signal} to pid {}",
            self.name,
            self.child.id()
        );
    }

    /// Kills the process with SIGKILL, as a crash would (no drain, no clean-up), and reaps it.
    pub fn crash(&mut self) -> std::process::ExitStatus {
        self.signal("KILL");
        self.child.wait().expect("reap the killed process")
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until `addr` accepts TCP connections, failing the test (with the log) after
    /// `timeout` or if the process exits first.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before listening on {addr}:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within {timeout:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls `url` until it answers `status`, failing the test after `timeout`.
    pub fn wait_for_status(&mut self, url: &str, status: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = crate::http::get(url)
                && r.status == status
            {
                return;
            }
            if let Some(exit) = self.exited() {
                panic!(
                    "{} exited ({exit}) while waiting for {url}:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: {url} did not answer {status} within {timeout:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.name,
                self.log.display(),
                tail(&self.log(), 8000)
            );
        }
    }
}

fn tail(s: &str, max: usize) -> &str {
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}
