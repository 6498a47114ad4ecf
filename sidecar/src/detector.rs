//! The seam between HTTP and the model. [`Detector`] turns an encoded image into boxes;
//! [`YoloDetector`] is the real pipeline (decode → letterbox → model run → output decode →
//! NMS → original-image coordinates) on dedicated model worker threads over any
//! [`ModelRunner`] (ONNX Runtime in production, a fake in unit tests), with dynamic batching
//! of concurrent requests when the model takes a batch. Handler tests use a fake `Detector`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ndarray::{ArrayView3, Axis};
use serde::Serialize;

use crate::model::runner::{ModelRunner, ModelSpec};
use crate::vision::decode::{DecodeError, decode_rgb};
use crate::vision::layout::{Candidate, OutputLayout, decode_anchors, decode_end_to_end};
use crate::vision::letterbox::{Letterbox, fill_tensor_reusing};
use crate::vision::nms::nms;

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
    /// The model run (input binding, run, output copy), shared by every image of its batch.
    pub inference_ms: f64,
    /// Output decode, NMS and rescaling.
    pub nms_ms: f64,
    /// Images in the model run that served this one (1 without batching).
    pub batch_size: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectError {
    /// The image could not be decoded (a client error).
    #[error(transparent)]
    Decode(DecodeError),
    /// The model failed (a server error).
    #[error("inference failed: {0}")]
    Inference(String),
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

    /// Requests a model worker has taken (being decoded, waiting for or in a model run); the
    /// rest of the admitted ones are queued.
    fn busy(&self) -> usize {
        0
    }
}

/// Post-processing and batching settings.
#[derive(Debug, Clone, Copy)]
pub struct PostConfig {
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
    pub max_pixels: u64,
    /// Most images per model run (only with a dynamic batch axis).
    pub max_batch: usize,
    /// Longest wait, from the first request's arrival, for a batch to fill.
    pub batch_wait: Duration,
    /// Two threads per session, so decoding overlaps the model run: right when the model
    /// runs on a GPU; on the CPU the cores belong to the model's own threads, and decoding
    /// beside them slows the run more than it saves (about 10 % fewer requests/s measured).
    pub overlap_decoding: bool,
}

/// Receives the outcome of one [`Detector::submit`]; called exactly once, on a model worker.
pub type DetectReply = Box<dyn FnOnce(Result<Detections, DetectError>) + Send>;

struct Job {
    image: Bytes,
    reply: DetectReply,
    arrived: Instant,
}

/// What every model worker shares.
struct Shared {
    spec: Arc<ModelSpec>,
    post: PostConfig,
    /// Images per run: `max_batch` for dynamic-batch models, else 1.
    batch: usize,
    busy: AtomicUsize,
}

/// Decoded-image scratch above this many bytes is released after use (a rare huge image
/// must not pin its buffer in every worker).
const KEEP_RGB_BYTES: usize = 32 * 1024 * 1024;

/// A batch being assembled or run, reused batch after batch: the input tensor (4.9 MB per
/// image at 640×640; allocating and faulting it in per request costs more than the NMS), the
/// geometry each slot was last filled with (so an unchanged letterbox border is not
/// repainted), and the requests in it.
#[derive(Default)]
struct Batch {
    input: Vec<f32>,
    filled: Vec<Option<Letterbox>>,
    pending: Vec<Pending>,
}

/// A worker thread's decoding scratch: the decoded RGB image and room to turn it upright.
#[derive(Default)]
struct Decoding {
    rgb: Vec<u8>,
    spare: Vec<u8>,
}

/// A request whose image is in a batch slot, waiting for the model run.
struct Pending {
    reply: DetectReply,
    lb: Letterbox,
    preprocess_ms: f64,
}

/// The YOLO pipeline on dedicated worker threads, one per model session (two with
/// `overlap_decoding`). A thread takes the oldest request, decodes it into its batch's first
/// slot and, for a dynamic-batch model, keeps taking queued requests (waiting up to
/// `batch_wait` for more) into the next slots until the batch is full; then it runs the batch
/// on the session and answers its requests. With two threads, one decodes the next requests
/// while the other holds the session (on a GPU, where the run takes a few milliseconds,
/// decoding would otherwise idle the device).
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
        let batch = if spec.dynamic_batch {
            post.max_batch.max(1)
        } else {
            1
        };
        let shared = Arc::new(Shared {
            spec: Arc::new(spec),
            post,
            batch,
            busy: AtomicUsize::new(0),
        });
        let halves: &[&str] = if post.overlap_decoding {
            &["a", "b"]
        } else {
            &["a"]
        };
        for (i, runner) in runners.into_iter().enumerate() {
            let runner = Arc::new(Mutex::new(runner));
            for half in halves {
                let (runner, rx, shared) =
                    (Arc::clone(&runner), Arc::clone(&rx), Arc::clone(&shared));
                std::thread::Builder::new()
                    .name(format!("gg-model-{i}{half}"))
                    .spawn(move || worker(runner, rx, shared))?;
            }
        }
        Ok(YoloDetector { shared, jobs: tx })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.shared.spec
    }

    /// Images one model run takes.
    pub fn batch_limit(&self) -> usize {
        self.shared.batch
    }
}

impl Shared {
    fn plane(&self) -> usize {
        3 * self.spec.input_w as usize * self.spec.input_h as usize
    }

    /// Decodes and letterboxes `image` into slot `slot` of the batch's input tensor.
    fn preprocess(
        &self,
        image: &[u8],
        slot: usize,
        b: &mut Batch,
        d: &mut Decoding,
    ) -> Result<Letterbox, DetectError> {
        let size = decode_rgb(image, self.post.max_pixels, &mut d.rgb, &mut d.spare)
            .map_err(DetectError::Decode)?;
        let lb = Letterbox::new(
            size.width,
            size.height,
            self.spec.input_w,
            self.spec.input_h,
        );
        let plane = lb.tensor_len();
        if b.input.len() < (slot + 1) * plane {
            b.input.resize((slot + 1) * plane, 0.0);
        }
        if b.filled.len() <= slot {
            b.filled.resize(slot + 1, None);
        }
        // Forget the old geometry first: if the fill fails half-way, the border is stale.
        let previous = b.filled[slot].take();
        let tensor = &mut b.input[slot * plane..(slot + 1) * plane];
        let filled = fill_tensor_reusing(&d.rgb, &lb, tensor, previous.as_ref());
        if d.rgb.capacity() > KEEP_RGB_BYTES {
            *d = Decoding::default();
        }
        filled.map_err(|e| DetectError::Inference(format!("pre-processing: {e}")))?;
        b.filled[slot] = Some(lb);
        Ok(lb)
    }

    /// Takes `job` into the batch's next slot, or answers it at once if its image is bad.
    fn admit(&self, job: Job, b: &mut Batch, d: &mut Decoding) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let slot = b.pending.len();
        // A panic in a decoder fails this request, not the worker.
        let result = catch_unwind(AssertUnwindSafe(|| self.preprocess(&job.image, slot, b, d)))
            .unwrap_or_else(|_| {
                b.filled.clear();
                *d = Decoding::default();
                Err(DetectError::Inference("pre-processing panicked".into()))
            });
        match result {
            Ok(lb) => b.pending.push(Pending {
                reply: job.reply,
                lb,
                preprocess_ms: ms_since(t0),
            }),
            Err(e) => {
                self.busy.fetch_sub(1, Ordering::Relaxed);
                (job.reply)(Err(e));
            }
        }
    }

    /// One model run over the batch, then each image's boxes to its caller.
    fn run_batch<R: ModelRunner>(&self, runner: &mut R, b: &mut Batch, output: &mut Vec<f32>) {
        let batch = std::mem::take(&mut b.pending);
        let n = batch.len();
        let t0 = Instant::now();
        let ran = catch_unwind(AssertUnwindSafe(|| {
            runner.run(&b.input[..n * self.plane()], n, output)
        }))
        .unwrap_or_else(|_| Err("model run panicked".into()));
        let inference_ms = ms_since(t0);
        let output = output.as_slice();
        for (i, p) in batch.into_iter().enumerate() {
            let t1 = Instant::now();
            let result = ran
                .as_ref()
                .map_err(|e| DetectError::Inference(e.clone()))
                .and_then(|shape| self.postprocess(output, shape, i, &p.lb))
                .map(|boxes| Detections {
                    boxes,
                    preprocess_ms: p.preprocess_ms,
                    inference_ms,
                    nms_ms: ms_since(t1),
                    batch_size: n,
                });
            self.busy.fetch_sub(1, Ordering::Relaxed);
            (p.reply)(result);
        }
    }

    /// Boxes of image `index` of a `[batch, ...]` output, in original-image pixels.
    fn postprocess(
        &self,
        output: &[f32],
        shape: &[usize],
        index: usize,
        lb: &Letterbox,
    ) -> Result<Vec<BoxOut>, DetectError> {
        let bad_shape = || {
            DetectError::Inference(format!(
                "model output shape {shape:?} ({} values) does not fit the {} layout",
                output.len(),
                self.spec.layout.as_str()
            ))
        };
        let &[batch, rows, cols] = shape else {
            return Err(bad_shape());
        };
        let view = ArrayView3::from_shape((batch, rows, cols), output).map_err(|_| bad_shape())?;
        if index >= batch {
            return Err(bad_shape());
        }
        let image = view.index_axis(Axis(0), index);
        let mut cands: Vec<Candidate> = Vec::new();
        let kept = match self.spec.layout {
            OutputLayout::Anchors => {
                decode_anchors(image, self.post.conf, &mut cands);
                nms(&mut cands, self.post.iou, self.post.max_det)
            }
            OutputLayout::EndToEnd if cols == 6 => {
                decode_end_to_end(image, self.post.conf, &mut cands);
                cands.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
                cands.truncate(self.post.max_det);
                cands
            }
            OutputLayout::EndToEnd => return Err(bad_shape()),
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
        let job = Job {
            image,
            reply,
            arrived: Instant::now(),
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            (job.reply)(Err(DetectError::Inference(
                "model workers have stopped".into(),
            )));
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// A model worker thread: takes requests from the queue into its own input buffer (forming a
/// batch when the model takes one), then runs the model under the session's lock and answers
/// them. With two threads per session, one decodes the next requests while the other runs
/// the model; either way a request is served on one thread from decoding to reply, with no
/// hand-off between threads.
fn worker<R: ModelRunner>(
    runner: Arc<Mutex<R>>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    shared: Arc<Shared>,
) {
    let mut batch = Batch::default();
    let mut decoding = Decoding::default();
    let mut output = Vec::new();
    loop {
        // Holding the queue while a batch fills keeps one batch's requests together; the
        // other threads take the requests after it.
        {
            let queue = match queue.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let Ok(first) = queue.recv() else {
                return; // the detector was dropped
            };
            let deadline = first.arrived + shared.post.batch_wait;
            shared.admit(first, &mut batch, &mut decoding);
            while batch.pending.len() < shared.batch {
                let next = match queue.try_recv() {
                    Ok(job) => Some(job),
                    Err(mpsc::TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            None
                        } else {
                            queue.recv_timeout(left).ok()
                        }
                    }
                    Err(mpsc::TryRecvError::Disconnected) => None,
                };
                match next {
                    Some(job) => shared.admit(job, &mut batch, &mut decoding),
                    None => break,
                }
            }
        }
        if batch.pending.is_empty() {
            continue; // every image was bad: nothing to run
        }
        let mut runner = match runner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        shared.run_batch(&mut *runner, &mut batch, &mut output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::decode::encode_png;

    /// Emits one fixed `[6, N]` output (2 classes) per image regardless of the input, after
    /// checking the input is `batch` full letterboxed tensors; records the batch sizes.
    struct FakeRunner {
        output: Vec<f32>,
        n: usize,
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl ModelRunner for FakeRunner {
        fn run(
            &mut self,
            input: &[f32],
            batch: usize,
            output: &mut Vec<f32>,
        ) -> Result<Vec<usize>, String> {
            if input.len() != batch * 3 * 64 * 64 {
                return Err(format!("input has {} values for {batch}", input.len()));
            }
            if input.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return Err("input not normalised".into());
            }
            self.batches.lock().unwrap().push(batch);
            output.clear();
            for _ in 0..batch {
                output.extend_from_slice(&self.output);
            }
            Ok(vec![batch, 6, self.n])
        }
    }

    struct FailingRunner;

    impl ModelRunner for FailingRunner {
        fn run(&mut self, _: &[f32], _: usize, _: &mut Vec<f32>) -> Result<Vec<usize>, String> {
            Err("device lost".into())
        }
    }

    fn spec() -> ModelSpec {
        ModelSpec {
            input_h: 64,
            input_w: 64,
            names: vec![Arc::from("Normal"), Arc::from("Fall")],
            layout: OutputLayout::Anchors,
            dynamic_batch: false,
        }
    }

    fn post() -> PostConfig {
        PostConfig {
            conf: 0.25,
            iou: 0.45,
            max_det: 300,
            max_pixels: 1_000_000,
            max_batch: 8,
            batch_wait: Duration::ZERO,
            overlap_decoding: false,
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
        FakeRunner {
            output,
            n,
            batches: Arc::default(),
        }
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
        // Two sessions, two threads each.
        let mut p = post();
        p.overlap_decoding = true;
        let det = Arc::new(YoloDetector::new(spec(), p, vec![fake(), fake()]).unwrap());
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

    #[test]
    fn concurrent_requests_share_one_run_and_get_the_unbatched_answers() {
        let mut s = spec();
        s.dynamic_batch = true;
        let mut p = post();
        p.max_batch = 3;
        // Long enough that the three callers below all arrive inside the first one's wait.
        p.batch_wait = Duration::from_millis(500);
        let runner = fake();
        let batches = Arc::clone(&runner.batches);
        let det = Arc::new(YoloDetector::new(s, p, vec![runner]).unwrap());
        assert_eq!(det.batch_limit(), 3);
        let alone = YoloDetector::new(spec(), post(), vec![fake()]).unwrap();
        let images = [image(128, 64), image(64, 128), image(80, 80)];
        let handles: Vec<_> = images
            .iter()
            .cloned()
            .map(|img| {
                let det = Arc::clone(&det);
                std::thread::spawn(move || det.detect(&img).unwrap())
            })
            .collect();
        let batched: Vec<Detections> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(*batches.lock().unwrap(), [3]);
        for (img, got) in images.iter().zip(&batched) {
            assert_eq!(got.batch_size, 3);
            // Each image keeps its own letterbox geometry inside the batch.
            assert_eq!(got.boxes, alone.detect(img).unwrap().boxes);
        }
        // A bad image in a batch fails alone; the rest is served.
        let bad = {
            let det = Arc::clone(&det);
            std::thread::spawn(move || det.detect(b"nope"))
        };
        let good = det.detect(&image(64, 64)).unwrap();
        assert!(bad.join().unwrap().is_err());
        assert_eq!(good.boxes.len(), 2);
        assert_eq!(det.busy(), 0);
    }

    #[test]
    fn fixed_batch_models_run_one_image_at_a_time() {
        let det = YoloDetector::new(spec(), post(), vec![fake()]).unwrap();
        assert_eq!(det.batch_limit(), 1);
        assert_eq!(det.detect(&image(64, 64)).unwrap().batch_size, 1);
    }
}
