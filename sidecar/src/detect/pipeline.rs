//! One image through the YOLO pipeline, in the steps a model worker takes: decode (EXIF
//! orientation applied) and letterbox into a slot of the batch's input tensor
//! ([`Pipeline::prepare`]), one model run over the filled slots ([`Pipeline::run`]), then each
//! image's part of the output decoded, suppressed (NMS) and mapped back to original-image
//! pixels ([`Pipeline::finish`]). No threads and no queue here: which images share a run is
//! the batcher's choice.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use ndarray::{ArrayView3, Axis};

use super::detector::{BoxOut, DetectError, Detections};
use crate::model::runner::{ModelRunner, ModelSpec};
use crate::vision::decode::decode_rgb;
use crate::vision::layout::{Candidate, OutputLayout, decode_anchors, decode_end_to_end};
use crate::vision::letterbox::{Letterbox, fill_tensor_reusing};
use crate::vision::nms::nms;

/// Thresholds and limits of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
    pub max_pixels: u64,
}

/// Decoded-image scratch above this many bytes is released after use (a rare huge image
/// must not pin its buffer in every worker).
const KEEP_RGB_BYTES: usize = 32 * 1024 * 1024;

/// A worker's buffers, reused batch after batch: the input tensor (4.9 MB per image at
/// 640×640; allocating and faulting it in per request costs more than the NMS), the geometry
/// each slot was last filled with (so an unchanged letterbox border is not repainted), the
/// model's output, and the decoded RGB image with room to turn it upright.
#[derive(Default)]
pub struct Scratch {
    input: Vec<f32>,
    filled: Vec<Option<Letterbox>>,
    output: Vec<f32>,
    rgb: Vec<u8>,
    spare: Vec<u8>,
}

impl Scratch {
    /// Drops the decoding buffers (after a huge image, or a decoder that panicked).
    fn release_decoding(&mut self) {
        self.rgb = Vec::new();
        self.spare = Vec::new();
    }
}

/// An image in its slot of the input tensor, waiting for the model run.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    lb: Letterbox,
    /// Decode + letterbox, ms.
    preprocess_ms: f64,
}

/// One model run over a batch: the output's shape (the values are in the worker's
/// [`Scratch`]) or why it failed, and its time.
#[derive(Debug)]
pub struct Ran {
    shape: Result<Vec<usize>, String>,
    inference_ms: f64,
    batch_size: usize,
}

/// The pipeline of one model: its spec and the thresholds.
pub struct Pipeline {
    spec: ModelSpec,
    cfg: PipelineConfig,
}

impl Pipeline {
    pub fn new(spec: ModelSpec, cfg: PipelineConfig) -> Pipeline {
        Pipeline { spec, cfg }
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Values of one image in the input tensor.
    fn plane(&self) -> usize {
        3 * self.spec.input_w as usize * self.spec.input_h as usize
    }

    /// Decodes and letterboxes `image` into slot `slot` of the input tensor. A panic in a
    /// decoder fails this image, not the worker.
    pub fn prepare(
        &self,
        image: &[u8],
        slot: usize,
        s: &mut Scratch,
    ) -> Result<Prepared, DetectError> {
        let t0 = Instant::now();
        let lb =
            catch_unwind(AssertUnwindSafe(|| self.fill(image, slot, s))).unwrap_or_else(|_| {
                s.filled.clear();
                s.release_decoding();
                Err(DetectError::Inference("pre-processing panicked".into()))
            })?;
        Ok(Prepared {
            lb,
            preprocess_ms: ms_since(t0),
        })
    }

    fn fill(&self, image: &[u8], slot: usize, s: &mut Scratch) -> Result<Letterbox, DetectError> {
        let size = decode_rgb(image, self.cfg.max_pixels, &mut s.rgb, &mut s.spare)
            .map_err(DetectError::Decode)?;
        let lb = Letterbox::new(
            size.width,
            size.height,
            self.spec.input_w,
            self.spec.input_h,
        );
        let plane = lb.tensor_len();
        if s.input.len() < (slot + 1) * plane {
            s.input.resize((slot + 1) * plane, 0.0);
        }
        if s.filled.len() <= slot {
            s.filled.resize(slot + 1, None);
        }
        // Forget the old geometry first: if the fill fails half-way, the border is stale.
        let previous = s.filled[slot].take();
        let tensor = &mut s.input[slot * plane..(slot + 1) * plane];
        let filled = fill_tensor_reusing(&s.rgb, &lb, tensor, previous.as_ref());
        if s.rgb.capacity() > KEEP_RGB_BYTES {
            s.release_decoding();
        }
        filled.map_err(|e| DetectError::Inference(format!("pre-processing: {e}")))?;
        s.filled[slot] = Some(lb);
        Ok(lb)
    }

    /// One model run over the first `n` slots. A panic in the runtime fails the run, not the
    /// worker.
    pub fn run<R: ModelRunner>(&self, runner: &mut R, n: usize, s: &mut Scratch) -> Ran {
        let t0 = Instant::now();
        let input = &s.input[..n * self.plane()];
        let output = &mut s.output;
        let shape = catch_unwind(AssertUnwindSafe(|| runner.run(input, n, output)))
            .unwrap_or_else(|_| Err("model run panicked".into()));
        Ran {
            shape,
            inference_ms: ms_since(t0),
            batch_size: n,
        }
    }

    /// The detections of the image `prepared` in slot `index` of the run `ran`.
    pub fn finish(
        &self,
        ran: &Ran,
        index: usize,
        prepared: &Prepared,
        s: &Scratch,
    ) -> Result<Detections, DetectError> {
        let t1 = Instant::now();
        ran.shape
            .as_ref()
            .map_err(|e| DetectError::Inference(e.clone()))
            .and_then(|shape| self.boxes(&s.output, shape, index, &prepared.lb))
            .map(|boxes| Detections {
                boxes,
                preprocess_ms: prepared.preprocess_ms,
                inference_ms: ran.inference_ms,
                nms_ms: ms_since(t1),
                batch_size: ran.batch_size,
            })
    }

    /// Boxes of image `index` of a `[batch, ...]` output, in original-image pixels.
    fn boxes(
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
                decode_anchors(image, self.cfg.conf, &mut cands);
                nms(&mut cands, self.cfg.iou, self.cfg.max_det)
            }
            OutputLayout::EndToEnd if cols == 6 => {
                decode_end_to_end(image, self.cfg.conf, &mut cands);
                cands.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
                cands.truncate(self.cfg.max_det);
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

/// Stage times are real work on the worker's own thread, timed by the system's monotonic
/// clock (see [`crate::clock`]).
fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::fake::{config, fake, image, spec};

    /// One image alone through the pipeline, as a worker takes it.
    fn detect(
        p: &Pipeline,
        runner: &mut impl ModelRunner,
        s: &mut Scratch,
        image: &[u8],
    ) -> Result<Detections, DetectError> {
        let prepared = p.prepare(image, 0, s)?;
        let ran = p.run(runner, 1, s);
        p.finish(&ran, 0, &prepared, s)
    }

    #[test]
    fn pipeline_returns_nms_boxes_in_original_coordinates() {
        let p = Pipeline::new(spec(), config());
        let (mut runner, mut s) = (fake(), Scratch::default());
        // 128x64 image -> scale 0.5, canvas rows 16..48.
        let out = detect(&p, &mut runner, &mut s, &image(128, 64)).unwrap();
        assert_eq!(out.boxes.len(), 2, "{:?}", out.boxes);
        let b = &out.boxes[0];
        assert_eq!((b.class_id, &*b.label, b.score), (1, "Fall", 0.9));
        // Canvas (22, 27)-(42, 37) -> original ((22-0)/0.5, (27-16)/0.5) ...
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (44.0, 22.0, 84.0, 42.0));
        assert_eq!(out.boxes[1].label.as_ref(), "Normal");
        assert!(out.preprocess_ms >= 0.0 && out.inference_ms >= 0.0 && out.nms_ms >= 0.0);
        // Buffers are reused: a second call works the same.
        let again = detect(&p, &mut runner, &mut s, &image(128, 64)).unwrap();
        assert_eq!(again.boxes, out.boxes);
    }

    #[test]
    fn each_slot_of_a_run_keeps_its_own_geometry() {
        let p = Pipeline::new(spec(), config());
        let (mut runner, mut s) = (fake(), Scratch::default());
        let images = [image(128, 64), image(64, 128)];
        let alone: Vec<_> = images
            .iter()
            .map(|img| detect(&p, &mut runner, &mut Scratch::default(), img).unwrap())
            .collect();
        let prepared: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(slot, img)| p.prepare(img, slot, &mut s).unwrap())
            .collect();
        let ran = p.run(&mut runner, 2, &mut s);
        for (i, (prep, one)) in prepared.iter().zip(&alone).enumerate() {
            let got = p.finish(&ran, i, prep, &s).unwrap();
            assert_eq!(got.batch_size, 2);
            assert_eq!(got.boxes, one.boxes, "slot {i}");
        }
        assert_ne!(alone[0].boxes, alone[1].boxes, "the two geometries differ");
    }

    #[test]
    fn wrong_output_shape_is_an_inference_error() {
        let mut sp = spec();
        sp.layout = OutputLayout::EndToEnd;
        let p = Pipeline::new(sp, config());
        assert!(matches!(
            detect(&p, &mut fake(), &mut Scratch::default(), &image(8, 8)),
            Err(DetectError::Inference(_))
        ));
    }
}
