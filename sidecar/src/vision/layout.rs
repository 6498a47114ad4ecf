//! Decoding of the raw model output into candidate boxes, for the two Ultralytics detection
//! layouts: `[1, 4+C, N]` (YOLOv5u/v8/11: centre-size boxes and per-class scores per anchor)
//! and end-to-end `[1, N, 6]` (YOLOv10: `x1, y1, x2, y2, score, class`, already de-duplicated).
//! The batch axis may be dynamic (`-1`); each image's part is decoded through an `ndarray`
//! view of the batch output, without copying.

use ndarray::ArrayView2;

/// How the output tensor is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLayout {
    /// `[1, 4 + C, N]`: needs class-wise NMS.
    Anchors,
    /// `[1, N, 6]`: NMS-free.
    EndToEnd,
}

impl OutputLayout {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputLayout::Anchors => "anchors",
            OutputLayout::EndToEnd => "end2end",
        }
    }
}

/// A box in model-input (letterbox canvas) pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class_id: usize,
}

/// Why an output shape cannot be decoded as detections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

/// Works out the layout of an output of `shape` (dynamic dims are negative), for a model with
/// `classes` class names when known. `forced` overrides the guess but is still checked.
pub fn resolve(
    shape: &[i64],
    classes: Option<usize>,
    forced: Option<OutputLayout>,
) -> Result<OutputLayout, LayoutError> {
    let [batch, a, b] = shape else {
        return Err(LayoutError(format!(
            "output has shape {shape:?}; a detection model has a 3-D output [1, 4+C, N] or [1, N, 6]"
        )));
    };
    if *batch > 1 {
        return Err(LayoutError(format!(
            "output batch size is fixed at {batch}; export the model with batch=1 or a dynamic batch"
        )));
    }
    let anchors_ok =
        |rows: i64| rows < 0 || (rows > 4 && classes.is_none_or(|c| rows == 4 + c as i64));
    let layout = match forced {
        Some(l) => l,
        // End-to-end rows are exactly 6 wide and there are more rows than columns; the anchor
        // layout has few channels (4 + C) and thousands of anchors.
        None if *b == 6 && (*a < 0 || *a > 6) => OutputLayout::EndToEnd,
        None if anchors_ok(*a) => OutputLayout::Anchors,
        None => {
            return Err(LayoutError(format!(
                "output shape {shape:?} is neither [1, 4+C, N]{} nor [1, N, 6]",
                classes
                    .map(|c| format!(" with C = {c}"))
                    .unwrap_or_default()
            )));
        }
    };
    match layout {
        OutputLayout::Anchors if !anchors_ok(*a) => Err(LayoutError(format!(
            "output shape {shape:?} is not [1, 4+C, N]{}",
            classes
                .map(|c| format!(" with C = {c}"))
                .unwrap_or_default()
        ))),
        OutputLayout::EndToEnd if *b >= 0 && *b != 6 => Err(LayoutError(format!(
            "output shape {shape:?} is not [1, N, 6]"
        ))),
        l => Ok(l),
    }
}

/// Decodes one image's `[4 + C, N]` output view: anchors whose best class score is above
/// `conf` become candidates (Ultralytics' `> conf_thres`; ties keep the first class, as
/// `argmax` does).
pub fn decode_anchors(data: ArrayView2<'_, f32>, conf: f32, out: &mut Vec<Candidate>) {
    out.clear();
    let (channels, anchors) = data.dim();
    if channels <= 4 {
        return;
    }
    // Class rows are contiguous: scanning them row by row keeps the reads sequential even
    // for 80-class models, instead of striding across rows per anchor.
    let mut best = data.row(4).to_vec();
    let mut best_class = vec![0u16; anchors];
    for (c, row) in data.outer_iter().enumerate().skip(5) {
        let class = u16::try_from(c - 4).unwrap_or(u16::MAX);
        for ((b, bc), &s) in best.iter_mut().zip(best_class.iter_mut()).zip(row.iter()) {
            if s > *b {
                *b = s;
                *bc = class;
            }
        }
    }
    let (cx, cy, w, h) = (data.row(0), data.row(1), data.row(2), data.row(3));
    for (i, &score) in best.iter().enumerate() {
        // `>` also drops NaN scores.
        if score > conf {
            let (hw, hh) = (w[i] / 2.0, h[i] / 2.0);
            out.push(Candidate {
                x1: cx[i] - hw,
                y1: cy[i] - hh,
                x2: cx[i] + hw,
                y2: cy[i] + hh,
                score,
                class_id: usize::from(best_class[i]),
            });
        }
    }
}

/// Decodes one image's `[N, 6]` rows `x1, y1, x2, y2, score, class` above `conf`.
pub fn decode_end_to_end(data: ArrayView2<'_, f32>, conf: f32, out: &mut Vec<Candidate>) {
    out.clear();
    if data.ncols() != 6 {
        return;
    }
    for row in data.outer_iter() {
        let (score, class) = (row[4], row[5]);
        if score > conf && class.is_finite() && class >= 0.0 {
            out.push(Candidate {
                x1: row[0],
                y1: row[1],
                x2: row[2],
                y2: row[3],
                score,
                class_id: class as usize,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_both_layouts_and_rejects_others() {
        assert_eq!(
            resolve(&[1, 6, 8400], Some(2), None),
            Ok(OutputLayout::Anchors)
        );
        assert_eq!(
            resolve(&[1, 84, 8400], None, None),
            Ok(OutputLayout::Anchors)
        );
        assert_eq!(
            resolve(&[1, 300, 6], Some(80), None),
            Ok(OutputLayout::EndToEnd)
        );
        assert_eq!(
            resolve(&[-1, -1, 6], None, None),
            Ok(OutputLayout::EndToEnd)
        );
        // Classification head, wrong class count, 4-D outputs: not detection models.
        assert!(resolve(&[1, 1000], None, None).is_err());
        assert!(resolve(&[1, 84, 8400], Some(2), None).is_err());
        assert!(resolve(&[1, 3, 80, 80], None, None).is_err());
        assert!(resolve(&[8, 6, 8400], None, None).is_err());
        // Overrides are honoured when the shape allows them, refused when it cannot fit.
        assert_eq!(
            resolve(&[1, 6, 6], Some(2), Some(OutputLayout::EndToEnd)),
            Ok(OutputLayout::EndToEnd)
        );
        assert!(resolve(&[1, 300, 6], Some(80), Some(OutputLayout::Anchors)).is_err());
        assert!(resolve(&[1, 6, 8400], None, Some(OutputLayout::EndToEnd)).is_err());
    }

    /// Builds a `[1, 4 + C, N]` tensor from per-anchor (cx, cy, w, h, scores).
    fn anchors(rows: &[(f32, f32, f32, f32, &[f32])]) -> (Vec<f32>, usize) {
        let n = rows.len();
        let c = rows[0].4.len();
        let mut data = vec![0.0; (4 + c) * n];
        for (i, (cx, cy, w, h, s)) in rows.iter().enumerate() {
            data[i] = *cx;
            data[n + i] = *cy;
            data[2 * n + i] = *w;
            data[3 * n + i] = *h;
            for (k, v) in s.iter().enumerate() {
                data[(4 + k) * n + i] = *v;
            }
        }
        (data, 4 + c)
    }

    #[test]
    fn anchors_layout_takes_the_best_class_and_converts_to_corners() {
        let (data, ch) = anchors(&[
            (100.0, 50.0, 20.0, 10.0, &[0.1, 0.9, 0.3]),
            (10.0, 10.0, 4.0, 4.0, &[0.2, 0.1, 0.05]),
            (300.0, 300.0, 60.0, 80.0, &[0.5, 0.5, f32::NAN]),
        ]);
        let mut out = Vec::new();
        decode_anchors(
            ArrayView2::from_shape((ch, 3), &data).unwrap(),
            0.25,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            Candidate {
                x1: 90.0,
                y1: 45.0,
                x2: 110.0,
                y2: 55.0,
                score: 0.9,
                class_id: 1
            }
        );
        // Ties keep the first class; NaN scores never win.
        assert_eq!(out[1].class_id, 0);
        assert_eq!((out[1].x1, out[1].y2), (270.0, 340.0));
        // Threshold is strict.
        decode_anchors(
            ArrayView2::from_shape((ch, 3), &data).unwrap(),
            0.9,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn anchors_layout_without_class_rows_is_empty() {
        let mut out = vec![Candidate {
            x1: 0.0,
            y1: 0.0,
            x2: 1.0,
            y2: 1.0,
            score: 1.0,
            class_id: 0,
        }];
        decode_anchors(
            ArrayView2::from_shape((4, 2), &[0.0; 8]).unwrap(),
            0.25,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn end_to_end_layout_filters_by_score() {
        let data = [
            1.0,
            2.0,
            3.0,
            4.0,
            0.8,
            2.0, //
            5.0,
            6.0,
            7.0,
            8.0,
            0.1,
            0.0, //
            0.0,
            0.0,
            1.0,
            1.0,
            0.9,
            -1.0, //
            0.0,
            0.0,
            1.0,
            1.0,
            0.9,
            f32::NAN,
        ];
        let mut out = Vec::new();
        decode_end_to_end(
            ArrayView2::from_shape((4, 6), &data).unwrap(),
            0.25,
            &mut out,
        );
        assert_eq!(
            out,
            vec![Candidate {
                x1: 1.0,
                y1: 2.0,
                x2: 3.0,
                y2: 4.0,
                score: 0.8,
                class_id: 2
            }]
        );
    }
}
