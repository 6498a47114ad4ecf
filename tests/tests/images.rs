//! The OCI images `make images` builds, used the way a cluster would: the filter image read
//! as Istio's WasmPlugin fetcher reads it and checked against the digest pinned in
//! mesh-config; both images rebuilt to the same digests; the sidecar image's layers unpacked
//! into a root file system and run with its own entrypoint, environment and user in a chroot
//! (the real model answering /ready and /infer on a real photo); both pushed with skopeo to a
//! real registry on loopback and their digests read back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use grayguard_contract::headers;
use grayguard_e2e::http;
use grayguard_e2e::oci::{self, LAYER_TAR_GZIP, Layout};
use grayguard_e2e::paths;
use grayguard_e2e::process::{Proc, free_port};
use grayguard_e2e::registry::Registry;
use grayguard_e2e::sidecar::READY_TIMEOUT;
use grayguard_e2e::wait::eventually;

const FILTER: &str = "grayguard-filter";
const SIDECAR: &str = "grayguard-sidecar";
/// Where the WasmPlugin pins the filter image.
const WASM_PLUGIN: &str = "mesh-config/wasm-plugin/wasm-plugin.yaml";
/// Istio's fetcher reads this file from the image's last layer.
const PLUGIN_FILE: &str = "plugin.wasm";

fn build_py() -> PathBuf {
    paths::root().join("mesh-config/images/build.py")
}

/// The `sha256:` value of the WasmPlugin (hex, quoted or not).
fn pinned_digest(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let values: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sha256:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .collect();
    assert_eq!(values.len(), 1, "{}: one sha256 expected", file.display());
    values[0].clone()
}

fn tag() -> String {
    Layout::open(paths::oci_layout(FILTER)).manifest_descriptor()["annotations"]
        ["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn filter_image_holds_the_built_module_where_istio_looks_and_is_the_pinned_one() {
    let layout = Layout::open(paths::oci_layout(FILTER));
    let manifest = layout.manifest();
    assert_eq!(manifest["mediaType"], oci::MANIFEST);
    // istio-agent: the last layer, tar+gzip, holding plugin.wasm (the "compat" variant).
    let layers = layout.layers();
    let last = layers.last().expect("at least one layer");
    assert_eq!(last["mediaType"], LAYER_TAR_GZIP);
    let module = oci::file_from_tar_gzip(
        &layout.blob_path(last["digest"].as_str().unwrap()),
        PLUGIN_FILE,
    );
    let built = std::fs::read(paths::wasm()).unwrap();
    assert!(
        module == built,
        "plugin.wasm in the image differs from {}",
        paths::wasm().display()
    );
    assert_eq!(&module[..4], b"\0asm");
    let config = layout.config();
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        layers.len()
    );

    // The WasmPlugin pins exactly this image (Istio compares the manifest digest, hex).
    let digest = layout.digest();
    let pinned = pinned_digest(&paths::root().join(WASM_PLUGIN));
    assert_eq!(
        format!("sha256:{pinned}"),
        digest,
        "{WASM_PLUGIN} pins sha256 {pinned}, but the filter built from this tree is {digest}: \
         run `make pin-filter` and commit the result"
    );
}

#[test]
fn images_rebuild_to_the_same_digests() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(paths::python())
            .arg(build_py())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let version = tag();
    let filter = dir.path().join(FILTER);
    run(&[
        "filter".as_ref(),
        "--wasm".as_ref(),
        paths::wasm().as_os_str(),
        "--version".as_ref(),
        version.as_ref(),
        "--out".as_ref(),
        filter.as_os_str(),
    ]);
    assert_eq!(
        Layout::open(&filter).digest(),
        Layout::open(paths::oci_layout(FILTER)).digest()
    );
    let sidecar = dir.path().join(SIDECAR);
    run(&[
        "sidecar".as_ref(),
        "--binary".as_ref(),
        paths::sidecar().as_os_str(),
        "--onnxruntime".as_ref(),
        paths::ort_dylib().as_os_str(),
        "--model".as_ref(),
        paths::model().as_os_str(),
        "--debs".as_ref(),
        paths::debs().as_os_str(),
        "--version".as_ref(),
        version.as_ref(),
        "--out".as_ref(),
        sidecar.as_os_str(),
    ]);
    assert_eq!(
        Layout::open(&sidecar).digest(),
        Layout::open(paths::oci_layout(SIDECAR)).digest()
    );
}

#[test]
fn pin_filter_rewrites_the_wasm_plugin_digest_and_refuses_an_ambiguous_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wasm-plugin.yaml");
    let text = std::fs::read_to_string(paths::root().join(WASM_PLUGIN)).unwrap();
    let stale = text.replace(
        &pinned_digest(&paths::root().join(WASM_PLUGIN)),
        &"0".repeat(64),
    );
    std::fs::write(&file, &stale).unwrap();
    let pin = |f: &Path| {
        Command::new(paths::python())
            .arg(build_py())
            .arg("pin-filter")
            .arg(paths::oci_layout(FILTER))
            .arg(f)
            .output()
            .unwrap()
    };
    assert!(pin(&file).status.success());
    let digest = Layout::open(paths::oci_layout(FILTER)).digest();
    assert_eq!(format!("sha256:{}", pinned_digest(&file)), digest);
    // Only the digest changed.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        stale.replace(&"0".repeat(64), digest.strip_prefix("sha256:").unwrap())
    );

    std::fs::write(
        &file,
        format!("{stale}\n  sha256: \"{}\"\n", "1".repeat(64)),
    )
    .unwrap();
    let out = pin(&file);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected one `sha256:` line"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The image's `Env` with `overrides` applied (as a Deployment's `env:` would).
fn environment(config: &serde_json::Value, overrides: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (k, v) = e.as_str().unwrap().split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    for (k, v) in overrides {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.clone()));
    }
    env
}

/// The uid of the process whose root directory is `rootfs` (the chrooted entrypoint).
fn uid_of_process_rooted_at(rootfs: &Path) -> Option<u32> {
    let rootfs = rootfs.canonicalize().ok()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let root = std::fs::read_link(entry.path().join("root")).ok()?;
            if root != rootfs {
                return None;
            }
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// The effective uid of this process.
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    uids.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn sidecar_image_runs_its_own_entrypoint_as_its_user_and_serves_the_bundled_model() {
    assert_eq!(
        euid(),
        0,
        "running the image needs root (namespaces, mounts, chroot, the image's file owners), \
         as make test has on CI"
    );
    let layout = Layout::open(paths::oci_layout(SIDECAR));
    let config = layout.config();
    let c = &config["config"];
    let user = c["User"].as_str().expect("User");
    let (uid, _gid) = user.split_once(':').expect("User is uid:gid");
    assert_ne!(uid, "0", "the image must not run as root");
    assert!(
        c["ExposedPorts"]
            .as_object()
            .unwrap()
            .contains_key("8080/tcp"),
        "{c}"
    );
    let entrypoint: Vec<String> = c["Entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let env = environment(&config, &[]);
    let env_of = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert!(
        env_of("ORT_DYLIB_PATH").is_some(),
        "ORT_DYLIB_PATH unset: {c}"
    );

    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    layout.unpack(&rootfs);
    // Distroless: no shell; the bundled model and ONNX Runtime where the environment says.
    assert!(!rootfs.join("bin/sh").exists() && !rootfs.join("usr/bin/sh").exists());
    for var in ["ORT_DYLIB_PATH", "GRAYGUARD_SIDECAR_MODEL"] {
        let path = env_of(var).unwrap();
        assert!(
            rootfs.join(path.trim_start_matches('/')).is_file(),
            "{var}={path} not in the image"
        );
    }

    // What a runtime does: private mount and PID namespaces, /proc, /dev and /sys, then the
    // image's entrypoint as the image's user, with the image's environment. Only the listen
    // address (a free loopback port; the image says 0.0.0.0:8080) and the version label are
    // overridden, through the flags' environment twins.
    let port = free_port();
    let version = "image-under-test";
    let env = environment(
        &config,
        &[
            ("GRAYGUARD_SIDECAR_LISTEN", format!("127.0.0.1:{port}")),
            ("GRAYGUARD_SIDECAR_MODEL_VERSION", version.to_string()),
            ("GRAYGUARD_SIDECAR_WARMUP_RUNS", "1".to_string()),
        ],
    );
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let r = rootfs.display();
    // The shell stays as the namespace's PID 1 (root, so it keeps unshare's --kill-child
    // signal, which the entrypoint loses when chroot drops to the image's user): when the
    // guard kills unshare, PID 1 dies and the kernel kills everything in the namespace.
    let script = format!(
        "mount -t proc proc {r}/proc && mount --rbind /dev {r}/dev && mount --rbind /sys {r}/sys && {{ \"$@\" & wait $!; }}"
    );
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .arg("/usr/sbin/chroot")
    .arg(format!("--userspec={user}"))
    .arg(&rootfs)
    .args(&entrypoint)
    .env_clear()
    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut proc = Proc::spawn("sidecar-image", cmd, dir.path());
    proc.wait_for_status(
        &format!("http://127.0.0.1:{port}/ready"),
        200,
        READY_TIMEOUT,
    );

    let photo = std::fs::read(paths::image("person.jpg")).unwrap();
    let r = http::post(
        &format!("http://127.0.0.1:{port}/infer"),
        &[("content-type", "image/jpeg")],
        &photo,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header(headers::MODEL_VERSION), Some(version));
    let boxes = r.json()["boxes"].as_array().expect("boxes").len();
    assert!(boxes >= 1, "no detection on person.jpg: {}", r.text());
    assert_eq!(
        r.header(headers::BOX_COUNT),
        Some(boxes.to_string().as_str())
    );
    assert_eq!(
        uid_of_process_rooted_at(&rootfs),
        Some(uid.parse().unwrap()),
        "the entrypoint does not run as the image's user"
    );
    drop(proc);
    // The entrypoint dies with the guard (and its namespaces' mounts with it).
    eventually(
        "the image's entrypoint dies with its guard",
        Duration::from_secs(10),
        || uid_of_process_rooted_at(&rootfs).is_none(),
    );
}

#[test]
fn both_images_push_to_a_real_registry_and_keep_their_digests() {
    let registry = Registry::start();
    let version = tag();
    for name in [FILTER, SIDECAR] {
        let layout = Layout::open(paths::oci_layout(name));
        let reference = registry.reference(&format!("grayguard/{name}"), &version);
        registry.push(&layout.dir, &version, &reference);
        assert_eq!(
            registry.inspect_digest(&reference),
            layout.digest(),
            "{reference}"
        );
    }

    // The filter fetched as istio-agent fetches it: the manifest by tag (its digest is what the
    // WasmPlugin's sha256 is compared with), then the last layer's plugin.wasm.
    let manifest_url = registry.url(&format!("/v2/grayguard/{FILTER}/manifests/{version}"));
    let r = http::get_with(&manifest_url, &[("accept", oci::MANIFEST)]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let digest = oci::sha256(&r.body);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        format!("sha256:{}", pinned_digest(&paths::root().join(WASM_PLUGIN))),
        digest,
        "the pushed filter is not the one {WASM_PLUGIN} pins: run `make pin-filter`"
    );
    let manifest = r.json();
    let last = manifest["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let blob = http::get(&registry.url(&format!(
        "/v2/grayguard/{FILTER}/blobs/{}",
        last["digest"].as_str().unwrap()
    )))
    .unwrap();
    assert_eq!(blob.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer.tar.gz");
    std::fs::write(&layer, &blob.body).unwrap();
    assert!(oci::file_from_tar_gzip(&layer, PLUGIN_FILE) == std::fs::read(paths::wasm()).unwrap());
}
