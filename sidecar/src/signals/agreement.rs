//! How far gray agreed with stable on one frame both answered. Their boxes are matched
//! greedily by IoU (highest first, each box at most once, IoU >= [`MATCH_IOU`]): first within
//! the same class name, which gives the agreement F1 (`2·matched / (stable + gray)`, 1 when
//! both are empty) and the shares each side had alone; then the boxes still unmatched are
//! matched by position alone, whatever their class, which gives the class confusions (stable
//! said `Fall`, gray said `Normal` in the same place). [`Agreement`] is the value the
//! `x-canary-agreement` header carries. Pure: boxes in, counts out.

use std::collections::BTreeMap;

use crate::vision::layout::Candidate;
use crate::vision::nms::iou;

/// IoU at or above which a stable box and a gray box are the same object.
pub const MATCH_IOU: f32 = 0.5;

/// One box of a reply: its class name (each model's own label) and its corners in pixels of
/// the image both models saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Labelled<'a> {
    pub class: &'a str,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl Labelled<'_> {
    fn corners(&self) -> Candidate {
        Candidate {
            x1: self.x1,
            y1: self.y1,
            x2: self.x2,
            y2: self.y2,
            score: 0.0,
            class_id: 0,
        }
    }
}

/// The agreement of one frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameAgreement {
    /// Boxes in stable's answer.
    pub stable_boxes: usize,
    /// Boxes in gray's answer.
    pub gray_boxes: usize,
    /// Pairs matched with the same class.
    pub matched: usize,
    /// Stable boxes gray answered in the same place, by (stable class, gray class): the
    /// same-class matches and, where the classes differ, the confusions.
    pub by_class: BTreeMap<(String, String), usize>,
}

impl FrameAgreement {
    /// Matches `gray`'s boxes against `stable`'s.
    pub fn between(stable: &[Labelled<'_>], gray: &[Labelled<'_>]) -> FrameAgreement {
        let mut stable_taken = vec![false; stable.len()];
        let mut gray_taken = vec![false; gray.len()];
        let mut by_class = BTreeMap::new();
        let mut count = |pairs: Vec<(usize, usize)>| {
            for &(i, j) in &pairs {
                let key = (stable[i].class.to_string(), gray[j].class.to_string());
                *by_class.entry(key).or_insert(0) += 1;
            }
            pairs.len()
        };
        let matched = count(greedy(
            stable,
            gray,
            true,
            &mut stable_taken,
            &mut gray_taken,
        ));
        count(greedy(
            stable,
            gray,
            false,
            &mut stable_taken,
            &mut gray_taken,
        ));
        FrameAgreement {
            stable_boxes: stable.len(),
            gray_boxes: gray.len(),
            matched,
            by_class,
        }
    }

    /// Agreement F1 in [0, 1]: `2·matched / (stable + gray)`; 1 when both found nothing.
    pub fn f1(&self) -> f64 {
        match self.stable_boxes + self.gray_boxes {
            0 => 1.0,
            total => (2 * self.matched) as f64 / total as f64,
        }
    }

    /// The F1 as the header carries it.
    pub fn value(&self) -> Agreement {
        match self.stable_boxes + self.gray_boxes {
            0 => Agreement::ONE,
            // Integer arithmetic: rounded down exactly, so only full agreement reads 1.000.
            total => Agreement(((2 * self.matched * 1000) / total) as u16),
        }
    }

    /// Share of stable's boxes gray did not match (0 when stable found nothing).
    pub fn missed_share(&self) -> f64 {
        share(self.stable_boxes - self.matched, self.stable_boxes)
    }

    /// Share of gray's boxes stable did not have (0 when gray found nothing).
    pub fn extra_share(&self) -> f64 {
        share(self.gray_boxes - self.matched, self.gray_boxes)
    }

    /// `(stable class, gray class, boxes)` of the position matches whose classes differ.
    pub fn confusions(&self) -> impl Iterator<Item = (&str, &str, usize)> {
        self.by_class
            .iter()
            .filter(|((s, g), _)| s != g)
            .map(|((s, g), n)| (s.as_str(), g.as_str(), *n))
    }

    /// Stable boxes gray answered in the same place, whatever the class, by stable class.
    pub fn position_matched(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for ((s, _), n) in &self.by_class {
            *out.entry(s.as_str()).or_insert(0) += n;
        }
        out
    }
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Pairs `(stable, gray)` of boxes not yet taken with IoU >= [`MATCH_IOU`] (and the same class
/// when `same_class`), highest IoU first (ties: lower indices first), each box at most once;
/// marks them taken.
fn greedy(
    stable: &[Labelled<'_>],
    gray: &[Labelled<'_>],
    same_class: bool,
    stable_taken: &mut [bool],
    gray_taken: &mut [bool],
) -> Vec<(usize, usize)> {
    let gray_corners: Vec<Candidate> = gray.iter().map(Labelled::corners).collect();
    let mut pairs = Vec::new();
    for (i, s) in stable.iter().enumerate() {
        if stable_taken[i] {
            continue;
        }
        let corners = s.corners();
        for (j, g) in gray.iter().enumerate() {
            if gray_taken[j] || (same_class && s.class != g.class) {
                continue;
            }
            let overlap = iou(&corners, &gray_corners[j]);
            if overlap >= MATCH_IOU {
                pairs.push((overlap, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let mut out = Vec::new();
    for (_, i, j) in pairs {
        if !stable_taken[i] && !gray_taken[j] {
            stable_taken[i] = true;
            gray_taken[j] = true;
            out.push((i, j));
        }
    }
    out
}

/// The `x-canary-agreement` value: the agreement F1 in thousandths, rounded down, written
/// `0.833`, `1.000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Agreement(u16);

impl Agreement {
    /// Every box agreed.
    pub const ONE: Agreement = Agreement(1000);

    pub fn thousandths(self) -> u16 {
        self.0
    }

    /// The header value: a decimal in [0, 1] with three decimals.
    pub fn render(self) -> String {
        format!("{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(class: &str, x1: f32, y1: f32, x2: f32, y2: f32) -> Labelled<'_> {
        Labelled {
            class,
            x1,
            y1,
            x2,
            y2,
        }
    }

    #[test]
    fn both_empty_agree_fully_one_side_empty_not_at_all() {
        let none = FrameAgreement::between(&[], &[]);
        assert_eq!((none.f1(), none.value()), (1.0, Agreement::ONE));
        assert_eq!((none.missed_share(), none.extra_share()), (0.0, 0.0));

        let person = [b("Normal", 0.0, 0.0, 10.0, 10.0)];
        let missed = FrameAgreement::between(&person, &[]);
        assert_eq!(
            (missed.f1(), missed.value().render()),
            (0.0, "0.000".into())
        );
        assert_eq!((missed.missed_share(), missed.extra_share()), (1.0, 0.0));
        let extra = FrameAgreement::between(&[], &person);
        assert_eq!((extra.f1(), extra.value().render()), (0.0, "0.000".into()));
        assert_eq!((extra.missed_share(), extra.extra_share()), (0.0, 1.0));
    }

    #[test]
    fn same_boxes_agree_fully() {
        let boxes = [
            b("Normal", 182.9, 97.3, 289.3, 377.9),
            b("Fall", 50.0, 256.6, 211.0, 347.9),
        ];
        let a = FrameAgreement::between(&boxes, &boxes);
        assert_eq!((a.matched, a.value()), (2, Agreement::ONE));
        assert_eq!(a.confusions().count(), 0);
        assert_eq!(
            a.position_matched(),
            BTreeMap::from([("Fall", 1), ("Normal", 1)])
        );
    }

    #[test]
    fn matching_needs_an_iou_of_a_half_or_more() {
        let stable = [b("Normal", 0.0, 0.0, 3.0, 1.0)];
        // An overlap of 2 in a union of 4: exactly 0.5.
        let at = [b("Normal", 1.0, 0.0, 4.0, 1.0)];
        assert_eq!(iou(&stable[0].corners(), &at[0].corners()), 0.5);
        assert_eq!(FrameAgreement::between(&stable, &at).matched, 1);
        // 1.9 in 4.1: 0.46.
        let below = [b("Normal", 1.1, 0.0, 4.1, 1.0)];
        assert_eq!(FrameAgreement::between(&stable, &below).matched, 0);
    }

    #[test]
    fn greedy_takes_the_best_overlap_first_and_each_box_once() {
        // Two gray boxes over one stable box: the closer one matches, the other is extra.
        let stable = [b("Normal", 0.0, 0.0, 10.0, 10.0)];
        let gray = [
            b("Normal", 2.0, 0.0, 12.0, 10.0), // IoU 0.67
            b("Normal", 0.0, 0.0, 10.0, 9.0),  // IoU 0.9
        ];
        let a = FrameAgreement::between(&stable, &gray);
        assert_eq!((a.matched, a.stable_boxes, a.gray_boxes), (1, 1, 2));
        assert_eq!(a.value().render(), "0.666");
        assert_eq!((a.missed_share(), a.extra_share()), (0.0, 0.5));
        // Greedy, not an optimal assignment: A-X (0.90) goes first, which leaves B (only
        // over X, 0.60) and Y (only over A, 0.54) unmatched, where A-Y and B-X would have
        // matched both.
        let stable = [
            b("Normal", 0.0, 0.0, 10.0, 1.0), // A
            b("Normal", 3.0, 0.0, 13.0, 1.0), // B
        ];
        let gray = [
            b("Normal", 0.5, 0.0, 10.5, 1.0), // X
            b("Normal", -3.0, 0.0, 7.0, 1.0), // Y
        ];
        let a = FrameAgreement::between(&stable, &gray);
        assert_eq!(a.matched, 1);
        assert_eq!(a.value().render(), "0.500");
    }

    #[test]
    fn classes_must_agree_and_position_matches_count_confusions() {
        // The class-swapped model: the same boxes with the class names exchanged.
        let stable = [
            b("Normal", 182.9, 97.3, 289.3, 377.9),
            b("Fall", 50.0, 256.6, 211.0, 347.9),
            b("Fall", 400.0, 10.0, 450.0, 90.0),
        ];
        let gray = [
            b("Fall", 182.9, 97.3, 289.3, 377.9),
            b("Normal", 50.0, 256.6, 211.0, 347.9),
            b("Fall", 401.0, 10.0, 450.0, 90.0),
        ];
        let a = FrameAgreement::between(&stable, &gray);
        assert_eq!(a.matched, 1);
        assert_eq!(a.value().render(), "0.333");
        let confusions: Vec<_> = a.confusions().collect();
        assert_eq!(confusions, [("Fall", "Normal", 1), ("Normal", "Fall", 1)]);
        assert_eq!(
            a.position_matched(),
            BTreeMap::from([("Fall", 2), ("Normal", 1)])
        );
        // A same-class match is never taken for a confusion: gray's Fall over the stable
        // Fall wins even though a Normal box overlaps it more.
        let stable = [b("Fall", 0.0, 0.0, 10.0, 10.0)];
        let gray = [
            b("Normal", 0.0, 0.0, 10.0, 10.0),
            b("Fall", 1.0, 0.0, 11.0, 10.0),
        ];
        let a = FrameAgreement::between(&stable, &gray);
        assert_eq!(a.matched, 1);
        assert_eq!(a.confusions().count(), 0);
        assert_eq!(a.position_matched(), BTreeMap::from([("Fall", 1)]));
    }

    #[test]
    fn values_round_down_to_thousandths() {
        let frame = |matched, stable_boxes, gray_boxes| FrameAgreement {
            stable_boxes,
            gray_boxes,
            matched,
            by_class: BTreeMap::new(),
        };
        assert_eq!(frame(5, 6, 6).value().render(), "0.833");
        assert_eq!(frame(2, 3, 3).value().render(), "0.666");
        // 299 of 300 on both sides is 0.99667: not 1.
        assert_eq!(frame(299, 300, 300).value().render(), "0.996");
        assert_eq!(frame(3, 3, 3).value().render(), "1.000");
        assert_eq!(frame(0, 1, 2).value().render(), "0.000");
        assert_eq!(frame(1, 2, 2).value().thousandths(), 500);
    }
}
