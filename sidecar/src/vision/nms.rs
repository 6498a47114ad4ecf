//! Class-wise greedy non-maximum suppression (the torchvision/Ultralytics rule: a box is
//! dropped when its IoU with a higher-scoring kept box of the same class is *greater* than the
//! threshold; exactly at the threshold it is kept).

use super::layout::Candidate;

/// Intersection over union of two corner-form boxes; 0 for degenerate boxes.
pub fn iou(a: &Candidate, b: &Candidate) -> f32 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

fn area(c: &Candidate) -> f32 {
    (c.x2 - c.x1).max(0.0) * (c.y2 - c.y1).max(0.0)
}

/// Keeps at most `max_det` boxes of `candidates` (consumed and re-ordered), highest score
/// first, suppressing same-class overlaps above `iou_threshold`.
pub fn nms(candidates: &mut Vec<Candidate>, iou_threshold: f32, max_det: usize) -> Vec<Candidate> {
    candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::with_capacity(max_det.min(candidates.len()));
    // Areas of the kept boxes, to avoid recomputing them for every comparison.
    let mut kept_area: Vec<f32> = Vec::with_capacity(kept.capacity());
    for c in candidates.drain(..) {
        if kept.len() >= max_det {
            break;
        }
        let ca = area(&c);
        let suppressed = kept.iter().zip(&kept_area).any(|(k, &ka)| {
            if k.class_id != c.class_id {
                return false;
            }
            let iw = (k.x2.min(c.x2) - k.x1.max(c.x1)).max(0.0);
            let ih = (k.y2.min(c.y2) - k.y1.max(c.y1)).max(0.0);
            let inter = iw * ih;
            let union = ka + ca - inter;
            union > 0.0 && inter / union > iou_threshold
        });
        if !suppressed {
            kept.push(c);
            kept_area.push(ca);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32, score: f32, class_id: usize) -> Candidate {
        Candidate {
            x1,
            y1,
            x2,
            y2,
            score,
            class_id,
        }
    }

    #[test]
    fn empty_input_gives_empty_output() {
        assert!(nms(&mut Vec::new(), 0.45, 300).is_empty());
    }

    #[test]
    fn overlapping_boxes_of_one_class_collapse_to_the_best() {
        let mut c = vec![
            b(0.0, 0.0, 10.0, 10.0, 0.6, 0),
            b(1.0, 1.0, 11.0, 11.0, 0.9, 0),
            b(50.0, 50.0, 60.0, 60.0, 0.5, 0),
        ];
        let kept = nms(&mut c, 0.45, 300);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.5);
    }

    #[test]
    fn suppression_is_class_wise() {
        let mut c = vec![
            b(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            b(0.0, 0.0, 10.0, 10.0, 0.8, 1),
        ];
        let kept = nms(&mut c, 0.45, 300);
        assert_eq!(
            kept.len(),
            2,
            "identical boxes of different classes both survive"
        );
    }

    #[test]
    fn iou_exactly_at_the_threshold_is_kept() {
        // Two 10x10 boxes overlapping by half: intersection 50, union 150, IoU = 1/3.
        let a = b(0.0, 0.0, 10.0, 10.0, 0.9, 0);
        let c = b(5.0, 0.0, 15.0, 10.0, 0.8, 0);
        let exact = iou(&a, &c);
        assert!((exact - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(
            nms(&mut vec![a, c], exact, 300).len(),
            2,
            "at the threshold: kept"
        );
        assert_eq!(
            nms(&mut vec![a, c], exact - 1e-4, 300).len(),
            1,
            "above: suppressed"
        );
    }

    #[test]
    fn max_det_caps_the_output_and_degenerate_boxes_do_not_panic() {
        let mut c: Vec<_> = (0..50)
            .map(|i| b(i as f32 * 20.0, 0.0, i as f32 * 20.0 + 10.0, 10.0, 0.5, 0))
            .collect();
        c.push(b(5.0, 5.0, 5.0, 5.0, 0.99, 0));
        c.push(b(f32::NAN, 0.0, 1.0, 1.0, 0.98, 0));
        let kept = nms(&mut c, 0.45, 10);
        assert_eq!(kept.len(), 10);
        assert_eq!(iou(&kept[0], &kept[0]), 0.0, "zero-area box has IoU 0");
    }
}
