//! The seam between HTTP and the model. [`Detector`] turns an encoded image into boxes;
//! [`YoloDetector`] is the real pipeline (decode → letterbox → model worker → output decode →
//! NMS → original-image coordinates) over any [`ModelRunner`] (ONNX Runtime in production, a
//! fake in unit tests). Handler tests use a fake `Detector`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use crate::decode::{DecodeError, decode_rgb};
use crate::layout::{Candidate, OutputLayout, decode_anchors, decode_end_to_end};
use crate::letterbox::{Letterbox, fill_tensor_reusing};
use crate::nms::nms;

/// One detection in original-image pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoxOut {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class_id: usize,
    pub label: Arc<str>,
}

/// Boxes and stage times (ms) of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Detections {
    pub boxes: Vec<BoxOut>,
    /// Decode + letterbox.
    pub preprocess_ms: f64,
    /// The model run (input binding, run, output copy).
    pub inference_ms: f64,
    /// Output decode, NMS and rescaling.
    pub nms_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DetectError {
    /// The image could not be decoded (a client error).
    Decode(DecodeError),
    /// The model failed (a server error).
    Inference(String),
}

impl std::fmt::Display for DetectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetectError::Decode(e) => e.fmt(f),
            DetectError::Inference(e) => write!(f, "inference failed: {e}"),
        }
    }
}

/// Encoded image in, boxes out. Blocking: callers run it off the async runtime.
pub trait Detector: Send + Sync + 'static {
    fn detect(&self, image: &[u8]) -> Result<Detections, DetectError>;

    /// Starts [`Detector::detect`] without blocking the caller; `reply` gets the outcome.
    /// The default runs `detect` on the async runtime's blocking pool (call it from inside a
    /// runtime); the YOLO pipeline hands the image straight to a model worker instead.
    fn submit(self: Arc<Self>, image: Bytes, reply: DetectReply) {
        tokio::task::spawn_blocking(move || reply(self.detect(&image)));
    }

    /// Requests the model is running right now (the rest of the admitted ones are queued).
    fn busy(&self) -> usize {
        0
    }
}

/// What the pipeline needs to know about the model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Model input size, pixels.
    pub input_h: u32,
    pub input_w: u32,
    /// Class names by id.
    pub names: Vec<Arc<str>>,
    pub layout: OutputLayout,
}

/// Runs the model once. Implementations own their session; one per worker thread.
pub trait ModelRunner: Send + 'static {
    /// Runs on a `[1, 3, H, W]` tensor, writing the output values into `output` (cleared first)
    /// and returning the output shape.
    fn run(&mut self, input: &[f32], output: &mut Vec<f32>) -> Result<Vec<usize>, String>;
}

/// Post-processing settings.
#[derive(Debug, Clone, Copy)]
pub struct PostConfig {
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
    pub max_pixels: u64,
}

/// Receives the outcome of one [`Detector::submit`]; called exactly once, on a model worker.
pub type DetectReply = Box<dyn FnOnce(Result<Detections, DetectError>) + Send>;

struct Job {
    image: Bytes,
    reply: DetectReply,
}

/// What every model worker shares.
struct Shared {
    spec: Arc<ModelSpec>,
    post: PostConfig,
    busy: AtomicUsize,
}

/// Decoded-image scratch above this many bytes is released after use (a rare huge image
/// must not pin its buffer in every worker).
const KEEP_RGB_BYTES: usize = 32 * 1024 * 1024;

/// One model worker's buffers, reused request after request: the input tensor (4.9 MB at
/// 640×640; allocating and faulting it in per request costs more than the NMS), the geometry
/// it was last filled with (so an unchanged letterbox border is not repainted), the decoded
/// RGB image and the raw model output.
#[derive(Default)]
struct Scratch {
    input: Vec<f32>,
    filled: Option<Letterbox>,
    rgb: Vec<u8>,
    output: Vec<f32>,
}

/// The YOLO pipeline on dedicated model worker threads. Each request is handled whole by one
/// worker (decode, letterbox, model run, NMS): one hand-off in and one out, and the buffers
/// stay hot in that worker's cache.
pub struct YoloDetector {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

impl YoloDetector {
    /// Starts one worker thread per runner.
    pub fn new<R: ModelRunner>(
        spec: ModelSpec,
        post: PostConfig,
        runners: Vec<R>,
    ) -> std::io::Result<YoloDetector> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            spec: Arc::new(spec),
            post,
            busy: AtomicUsize::new(0),
        });
        for (i, runner) in runners.into_iter().enumerate() {
            let rx = Arc::clone(&rx);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("gg-model-{i}"))
                .spawn(move || worker(runner, rx, shared))?;
        }
        Ok(YoloDetector { shared, jobs: tx })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.shared.spec
    }
}

impl Shared {
    fn preprocess(&self, image: &[u8], s: &mut Scratch) -> Result<Letterbox, DetectError> {
        let size =
            decode_rgb(image, self.post.max_pixels, &mut s.rgb).map_err(DetectError::Decode)?;
        let lb = Letterbox::new(
            size.width,
            size.height,
            self.spec.input_w,
            self.spec.input_h,
        );
        s.input.resize(lb.tensor_len(), 0.0);
        // Forget the old geometry first: if the fill fails half-way, the border is stale.
        let previous = s.filled.take();
        let filled = fill_tensor_reusing(&s.rgb, &lb, &mut s.input, previous.as_ref());
        if s.rgb.capacity() > KEEP_RGB_BYTES {
            s.rgb = Vec::new();
        }
        filled.map_err(|e| DetectError::Inference(format!("pre-processing: {e}")))?;
        s.filled = Some(lb);
        Ok(lb)
    }

    fn process<R: ModelRunner>(
        &self,
        runner: &mut R,
        image: &[u8],
        s: &mut Scratch,
    ) -> Result<Detections, DetectError> {
        let t0 = Instant::now();
        let lb = self.preprocess(image, s)?;
        let preprocess_ms = ms_since(t0);
        let t1 = Instant::now();
        let shape = runner
            .run(&s.input, &mut s.output)
            .map_err(DetectError::Inference)?;
        let inference_ms = ms_since(t1);
        let t2 = Instant::now();
        let boxes = self.postprocess(&s.output, &shape, &lb)?;
        Ok(Detections {
            boxes,
            preprocess_ms,
            inference_ms,
            nms_ms: ms_since(t2),
        })
    }

    fn postprocess(
        &self,
        output: &[f32],
        shape: &[usize],
        lb: &Letterbox,
    ) -> Result<Vec<BoxOut>, DetectError> {
        let mut cands: Vec<Candidate> = Vec::new();
        let kept = match (self.spec.layout, shape) {
            (OutputLayout::Anchors, [1, ch, n]) if output.len() == ch * n => {
                decode_anchors(output, *ch, *n, self.post.conf, &mut cands);
                nms(&mut cands, self.post.iou, self.post.max_det)
            }
            (OutputLayout::EndToEnd, [1, n, 6]) if output.len() == n * 6 => {
                decode_end_to_end(output, self.post.conf, &mut cands);
                cands.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
                cands.truncate(self.post.max_det);
                cands
            }
            (layout, _) => {
                return Err(DetectError::Inference(format!(
                    "model output shape {shape:?} ({} values) does not fit the {} layout",
                    output.len(),
                    layout.as_str()
                )));
            }
        };
        let round = |v: f32| (v * 100.0).round() / 100.0;
        Ok(kept
            .into_iter()
            .map(|c| {
                let (x1, y1) = lb.to_source(c.x1, c.y1);
                let (x2, y2) = lb.to_source(c.x2, c.y2);
                let label = self
                    .spec
                    .names
                    .get(c.class_id)
                    .cloned()
                    .unwrap_or_else(|| Arc::from(c.class_id.to_string()));
                BoxOut {
                    x1: round(x1),
                    y1: round(y1),
                    x2: round(x2),
                    y2: round(y2),
                    score: (c.score * 10_000.0).round() / 10_000.0,
                    class_id: c.class_id,
                    label,
                }
            })
            .collect())
    }
}

impl Detector for YoloDetector {
    fn detect(&self, image: &[u8]) -> Result<Detections, DetectError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.enqueue(
            Bytes::copy_from_slice(image),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv()
            .unwrap_or_else(|_| Err(DetectError::Inference("model worker died".into())))
    }

    fn submit(self: Arc<Self>, image: Bytes, reply: DetectReply) {
        self.enqueue(image, reply);
    }

    fn busy(&self) -> usize {
        self.shared.busy.load(Ordering::Relaxed)
    }
}

impl YoloDetector {
    fn enqueue(&self, image: Bytes, reply: DetectReply) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { image, reply }) {
            (job.reply)(Err(DetectError::Inference(
                "model workers have stopped".into(),
            )));
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn worker<R: ModelRunner>(mut runner: R, rx: Arc<Mutex<mpsc::Receiver<Job>>>, shared: Arc<Shared>) {
    let mut scratch = Scratch::default();
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return; // the detector was dropped
        };
        shared.busy.fetch_add(1, Ordering::Relaxed);
        // A panic (decoder, runtime binding) fails this request, not the worker.
        let result = catch_unwind(AssertUnwindSafe(|| {
            shared.process(&mut runner, &job.image, &mut scratch)
        }))
        .unwrap_or_else(|_| {
            scratch = Scratch::default();
            Err(DetectError::Inference("model run panicked".into()))
        });
        shared.busy.fetch_sub(1, Ordering::Relaxed);
        (job.reply)(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::encode_png;

    /// Emits one fixed `[1, 6, N]` output (2 classes) regardless of the input, after checking
    /// the input is a full letterboxed tensor.
    struct FakeRunner {
        output: Vec<f32>,
        n: usize,
    }

    impl ModelRunner for FakeRunner {
        fn run(&mut self, input: &[f32], output: &mut Vec<f32>) -> Result<Vec<usize>, String> {
            if input.len() != 3 * 64 * 64 {
                return Err(format!("input has {} values", input.len()));
            }
            if input.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return Err("input not normalised".into());
            }
            output.clear();
            output.extend_from_slice(&self.output);
            Ok(vec![1, 6, self.n])
        }
    }

    struct FailingRunner;

    impl ModelRunner for FailingRunner {
        fn run(&mut self, _: &[f32], _: &mut Vec<f32>) -> Result<Vec<usize>, String> {
            Err("device lost".into())
        }
    }

    fn spec() -> ModelSpec {
        ModelSpec {
            input_h: 64,
            input_w: 64,
            names: vec![Arc::from("Normal"), Arc::from("Fall")],
            layout: OutputLayout::Anchors,
        }
    }

    fn post() -> PostConfig {
        PostConfig {
            conf: 0.25,
            iou: 0.45,
            max_det: 300,
            max_pixels: 1_000_000,
        }
    }

    /// Anchors: two overlapping class-1 boxes and one class-0 box, centre-size on the canvas.
    fn fake() -> FakeRunner {
        let rows = [
            [32.0, 32.0, 20.0, 10.0, 0.1, 0.9],
            [33.0, 32.0, 20.0, 10.0, 0.1, 0.8],
            [10.0, 20.0, 4.0, 8.0, 0.7, 0.2],
            [50.0, 50.0, 4.0, 4.0, 0.1, 0.2],
        ];
        let n = rows.len();
        let mut output = vec![0.0; 6 * n];
        for (i, r) in rows.iter().enumerate() {
            for (c, v) in r.iter().enumerate() {
                output[c * n + i] = *v;
            }
        }
        FakeRunner { output, n }
    }

    fn image(w: u32, h: u32) -> Vec<u8> {
        encode_png(&vec![90u8; (w * h * 3) as usize], w, h).unwrap()
    }

    #[test]
    fn pipeline_returns_nms_boxes_in_original_coordinates() {
        let det = YoloDetector::new(spec(), post(), vec![fake()]).unwrap();
        // 128x64 image -> scale 0.5, canvas rows 16..48.
        let out = det.detect(&image(128, 64)).unwrap();
        assert_eq!(out.boxes.len(), 2, "{:?}", out.boxes);
        let b = &out.boxes[0];
        assert_eq!((b.class_id, &*b.label, b.score), (1, "Fall", 0.9));
        // Canvas (22, 27)-(42, 37) -> original ((22-0)/0.5, (27-16)/0.5) ...
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (44.0, 22.0, 84.0, 42.0));
        assert_eq!(out.boxes[1].label.as_ref(), "Normal");
        assert!(out.preprocess_ms >= 0.0 && out.inference_ms >= 0.0 && out.nms_ms >= 0.0);
        // Buffers are reused: a second call works the same.
        assert_eq!(det.detect(&image(128, 64)).unwrap().boxes, out.boxes);
    }

    #[test]
    fn decode_errors_and_runner_errors_are_reported() {
        let det = YoloDetector::new(spec(), post(), vec![fake()]).unwrap();
        assert!(matches!(
            det.detect(b"nope"),
            Err(DetectError::Decode(DecodeError::Unsupported))
        ));
        assert!(matches!(
            det.detect(&image(2000, 1000)),
            Err(DetectError::Decode(DecodeError::TooManyPixels { .. }))
        ));
        let det = YoloDetector::new(spec(), post(), vec![FailingRunner]).unwrap();
        assert_eq!(
            det.detect(&image(8, 8)),
            Err(DetectError::Inference("device lost".into()))
        );
    }

    #[test]
    fn wrong_output_shape_is_an_inference_error() {
        let mut s = spec();
        s.layout = OutputLayout::EndToEnd;
        let det = YoloDetector::new(s, post(), vec![fake()]).unwrap();
        assert!(matches!(
            det.detect(&image(8, 8)),
            Err(DetectError::Inference(_))
        ));
    }

    #[test]
    fn several_workers_serve_concurrent_callers() {
        let det = Arc::new(YoloDetector::new(spec(), post(), vec![fake(), fake()]).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let det = Arc::clone(&det);
                std::thread::spawn(move || det.detect(&image(64, 64)).map(|d| d.boxes.len()))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), Ok(2));
        }
        assert_eq!(det.busy(), 0);
    }
}
