//! Concurrent requests onto the model workers: one queue, one worker thread per model session
//! (two with `overlap_decoding`, so that decoding overlaps the model run), and dynamic
//! batching. A worker takes the oldest request and, for a dynamic-batch model, keeps taking
//! queued ones (waiting up to `batch_wait` from the first one's arrival for more) into the
//! next slots until the batch is full; then it runs the batch through the [`Pipeline`] under
//! the session's lock and answers each request. A request is served on one thread from
//! decoding to reply, with no hand-off between threads. Each worker notes, by the injected
//! clock, when its current model run began, so that a run that never returns is seen
//! ([`Detector::running_since`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::detector::{DetectError, DetectReply, Detections, Detector};
use super::pipeline::{Pipeline, Prepared, Scratch};
use crate::clock::Clock;
use crate::model::runner::{ModelRunner, ModelSpec};

/// How requests are batched onto the workers.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Most images per model run (only with a dynamic batch axis).
    pub max_batch: usize,
    /// Longest wait, from the first request's arrival, for a batch to fill.
    pub batch_wait: Duration,
    /// Two threads per session, so decoding overlaps the model run: right when the model
    /// runs on a GPU; on the CPU the cores belong to the model's own threads, and decoding
    /// beside them slows the run more than it saves (about 10 % fewer requests/s measured).
    pub overlap_decoding: bool,
}

struct Job {
    image: Bytes,
    reply: DetectReply,
    /// When it was queued, by the system's monotonic clock: the batch wait is a real wait on
    /// the queue (see [`crate::clock`]).
    arrived: Instant,
}

/// What every model worker shares.
struct Shared {
    pipeline: Pipeline,
    batch_wait: Duration,
    /// Images per run: `max_batch` for dynamic-batch models, else 1.
    batch: usize,
    busy: AtomicUsize,
    /// When each worker thread's current model run began (`None`: not running), by `clock`.
    runs: Mutex<Vec<Option<Instant>>>,
    clock: Arc<dyn Clock>,
}

/// A request whose image is in a batch slot, waiting for the model run.
struct Pending {
    reply: DetectReply,
    prepared: Prepared,
}

/// The [`Detector`] of a loaded model: its requests queued and batched onto dedicated worker
/// threads, one per model session (two with `overlap_decoding`; on a GPU, where the run takes
/// a few milliseconds, decoding would otherwise idle the device).
pub struct Batcher {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the worker threads of each runner; `clock` times their runs for
    /// [`Detector::running_since`].
    pub fn new<R: ModelRunner>(
        pipeline: Pipeline,
        cfg: BatchConfig,
        runners: Vec<R>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let batch = if pipeline.spec().dynamic_batch {
            cfg.max_batch.max(1)
        } else {
            1
        };
        let halves: &[&str] = if cfg.overlap_decoding {
            &["a", "b"]
        } else {
            &["a"]
        };
        let shared = Arc::new(Shared {
            pipeline,
            batch_wait: cfg.batch_wait,
            batch,
            busy: AtomicUsize::new(0),
            runs: Mutex::new(vec![None; runners.len() * halves.len()]),
            clock,
        });
        let mut slot = 0;
        for (i, runner) in runners.into_iter().enumerate() {
            let runner = Arc::new(Mutex::new(runner));
            for half in halves {
                let (runner, rx, shared) =
                    (Arc::clone(&runner), Arc::clone(&rx), Arc::clone(&shared));
                std::thread::Builder::new()
                    .name(format!("gg-model-{i}{half}"))
                    .spawn(move || worker(runner, rx, shared, slot))?;
                slot += 1;
            }
        }
        Ok(Batcher { shared, jobs: tx })
    }

    pub fn spec(&self) -> &ModelSpec {
        self.shared.pipeline.spec()
    }

    /// Images one model run takes.
    pub fn batch_limit(&self) -> usize {
        self.shared.batch
    }

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

/// A worker's model run in progress: noted when it begins, cleared when it returns (or
/// panics), for [`Detector::running_since`].
struct Running<'a> {
    shared: &'a Shared,
    slot: usize,
}

impl<'a> Running<'a> {
    fn begin(shared: &'a Shared, slot: usize) -> Running<'a> {
        shared.note_run(slot, Some(shared.clock.now()));
        Running { shared, slot }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.shared.note_run(self.slot, None);
    }
}

impl Shared {
    fn note_run(&self, slot: usize, began: Option<Instant>) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = runs.get_mut(slot) {
            *r = began;
        }
    }

    /// Takes `job` into the batch's next slot, or answers it at once if its image is bad.
    fn admit(&self, job: Job, pending: &mut Vec<Pending>, s: &mut Scratch) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        match self.pipeline.prepare(&job.image, pending.len(), s) {
            Ok(prepared) => pending.push(Pending {
                reply: job.reply,
                prepared,
            }),
            Err(e) => {
                self.busy.fetch_sub(1, Ordering::Relaxed);
                (job.reply)(Err(e));
            }
        }
    }

    /// One model run over the batch (noted in worker `slot`'s entry while it lasts), then
    /// each image's boxes to its caller.
    fn run_batch<R: ModelRunner>(
        &self,
        runner: &mut R,
        pending: &mut Vec<Pending>,
        s: &mut Scratch,
        slot: usize,
    ) {
        let batch = std::mem::take(pending);
        let ran = {
            let _running = Running::begin(self, slot);
            self.pipeline.run(runner, batch.len(), s)
        };
        for (i, p) in batch.into_iter().enumerate() {
            let result = self.pipeline.finish(&ran, i, &p.prepared, s);
            self.busy.fetch_sub(1, Ordering::Relaxed);
            (p.reply)(result);
        }
    }
}

impl Detector for Batcher {
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

    fn running_since(&self) -> Option<Instant> {
        let runs = self.shared.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.iter().flatten().min().copied()
    }
}

/// A model worker thread: takes requests from the queue into its own input buffer (forming a
/// batch when the model takes one), then runs the model under the session's lock and answers
/// them. With two threads per session, one decodes the next requests while the other runs
/// the model.
fn worker<R: ModelRunner>(
    runner: Arc<Mutex<R>>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    shared: Arc<Shared>,
    slot: usize,
) {
    let mut scratch = Scratch::default();
    let mut pending = Vec::new();
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
            let deadline = first.arrived + shared.batch_wait;
            shared.admit(first, &mut pending, &mut scratch);
            while pending.len() < shared.batch {
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
                    Some(job) => shared.admit(job, &mut pending, &mut scratch),
                    None => break,
                }
            }
        }
        if pending.is_empty() {
            continue; // every image was bad: nothing to run
        }
        let mut runner = match runner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        shared.run_batch(&mut *runner, &mut pending, &mut scratch, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use crate::detect::fake::{FailingRunner, GatedRunner, config, fake, image, spec};
    use crate::vision::decode::DecodeError;

    fn batching() -> BatchConfig {
        BatchConfig {
            max_batch: 8,
            batch_wait: Duration::ZERO,
            overlap_decoding: false,
        }
    }

    fn batcher<R: ModelRunner>(spec: ModelSpec, cfg: BatchConfig, runners: Vec<R>) -> Batcher {
        Batcher::new(
            Pipeline::new(spec, config()),
            cfg,
            runners,
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    #[test]
    fn decode_errors_and_runner_errors_are_reported() {
        let det = batcher(spec(), batching(), vec![fake()]);
        assert!(matches!(
            det.detect(b"nope"),
            Err(DetectError::Decode(DecodeError::Unsupported))
        ));
        assert!(matches!(
            det.detect(&image(2000, 1000)),
            Err(DetectError::Decode(DecodeError::TooManyPixels { .. }))
        ));
        let det = batcher(spec(), batching(), vec![FailingRunner]);
        assert_eq!(
            det.detect(&image(8, 8)),
            Err(DetectError::Inference("device lost".into()))
        );
        assert_eq!(det.busy(), 0);
    }

    #[test]
    fn several_workers_serve_concurrent_callers() {
        // Two sessions, two threads each.
        let mut b = batching();
        b.overlap_decoding = true;
        let det = Arc::new(batcher(spec(), b, vec![fake(), fake()]));
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
        let mut b = batching();
        b.max_batch = 3;
        // Long enough that the three callers below all arrive inside the first one's wait.
        b.batch_wait = Duration::from_millis(500);
        let runner = fake();
        let batches = Arc::clone(&runner.batches);
        let det = Arc::new(batcher(s, b, vec![runner]));
        assert_eq!(det.batch_limit(), 3);
        let alone = batcher(spec(), batching(), vec![fake()]);
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
        let det = batcher(spec(), batching(), vec![fake()]);
        assert_eq!(det.batch_limit(), 1);
        assert_eq!(det.detect(&image(64, 64)).unwrap().batch_size, 1);
    }

    #[test]
    fn a_run_in_progress_is_seen_from_its_start_until_it_returns() {
        let clock = Arc::new(ManualClock::new());
        let (runner, gate) = GatedRunner::new(fake());
        let det = Arc::new(
            Batcher::new(
                Pipeline::new(spec(), config()),
                batching(),
                vec![runner],
                clock.clone(),
            )
            .unwrap(),
        );
        assert_eq!(det.running_since(), None);
        let started = clock.now();
        let held = {
            let det = Arc::clone(&det);
            std::thread::spawn(move || det.detect(&image(64, 64)))
        };
        gate.wait_entered();
        // The run began at `started` and is still going however late it is looked at.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(det.running_since(), Some(started));
        gate.open();
        assert_eq!(held.join().unwrap().unwrap().boxes.len(), 2);
        assert_eq!(det.running_since(), None);
    }
}
