//! The OCI images `make images` builds, used the way a cluster would: the filter image read
//! as Istio's WasmPlugin fetcher reads it and checked against the digest pinned in
//! mesh-config; every image rebuilt to the same digest; the sidecar and report server images
//! unpacked into a root file system and run with their own entrypoint, environment and user in
//! a chroot (the sidecar's real model answering /ready and /infer on a real photo; the report
//! server answering /healthz and its kept reports' index from its reports directory); all
//! pushed with skopeo to a real registry on loopback and their digests read back.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use grayguard_contract::headers;
use grayguard_e2e::container::{Container, Process};
use grayguard_e2e::http;
use grayguard_e2e::oci::{self, LAYER_TAR_GZIP, Layout};
use grayguard_e2e::paths;
use grayguard_e2e::process::free_port;
use grayguard_e2e::registry::Registry;
use grayguard_e2e::sidecar::READY_TIMEOUT;

const FILTER: &str = "grayguard-filter";
const SIDECAR: &str = "grayguard-sidecar";
const REPORT: &str = "grayguard-report";
/// Every image `make images` builds and `make push` pushes.
const IMAGES: [&str; 3] = [FILTER, SIDECAR, REPORT];
/// How long the report server may take to answer /healthz once started (it reads nothing
/// before it serves: no Prometheus, no logs).
const REPORT_READY_TIMEOUT: Duration = Duration::from_secs(30);
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
    let version = tag();
    // Each image built again from the same inputs, compared with what `make images` built.
    let rebuild = |name: &str, image: &str, inputs: &[(&str, PathBuf)]| {
        let out_dir = dir.path().join(name);
        let mut cmd = Command::new(paths::python());
        cmd.arg(build_py()).arg(image);
        for (flag, path) in inputs {
            cmd.arg(flag).arg(path);
        }
        let out = cmd
            .args(["--version", &version])
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            Layout::open(&out_dir).digest(),
            Layout::open(paths::oci_layout(name)).digest(),
            "{name}"
        );
    };
    rebuild(FILTER, "filter", &[("--wasm", paths::wasm())]);
    rebuild(
        SIDECAR,
        "sidecar",
        &[
            ("--binary", paths::sidecar()),
            ("--onnxruntime", paths::ort_dylib()),
            ("--model", paths::model()),
            ("--debs", paths::debs()),
        ],
    );
    rebuild(
        REPORT,
        "report",
        &[("--binary", paths::report()), ("--debs", paths::debs())],
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

/// The value of flag `name` (`--flag`) given as `--flag=value` in `args`; the last one wins.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .rev()
        .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
}

/// `args` with every `name=...` dropped and `name=value` added.
fn with_flag(args: &[String], name: &str, value: &str) -> Vec<String> {
    let mut out: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with(&format!("{name}=")))
        .cloned()
        .collect();
    out.push(format!("{name}={value}"));
    out
}

/// The layout of image `name`, its config, and what it runs (never as root).
fn runnable(name: &str) -> (Layout, serde_json::Value, Process) {
    let layout = Layout::open(paths::oci_layout(name));
    let config = layout.config();
    let process = Process::of(&config);
    assert_ne!(process.uid(), 0, "{name}: the image must not run as root");
    (layout, config, process)
}

/// Whether the image exposes TCP port `port`.
fn exposes(config: &serde_json::Value, port: &str) -> bool {
    config["config"]["ExposedPorts"]
        .as_object()
        .is_some_and(|ports| ports.contains_key(&format!("{port}/tcp")))
}

/// Distroless: no shell in the image.
fn assert_no_shell(container: &Container) {
    for sh in ["/bin/sh", "/usr/bin/sh"] {
        assert!(!container.path(sh).exists(), "{sh} in the image");
    }
}

#[test]
fn sidecar_image_runs_its_own_entrypoint_as_its_user_and_serves_the_bundled_model() {
    let (layout, config, mut process) = runnable(SIDECAR);
    let c = &config["config"];
    assert!(exposes(&config, "8080"), "{c}");
    assert!(
        process.env("ORT_DYLIB_PATH").is_some(),
        "ORT_DYLIB_PATH unset: {c}"
    );

    let mut container = Container::unpack(&layout);
    // The bundled model and ONNX Runtime where the environment says.
    assert_no_shell(&container);
    for var in ["ORT_DYLIB_PATH", "GRAYGUARD_SIDECAR_MODEL"] {
        let path = process.env(var).unwrap();
        assert!(
            container.path(path).is_file(),
            "{var}={path} not in the image"
        );
    }

    // The image's entrypoint as the image's user, with the image's environment. Only the
    // listen address (a free loopback port; the image says 0.0.0.0:8080) and the version label
    // are overridden, through the flags' environment twins.
    let port = free_port();
    let version = "image-under-test";
    process.set_env("GRAYGUARD_SIDECAR_LISTEN", format!("127.0.0.1:{port}"));
    process.set_env("GRAYGUARD_SIDECAR_MODEL_VERSION", version);
    process.set_env("GRAYGUARD_SIDECAR_WARMUP_RUNS", "1");
    container.start("sidecar-image", &process).wait_for_status(
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
        container.uid(),
        Some(process.uid()),
        "the entrypoint does not run as the image's user"
    );
    // The entrypoint dies with the guard (and its namespaces' mounts with it).
    container.stop();
}

#[test]
fn report_image_runs_its_own_entrypoint_as_its_user_and_serves_its_reports_directory() {
    let (layout, config, mut process) = runnable(REPORT);
    let c = &config["config"];
    // Its default flags are the Deployment's (mesh-config/reports/deployment.yaml): serve on
    // the exposed port, keep the reports in the image's volume.
    let serve = flag(&process.cmd, "--serve").expect("Cmd without --serve");
    let port = serve.rsplit_once(':').expect("--serve HOST:PORT").1;
    assert!(
        exposes(&config, port),
        "--serve={serve} is not exposed: {c}"
    );
    let reports_dir = flag(&process.cmd, "--reports-dir")
        .expect("Cmd without --reports-dir")
        .to_string();
    assert!(
        c["Volumes"].as_object().unwrap().contains_key(&reports_dir),
        "--reports-dir={reports_dir} is not a volume: {c}"
    );

    let mut container = Container::unpack(&layout);
    assert_no_shell(&container);
    // Without a volume too, the user keeps its reports in the image's folder.
    let folder = std::fs::metadata(container.path(&reports_dir)).unwrap();
    assert!(
        folder.is_dir(),
        "{reports_dir} is not a folder in the image"
    );
    assert_eq!(
        (folder.uid(), folder.mode() & 0o700),
        (process.uid(), 0o700),
        "{reports_dir} is not the user's to write"
    );

    // The image's entrypoint and flags as the image's user, as a Deployment's args would
    // pass them, with only the address moved to a free loopback port.
    let port = free_port();
    process.cmd = with_flag(&process.cmd, "--serve", &format!("127.0.0.1:{port}"));
    container.start("report-image", &process).wait_for_status(
        &format!("http://127.0.0.1:{port}/healthz"),
        200,
        REPORT_READY_TIMEOUT,
    );
    // The kept reports' index, read from the image's reports folder (none kept yet).
    let index = http::get(&format!("http://127.0.0.1:{port}/reports/")).unwrap();
    assert_eq!(index.status, 200, "{}", index.text());
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        container.uid(),
        Some(process.uid()),
        "the entrypoint does not run as the image's user"
    );
    container.stop();
}

#[test]
fn every_image_pushes_to_a_real_registry_and_keeps_its_digest() {
    let registry = Registry::start();
    let version = tag();
    for name in IMAGES {
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
