//! Start-up failures of the real sidecar binary: each exits non-zero at once with one clear
//! message instead of serving nothing (or crashing later).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use grayguard_e2e::paths;
use grayguard_e2e::process::free_port;
use grayguard_e2e::wait::Wait;

/// Runs the sidecar to completion (bounded) and returns its output.
fn run(model: &PathBuf, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(paths::sidecar());
    cmd.env("ORT_DYLIB_PATH", paths::ort_dylib())
        .arg("--model")
        .arg(model)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = Wait::new(
        format!("the sidecar exits for model {}", model.display()),
        Duration::from_secs(60),
    )
    .every(Duration::from_millis(20))
    .poll(|| child.try_wait().unwrap());
    if let Err(t) = exited {
        let _ = child.kill();
        panic!("{t}");
    }
    child.wait_with_output().unwrap()
}

/// The error lines (env_logger INFO lines aside): the sidecar's own start-up errors and
/// clap's for bad flag values.
fn errors(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("grayguard-sidecar:") || l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

/// A real ONNX model that is not a detector: onnxruntime's own sigmoid sample.
fn sigmoid_model() -> PathBuf {
    let out = Command::new(paths::python())
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("datasets/sigmoid.onnx")
}

#[test]
fn bad_models_and_runtime_paths_exit_with_one_clear_message() {
    let missing = PathBuf::from("/nonexistent/model.onnx");
    let out = run(&missing, &[]);
    assert_eq!(out.status.code(), Some(2), "invalid flag value");
    assert_eq!(
        errors(&out),
        [
            "error: invalid value '/nonexistent/model.onnx' for '--model <MODEL>': is not a readable file"
        ]
    );

    let photo = paths::image("person.jpg");
    let out = run(&photo, &[]);
    assert_eq!(out.status.code(), Some(1));
    let e = errors(&out);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("cannot load model") && e[0].contains("person.jpg"),
        "{e:?}"
    );

    let sigmoid = sigmoid_model();
    assert!(sigmoid.exists(), "{}", sigmoid.display());
    let out = run(&sigmoid, &[]);
    assert_eq!(out.status.code(), Some(1));
    let e = errors(&out);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("is not a YOLO detection model"), "{e:?}");

    let out = run(
        &paths::model(),
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    assert_eq!(out.status.code(), Some(1));
    let e = errors(&out);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("ORT_DYLIB_PATH"), "{e:?}");

    let out = run(&paths::model(), &[("GRAYGUARD_SIDECAR_CONF", "2")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "env twins are validated like flags"
    );
    assert_eq!(
        errors(&out),
        ["error: invalid value '2' for '--conf <CONF>': must be in [0, 1), got 2"]
    );
}
