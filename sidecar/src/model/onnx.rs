//! ONNX Runtime (the only module that touches `ort`): loading the runtime library, building
//! sessions on the chosen device, reading the model's metadata and running it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, TensorRef};

use super::model_info::{parse_imgsz, parse_names};
use super::options::{Device, InputSize, ModelOptions};
use super::runner::{ModelRunner, ModelSpec};
use crate::vision::layout::{OutputLayout, resolve};

/// Why the model could not be loaded; the process reports it in one line and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "ORT_DYLIB_PATH is not set; point it at libonnxruntime.so (PyPI onnxruntime 1.31, or onnxruntime-gpu for --device cuda)"
    )]
    NoRuntimePath,
    #[error("ORT_DYLIB_PATH={} does not exist", .0.display())]
    RuntimeMissing(PathBuf),
    #[error("cannot load ONNX Runtime from {}: {reason}", path.display())]
    Runtime { path: PathBuf, reason: String },
    #[error("cannot create the ONNX Runtime environment: {0}")]
    Environment(String),
    #[error("cannot configure an ONNX Runtime session: {0}")]
    Session(String),
    #[error("cannot load model {}: {reason}", model.display())]
    Model { model: PathBuf, reason: String },
    #[error("{} is not a YOLO detection model: {why}", model.display())]
    NotDetector { model: PathBuf, why: String },
    #[error("--imgsz {requested:?} does not match the model's fixed input {fixed:?}")]
    ImgszMismatch {
        requested: InputSize,
        fixed: InputSize,
    },
}

/// A loaded model: its spec, one runner per worker, and the device it actually runs on.
pub struct LoadedModel {
    pub spec: ModelSpec,
    pub runners: Vec<OrtRunner>,
    pub device: Device,
    /// ONNX Runtime's version (`1.31.1`; `unknown` when the library's file name does not say).
    pub runtime_version: String,
    /// ONNX Runtime's build information (branch, commit, build type).
    pub runtime_build: String,
}

/// ONNX Runtime inter-op threads per session. The sessions run sequentially (one operator at
/// a time, each spread over the intra-op threads), where inter-op threads are unused; set
/// anyway so that `/info` reports what is, not a default.
pub const INTER_THREADS: usize = 1;

/// One session (sessions are not shared between threads: `run` takes `&mut`).
pub struct OrtRunner {
    session: Session,
    output_name: String,
    /// `[3, H, W]` of one image.
    image_shape: [usize; 3],
}

/// Where ONNX Runtime's shared library is.
pub fn dylib_path() -> Result<PathBuf, LoadError> {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(LoadError::NoRuntimePath),
    }
}

fn environment() -> Result<Environment, LoadError> {
    let path = dylib_path()?;
    if !path.exists() {
        return Err(LoadError::RuntimeMissing(path));
    }
    ort::init_from(&path)
        .map_err(|e| LoadError::Runtime {
            path: path.clone(),
            reason: e.to_string(),
        })?
        .with_name("grayguard-sidecar")
        .with_telemetry(false)
        .build()
        .map_err(|e| LoadError::Environment(e.to_string()))
}

/// Builds one session; `cuda` asks for the CUDA execution provider and reports whether it
/// was registered.
fn session(
    env: &Environment,
    model: &Path,
    threads: usize,
    device: Device,
    cuda_device: u32,
) -> Result<(Session, Device), LoadError> {
    let builder = || -> Result<_, LoadError> {
        let e = |e: &dyn std::fmt::Display| LoadError::Session(e.to_string());
        Session::builder(env)
            .map_err(|x| e(&x))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|x| e(&x))?
            .with_intra_threads(threads)
            .map_err(|x| e(&x))?
            .with_inter_threads(INTER_THREADS)
            .map_err(|x| e(&x))
    };
    let mut used = Device::Cpu;
    let mut b = builder()?;
    if device == Device::Cuda {
        match with_cuda(b, cuda_device) {
            Ok(with) => {
                b = with;
                used = Device::Cuda;
            }
            Err(why) => {
                log::warn!("--device cuda: CUDA is not available ({why}); falling back to CPU");
                b = builder()?;
            }
        }
    }
    let session = b.commit_from_file(model).map_err(|e| LoadError::Model {
        model: model.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok((session, used))
}

#[cfg(feature = "cuda")]
fn with_cuda(
    b: ort::session::builder::SessionBuilder,
    device_id: u32,
) -> Result<ort::session::builder::SessionBuilder, String> {
    use ort::ep::{self, ExecutionProvider};
    if !ep::CUDA::is_available().unwrap_or(false) {
        return Err("this ONNX Runtime library has no CUDA execution provider".into());
    }
    let device_id = i32::try_from(device_id).map_err(|e| e.to_string())?;
    b.with_execution_providers([ep::CUDA::default()
        .with_device_id(device_id)
        .build()
        .error_on_failure()])
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _: ort::session::builder::SessionBuilder,
    _: u32,
) -> Result<ort::session::builder::SessionBuilder, String> {
    Err("this binary was built without the `cuda` feature".into())
}

/// Loads the runtime and the model, checks it is a detection model and builds the workers.
pub fn load(opts: &ModelOptions) -> Result<LoadedModel, LoadError> {
    let env = environment()?;
    let workers = opts.workers.max(1);
    let mut runners = Vec::with_capacity(workers);
    // The first session settles the device (and logs a CUDA fallback once); the rest follow.
    let mut device = opts.device;
    let mut spec: Option<ModelSpec> = None;
    for _ in 0..workers {
        let (session, used) = session(&env, &opts.path, opts.threads, device, opts.cuda_device)?;
        device = used;
        let (s, runner) = inspect(session, opts)?;
        spec.get_or_insert(s);
        runners.push(runner);
    }
    let Some(spec) = spec else {
        return Err(LoadError::Session("no model workers".into()));
    };
    Ok(LoadedModel {
        spec,
        runners,
        device,
        runtime_version: runtime_version(),
        runtime_build: ort::info().to_string(),
    })
}

/// The version in the (resolved) file name of `ORT_DYLIB_PATH`, or `unknown`.
fn runtime_version() -> String {
    dylib_path()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| {
            p.file_name()
                .and_then(|n| runtime_version_from_file_name(&n.to_string_lossy()))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// ONNX Runtime's version from its library's file name (`libonnxruntime.so.1.31.1`, as the
/// wheel installs it and the image keeps it): the build info string ONNX Runtime returns
/// names a branch and commit, not the release.
pub fn runtime_version_from_file_name(name: &str) -> Option<String> {
    let version = name.strip_prefix("libonnxruntime.so.")?;
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric.then(|| version.to_string())
}

/// Reads inputs, outputs and metadata; refuses anything that is not a single-image detector.
fn inspect(session: Session, opts: &ModelOptions) -> Result<(ModelSpec, OrtRunner), LoadError> {
    let not_detector = |why: String| LoadError::NotDetector {
        model: opts.path.clone(),
        why,
    };
    let [input] = session.inputs() else {
        return Err(not_detector(format!(
            "it has {} inputs, expected 1",
            session.inputs().len()
        )));
    };
    let Some(output) = session.outputs().first() else {
        return Err(not_detector("it has no outputs".into()));
    };
    if input.dtype().tensor_type() != Some(TensorElementType::Float32) {
        return Err(not_detector(format!(
            "input {:?} is {}, expected float32 (export with half=False)",
            input.name(),
            input.dtype()
        )));
    }
    if output.dtype().tensor_type() != Some(TensorElementType::Float32) {
        return Err(not_detector(format!(
            "output {:?} is {}, expected float32",
            output.name(),
            output.dtype()
        )));
    }
    let in_shape: Vec<i64> = input
        .dtype()
        .tensor_shape()
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let out_shape: Vec<i64> = output
        .dtype()
        .tensor_shape()
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let meta = session
        .metadata()
        .map_err(|e| not_detector(format!("unreadable metadata: {e}")))?;
    if let Some(task) = meta.custom("task")
        && task != "detect"
    {
        return Err(not_detector(format!("its task is {task:?}")));
    }
    let names: Option<Vec<String>> = meta.custom("names").as_deref().and_then(parse_names);
    let meta_imgsz = meta.custom("imgsz").as_deref().and_then(parse_imgsz);
    drop(meta);
    let (batch, channels) = match in_shape.as_slice() {
        [b, c, _, _] => (*b, *c),
        _ => {
            return Err(not_detector(format!(
                "input shape {in_shape:?} is not [1, 3, H, W]"
            )));
        }
    };
    if !(batch == 1 || batch < 0) || !(channels == 3 || channels < 0) {
        return Err(not_detector(format!(
            "input shape {in_shape:?} is not [1, 3, H, W] or [N, 3, H, W] with a dynamic N"
        )));
    }
    // A dynamic batch axis on both sides lets one run take several images.
    let dynamic_batch = batch < 0 && out_shape.first().is_some_and(|&b| b < 0);
    // Static input dims win; else --imgsz; else the metadata.
    let fixed = match (in_shape[2], in_shape[3]) {
        (h, w) if h > 0 && w > 0 => Some(InputSize {
            height: h as u32,
            width: w as u32,
        }),
        _ => None,
    };
    let meta_imgsz = meta_imgsz.map(|(height, width)| InputSize { height, width });
    let size = match (fixed, opts.imgsz, meta_imgsz) {
        (Some(fixed), Some(requested), _) if fixed != requested => {
            return Err(LoadError::ImgszMismatch { requested, fixed });
        }
        (Some(f), _, _) => f,
        (None, Some(o), _) => o,
        (None, None, Some(m)) => m,
        (None, None, None) => {
            return Err(not_detector(
                "dynamic input size and no imgsz metadata; pass --imgsz".into(),
            ));
        }
    };
    let (h, w) = (size.height, size.width);
    let layout = resolve(&out_shape, names.as_ref().map(Vec::len), opts.output_layout)
        .map_err(|e| not_detector(e.to_string()))?;
    let names: Vec<Arc<str>> = names
        .unwrap_or_else(|| {
            // Without metadata the class count comes from the anchor layout.
            let classes = match (layout, out_shape.get(1)) {
                (OutputLayout::Anchors, Some(&ch)) if ch > 4 => (ch - 4) as usize,
                _ => 0,
            };
            (0..classes).map(|i| i.to_string()).collect()
        })
        .into_iter()
        .map(Arc::from)
        .collect();
    let spec = ModelSpec {
        input_h: h,
        input_w: w,
        names,
        layout,
        dynamic_batch,
    };
    let runner = OrtRunner {
        output_name: output.name().to_string(),
        image_shape: [3, h as usize, w as usize],
        session,
    };
    Ok((spec, runner))
}

impl ModelRunner for OrtRunner {
    fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        output: &mut Vec<f32>,
    ) -> Result<Vec<usize>, String> {
        let [c, h, w] = self.image_shape;
        // Borrowed, not copied: ONNX Runtime reads the worker's buffer in place.
        let tensor =
            TensorRef::from_array_view(([batch, c, h, w], input)).map_err(|e| e.to_string())?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(|e| e.to_string())?;
        let value = outputs
            .get(&self.output_name)
            .ok_or_else(|| format!("the model produced no output {:?}", self.output_name))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        output.clear();
        output.extend_from_slice(data);
        shape
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| format!("negative output dimension in {shape:?}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_version_from_the_library_name() {
        assert_eq!(
            runtime_version_from_file_name("libonnxruntime.so.1.31.1").as_deref(),
            Some("1.31.1")
        );
        assert_eq!(runtime_version_from_file_name("libonnxruntime.so"), None);
        assert_eq!(runtime_version_from_file_name("libonnxruntime.so.1"), None);
        assert_eq!(
            runtime_version_from_file_name("libonnxruntime.so.1.x"),
            None
        );
        assert_eq!(runtime_version_from_file_name("libfoo.so.1.2"), None);
    }
}
