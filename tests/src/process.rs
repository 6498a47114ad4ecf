//! Background processes for tests: free loopback ports, children that are killed when the
//! guard drops (also when the test panics), bounded waits for readiness, and signals for
//! fault injection (a crash is SIGKILL, a hang SIGSTOP).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::Wait;

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

/// Whether `pid` runs: it exists and is not a zombie that only waits to be reaped (by a
/// parent that is not this test).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
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

    /// Waits up to `timeout` for the process to exit on its own (`None` if it has not).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        Wait::new(format!("{} exits", self.name), timeout)
            .every(Duration::from_millis(20))
            .poll(|| self.exited())
            .ok()
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = send_signal(self.child.id(), "TERM");
        self.wait_exit(timeout)
    }

    /// Fails the test, with the log, if the process has exited (while a caller waits for
    /// `what`).
    fn still_running(&mut self, what: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited ({status}) while waiting for {what}:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Waits until `addr` accepts TCP connections, failing the test (with the log) after
    /// `timeout` or if the process exits first.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) {
        let what = format!("{} listening on {addr}", self.name);
        let outcome = Wait::new(&what, timeout)
            .every(Duration::from_millis(25))
            .poll(|| {
                self.still_running(&what);
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            });
        if let Err(t) = outcome {
            panic!("{t}:\n{}", self.log());
        }
    }

    /// Polls `url` until it answers `status`, failing the test (with the log) after
    /// `timeout` or if the process exits first.
    pub fn wait_for_status(&mut self, url: &str, status: u16, timeout: Duration) {
        let what = format!("{}: {url} answering {status}", self.name);
        let outcome = Wait::new(&what, timeout).poll(|| {
            self.still_running(&what);
            match crate::http::get(url) {
                Ok(r) if r.status == status => Ok(()),
                Ok(r) => Err(format!("{} {}", r.status, r.text())),
                Err(e) => Err(e.to_string()),
            }
        });
        if let Err(t) = outcome {
            panic!("{t}:\n{}", self.log());
        }
    }

    /// Waits until the process has written `line` (a substring of its log), failing the test
    /// (with the log) after `timeout` or if the process exits first.
    pub fn wait_for_log(&mut self, line: &str, timeout: Duration) {
        let what = format!("{} logging {line:?}", self.name);
        let outcome = Wait::new(&what, timeout).poll(|| {
            self.still_running(&what);
            self.log().contains(line)
        });
        if let Err(t) = outcome {
            panic!("{t}:\n{}", self.log());
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
