//! A real container registry on loopback (Debian's docker-registry, the CNCF distribution
//! registry) for the image tests: plain HTTP on a free 127.0.0.1 port, storage in a temp dir,
//! killed on drop; images pushed to it with skopeo.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{Proc, free_port};

/// A running registry (killed on drop).
pub struct Registry {
    pub proc: Proc,
    pub port: u16,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        let mut proc = Proc::spawn("docker-registry", cmd, dir.path()).own_dir(dir);
        proc.wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(30),
        );
        proc.wait_for_status(
            &format!("http://127.0.0.1:{port}/v2/"),
            200,
            Duration::from_secs(30),
        );
        Registry { proc, port }
    }

    /// `127.0.0.1:<port>/<repository>:<tag>`
    pub fn reference(&self, repository: &str, tag: &str) -> String {
        format!("127.0.0.1:{}/{repository}:{tag}", self.port)
    }

    /// The registry API URL of `path` (e.g. `/v2/<repo>/manifests/<tag>`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Pushes the image of an OCI layout with `skopeo copy`, as `make push` does.
    pub fn push(&self, layout: &Path, tag: &str, reference: &str) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy to {reference} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The manifest digest `skopeo inspect` reads back for `reference`.
    pub fn inspect_digest(&self, reference: &str) -> String {
        let out = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(format!("docker://{reference}"))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo inspect {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}
