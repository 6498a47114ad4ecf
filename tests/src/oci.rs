//! Reading the OCI image layouts `make images` writes: the one manifest of the index, its
//! config and layers, blobs by digest, and unpacking the layers into a root file system the
//! way a container runtime does (in order, owners and modes kept).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The media type Istio's fetcher (and every runtime) expects of a layer.
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The media type of an image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// One image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn open(dir: impl Into<PathBuf>) -> Layout {
        let dir = dir.into();
        assert!(
            dir.join("oci-layout").is_file(),
            "{}: not an OCI image layout; run `make images`",
            dir.display()
        );
        Layout { dir }
    }

    /// The file of blob `digest` (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.dir.join("blobs/sha256").join(hex)
    }

    /// Blob `digest`, checked against its digest.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let path = self.blob_path(digest);
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(sha256(&data), digest, "{} is corrupt", path.display());
        data
    }

    /// The index's one image manifest descriptor.
    pub fn manifest_descriptor(&self) -> Value {
        let index: Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).unwrap()).unwrap();
        let manifests = index["manifests"].as_array().expect("index.manifests");
        assert_eq!(manifests.len(), 1, "one image per layout: {index}");
        manifests[0].clone()
    }

    /// The manifest digest (`sha256:<hex>`): what registries and Istio's WasmPlugin compare.
    pub fn digest(&self) -> String {
        self.manifest_descriptor()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn manifest(&self) -> Value {
        serde_json::from_slice(&self.blob(&self.digest())).unwrap()
    }

    pub fn config(&self) -> Value {
        let manifest = self.manifest();
        serde_json::from_slice(&self.blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()
    }

    /// The layers' descriptors, base first.
    pub fn layers(&self) -> Vec<Value> {
        self.manifest()["layers"].as_array().unwrap().clone()
    }

    /// Unpacks every layer, in order, into `rootfs` (numeric owners and modes kept, as a
    /// runtime does; needs root for the owners).
    pub fn unpack(&self, rootfs: &Path) {
        std::fs::create_dir_all(rootfs).unwrap();
        for layer in self.layers() {
            assert_eq!(layer["mediaType"], LAYER_TAR_GZIP, "{layer}");
            let blob = self.blob_path(layer["digest"].as_str().unwrap());
            run_ok(
                Command::new("tar")
                    .args([
                        "--extract",
                        "--gzip",
                        "--numeric-owner",
                        "--same-owner",
                        "--same-permissions",
                    ])
                    .arg("--file")
                    .arg(&blob)
                    .arg("--directory")
                    .arg(rootfs),
            );
        }
    }
}

/// `sha256:<hex>` of `data`, by the system's sha256sum (no hashing crate in the tests).
pub fn sha256(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

/// The file `name` of a tar+gzip stream (what Istio's fetcher does with the last layer).
pub fn file_from_tar_gzip(archive: &Path, name: &str) -> Vec<u8> {
    let out = run_ok(
        Command::new("tar")
            .args(["--extract", "--gzip", "--to-stdout", "--file"])
            .arg(archive)
            .arg(name),
    );
    out.stdout
}

fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
