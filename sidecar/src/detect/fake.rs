//! A fake model for the detect layer's unit tests: a 64×64 input, two classes, and runners
//! that answer fixed boxes (or fail, or hold their run until a test lets it go) whatever the
//! image, so that the pipeline's geometry and the batcher's queueing and run tracking are
//! tested without ONNX Runtime.

use std::sync::{Arc, Condvar, Mutex};

use super::pipeline::PipelineConfig;
use crate::model::runner::{ModelRunner, ModelSpec};
use crate::vision::decode::encode_png;
use crate::vision::layout::OutputLayout;

/// Emits one fixed `[6, N]` output (2 classes) per image regardless of the input, after
/// checking the input is `batch` full letterboxed tensors; records the batch sizes.
pub struct FakeRunner {
    output: Vec<f32>,
    n: usize,
    pub batches: Arc<Mutex<Vec<usize>>>,
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

/// A runner whose every run fails.
pub struct FailingRunner;

impl ModelRunner for FailingRunner {
    fn run(&mut self, _: &[f32], _: usize, _: &mut Vec<f32>) -> Result<Vec<usize>, String> {
        Err("device lost".into())
    }
}

/// Where a [`GatedRunner`]'s run stands.
#[derive(Default)]
struct GateState {
    entered: bool,
    open: bool,
}

/// Holds a [`GatedRunner`]'s runs until the test opens it; tells when a run has entered.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    /// Waits until a run has entered the gate.
    pub fn wait_entered(&self) {
        let state = self.state.lock().unwrap();
        let _state = self.changed.wait_while(state, |s| !s.entered).unwrap();
    }

    /// Lets every held and later run through.
    pub fn open(&self) {
        self.state.lock().unwrap().open = true;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.entered = true;
        self.changed.notify_all();
        let _state = self.changed.wait_while(state, |s| !s.open).unwrap();
    }
}

/// A runner whose runs wait at a [`Gate`] before answering as `inner` does: a model run that
/// takes as long as the test wants.
pub struct GatedRunner<R> {
    inner: R,
    gate: Arc<Gate>,
}

impl<R: ModelRunner> GatedRunner<R> {
    pub fn new(inner: R) -> (GatedRunner<R>, Arc<Gate>) {
        let gate = Arc::new(Gate::default());
        let runner = GatedRunner {
            inner,
            gate: Arc::clone(&gate),
        };
        (runner, gate)
    }
}

impl<R: ModelRunner> ModelRunner for GatedRunner<R> {
    fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        output: &mut Vec<f32>,
    ) -> Result<Vec<usize>, String> {
        self.gate.pass();
        self.inner.run(input, batch, output)
    }
}

pub fn spec() -> ModelSpec {
    ModelSpec {
        input_h: 64,
        input_w: 64,
        names: vec![Arc::from("Normal"), Arc::from("Fall")],
        layout: OutputLayout::Anchors,
        dynamic_batch: false,
    }
}

pub fn config() -> PipelineConfig {
    PipelineConfig {
        conf: 0.25,
        iou: 0.45,
        max_det: 300,
        max_pixels: 1_000_000,
    }
}

/// Anchors: two overlapping class-1 boxes and one class-0 box, centre-size on the canvas.
pub fn fake() -> FakeRunner {
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

/// A flat grey PNG of `w`×`h`.
pub fn image(w: u32, h: u32) -> Vec<u8> {
    encode_png(&vec![90u8; (w * h * 3) as usize], w, h).unwrap()
}
