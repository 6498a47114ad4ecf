//! Letterbox geometry (the Ultralytics convention: keep the aspect ratio, centre the image on a
//! grey canvas) and the fused resize + pad + normalise that writes a decoded RGB image straight
//! into the model's planar CHW `f32` input tensor, with no intermediate image.
//!
//! The resize is OpenCV's `INTER_LINEAR` on 8-bit pixels reproduced to the bit: 11-bit fixed
//! point weights rounded from `f32` coordinates, a horizontal pass into `i32`, and the vertical
//! blend with the same shifts and rounding as OpenCV's vectorised path, giving the same `u8`
//! values the reference pipeline feeds the model (then `/ 255`).

/// Grey level of the letterbox border (Ultralytics pads with 114).
pub const PAD_VALUE: u8 = 114;

/// Where an image of `src_w`×`src_h` pixels lands on a `dst_w`×`dst_h` canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Original image size, pixels.
    pub src_w: u32,
    pub src_h: u32,
    /// Canvas (model input) size, pixels.
    pub dst_w: u32,
    pub dst_h: u32,
    /// Size of the resized image on the canvas, pixels.
    pub new_w: u32,
    pub new_h: u32,
    /// Offset of the resized image on the canvas, pixels.
    pub left: u32,
    pub top: u32,
    /// Canvas pixels per original pixel.
    pub scale: f64,
}

impl Letterbox {
    /// Geometry for fitting `src` into `dst`. Sizes must be non-zero (the decoder rejects
    /// empty images before this is reached); zero is treated as one to stay total.
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Letterbox {
        let (src_w, src_h) = (src_w.max(1), src_h.max(1));
        let (dst_w, dst_h) = (dst_w.max(1), dst_h.max(1));
        let r = f64::min(
            f64::from(dst_h) / f64::from(src_h),
            f64::from(dst_w) / f64::from(src_w),
        );
        // Python's round() (ties to even) as Ultralytics' `LetterBox` uses it; the -0.1 puts
        // the odd pixel of padding at the bottom/right.
        let new_w = ((f64::from(src_w) * r).round_ties_even() as u32).clamp(1, dst_w);
        let new_h = ((f64::from(src_h) * r).round_ties_even() as u32).clamp(1, dst_h);
        let left = (f64::from(dst_w - new_w) / 2.0 - 0.1)
            .round_ties_even()
            .max(0.0) as u32;
        let top = (f64::from(dst_h - new_h) / 2.0 - 0.1)
            .round_ties_even()
            .max(0.0) as u32;
        Letterbox {
            src_w,
            src_h,
            dst_w,
            dst_h,
            new_w,
            new_h,
            left,
            top,
            scale: r,
        }
    }

    /// Maps a canvas point back to original-image pixels, clamped to the image, as
    /// Ultralytics' `scale_boxes` does: the padding is recomputed from the unrounded scaled
    /// size (it can differ from `left`/`top` by a pixel for odd sizes).
    pub fn to_source(&self, x: f32, y: f32) -> (f32, f32) {
        let pad = |dst: u32, src: u32| {
            ((f64::from(dst) - f64::from(src) * self.scale) / 2.0 - 0.1).round_ties_even() as f32
        };
        let gain = self.scale as f32;
        let sx = (x - pad(self.dst_w, self.src_w)) / gain;
        let sy = (y - pad(self.dst_h, self.src_h)) / gain;
        (
            sx.clamp(0.0, self.src_w as f32),
            sy.clamp(0.0, self.src_h as f32),
        )
    }

    /// Whether both put the image on the same canvas area (so they share the border).
    pub fn same_canvas_area(&self, other: &Letterbox) -> bool {
        (
            self.dst_w, self.dst_h, self.new_w, self.new_h, self.left, self.top,
        ) == (
            other.dst_w,
            other.dst_h,
            other.new_w,
            other.new_h,
            other.left,
            other.top,
        )
    }

    /// Number of `f32` values of the CHW tensor (3 planes).
    pub fn tensor_len(&self) -> usize {
        3 * self.dst_w as usize * self.dst_h as usize
    }
}

/// Error of [`fill_tensor`]: the buffers do not match the geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    #[error("RGB buffer has {got} bytes, expected {expected}")]
    SourceSize { expected: usize, got: usize },
    #[error("tensor buffer has {got} values, expected {expected}")]
    TensorSize { expected: usize, got: usize },
}

/// Writes `rgb` (packed RGB8, `src_w`×`src_h`) letterboxed into `tensor` (planar CHW, values in
/// 0..=1): OpenCV's 8-bit `INTER_LINEAR` resize, grey 114 padding, `/ 255`, as the reference
/// pipeline does. Every value of `tensor` is written, so the buffer can be reused without
/// clearing.
pub fn fill_tensor(rgb: &[u8], lb: &Letterbox, tensor: &mut [f32]) -> Result<(), FillError> {
    fill_tensor_reusing(rgb, lb, tensor, None)
}

/// [`fill_tensor`] into a buffer that the last successful fill wrote with geometry `previous`:
/// when the canvas and image placement are the same, the border already holds the pad value
/// and only the image area is written (for a 640×424 photo on a 640×640 canvas that skips a
/// third of the tensor).
pub fn fill_tensor_reusing(
    rgb: &[u8],
    lb: &Letterbox,
    tensor: &mut [f32],
    previous: Option<&Letterbox>,
) -> Result<(), FillError> {
    let src_len = 3 * lb.src_w as usize * lb.src_h as usize;
    if rgb.len() != src_len {
        return Err(FillError::SourceSize {
            expected: src_len,
            got: rgb.len(),
        });
    }
    if tensor.len() != lb.tensor_len() {
        return Err(FillError::TensorSize {
            expected: lb.tensor_len(),
            got: tensor.len(),
        });
    }
    let plane = lb.dst_w as usize * lb.dst_h as usize;
    let (r_plane, rest) = tensor.split_at_mut(plane);
    let (g_plane, b_plane) = rest.split_at_mut(plane);
    let mut planes = [r_plane, g_plane, b_plane];
    if !previous.is_some_and(|p| p.same_canvas_area(lb)) {
        fill_border(lb, &mut planes);
    }
    if lb.new_w == lb.src_w && lb.new_h == lb.src_h {
        copy_unscaled(rgb, lb, &mut planes);
    } else {
        resize_bilinear(rgb, lb, &mut planes);
    }
    Ok(())
}

/// `v / 255` as numpy computes the reference's `float32` array: the correctly rounded `f32`
/// quotient. Multiplying in `f64` and rounding once gives exactly that (`v / 255` is never
/// within `f64` error of an `f32` rounding midpoint; the test checks all 256 values) and
/// vectorises better than a division.
fn unit(v: u8) -> f32 {
    (f64::from(v) * (1.0 / 255.0)) as f32
}

/// Paints the four border bands (only they: the image area is overwritten anyway).
fn fill_border(lb: &Letterbox, planes: &mut [&mut [f32]; 3]) {
    let pad = unit(PAD_VALUE);
    let w = lb.dst_w as usize;
    let top = lb.top as usize;
    let bottom = top + lb.new_h as usize;
    let left = lb.left as usize;
    let right = left + lb.new_w as usize;
    for p in planes.iter_mut() {
        p[..top * w].fill(pad);
        p[bottom * w..].fill(pad);
        for y in top..bottom {
            let row = &mut p[y * w..(y + 1) * w];
            row[..left].fill(pad);
            row[right..].fill(pad);
        }
    }
}

/// De-interleaves one packed RGB8 row into the three planes' rows, as `0..=1` values.
fn spread_row(rgb: &[u8], r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    for (((px, r), g), b) in rgb
        .chunks_exact(3)
        .zip(r.iter_mut())
        .zip(g.iter_mut())
        .zip(b.iter_mut())
    {
        *r = unit(px[0]);
        *g = unit(px[1]);
        *b = unit(px[2]);
    }
}

fn copy_unscaled(rgb: &[u8], lb: &Letterbox, planes: &mut [&mut [f32]; 3]) {
    let sw = lb.src_w as usize;
    let w = lb.dst_w as usize;
    let [r, g, b] = planes;
    for (y, src_row) in rgb.chunks_exact(3 * sw).enumerate() {
        let start = (lb.top as usize + y) * w + lb.left as usize;
        let end = start + sw;
        spread_row(
            src_row,
            &mut r[start..end],
            &mut g[start..end],
            &mut b[start..end],
        );
    }
}

/// Fixed-point weights sum to 2^11 (OpenCV's `INTER_RESIZE_COEF_BITS`).
const COEF_SCALE: f32 = 2048.0;

/// One tap pair of a bilinear axis: the two source indices (clamped to the image) and their
/// weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tap {
    first: usize,
    second: usize,
    w0: i32,
    w1: i32,
}

/// The taps of one axis, computed as OpenCV does: the source coordinate in `f32` from a
/// `f64` expression, floored, each weight rounded (ties to even) from the `f32` fraction.
/// `clamp` applies OpenCV's horizontal edge rule (weight 1 on the edge pixel); vertically the
/// weights keep the unclamped fraction and the rows are clamped instead (OpenCV again).
fn axis_taps(src: u32, dst: u32, clamp: bool) -> Vec<Tap> {
    let scale = 1.0 / (f64::from(dst) / f64::from(src));
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let f = ((f64::from(d) + 0.5) * scale - 0.5) as f32;
            let mut i = f.floor() as i64;
            let mut frac = f - i as f32;
            if clamp && i < 0 {
                (i, frac) = (0, 0.0);
            }
            if clamp && i >= last {
                (i, frac) = (last, 0.0);
            }
            Tap {
                first: i.clamp(0, last) as usize,
                second: (i + 1).clamp(0, last) as usize,
                w0: ((1.0 - frac) * COEF_SCALE).round_ties_even() as i32,
                w1: (frac * COEF_SCALE).round_ties_even() as i32,
            }
        })
        .collect()
}

/// OpenCV's vertical blend of two horizontally resized rows (`i32`, weights 2^11) into `u8`:
/// each row value is shifted down 4 bits, multiplied by its 16-bit weight keeping the high
/// half, and the sum rounded down by 2 more bits (22 bits in all).
fn blend(top: i32, bottom: i32, w0: i16, w1: i16) -> u8 {
    // `(a * b) >> 16` on 16-bit lanes is SSE2's `pmulhw`, as in OpenCV; the row values fit
    // 16 bits after the first shift (255 * 2048 >> 4 = 32640).
    let hi = |v: i32, w: i16| (i32::from((v >> 4) as i16) * i32::from(w)) >> 16;
    ((hi(top, w0) + hi(bottom, w1) + 2) >> 2).clamp(0, 255) as u8
}

/// Separable bilinear resize: each source row is resized horizontally at most once (two rows
/// are cached), then each output row is blended vertically into bytes and spread into the
/// planes (separate passes, so the blend vectorises).
fn resize_bilinear(rgb: &[u8], lb: &Letterbox, planes: &mut [&mut [f32]; 3]) {
    let xs = axis_taps(lb.src_w, lb.new_w, true);
    let ys = axis_taps(lb.src_h, lb.new_h, false);
    let sw = lb.src_w as usize;
    let nw = lb.new_w as usize;
    let w = lb.dst_w as usize;
    let mut rows: [(usize, Vec<i32>); 2] =
        [(usize::MAX, vec![0; nw * 3]), (usize::MAX, vec![0; nw * 3])];
    let mut blended = vec![0u8; nw * 3];
    let horizontal = |sy: usize, out: &mut [i32]| {
        let src = &rgb[sy * sw * 3..(sy + 1) * sw * 3];
        for (o, t) in out.chunks_exact_mut(3).zip(&xs) {
            let (a, b) = (
                &src[t.first * 3..t.first * 3 + 3],
                &src[t.second * 3..t.second * 3 + 3],
            );
            o[0] = i32::from(a[0]) * t.w0 + i32::from(b[0]) * t.w1;
            o[1] = i32::from(a[1]) * t.w0 + i32::from(b[1]) * t.w1;
            o[2] = i32::from(a[2]) * t.w0 + i32::from(b[2]) * t.w1;
        }
    };
    let [r, g, b] = planes;
    for (dy, ty) in ys.iter().enumerate() {
        // Reuse cached rows: consecutive output rows mostly share source rows.
        for (slot, sy) in [(0usize, ty.first), (1usize, ty.second)] {
            if rows[slot].0 != sy {
                let other = 1 - slot;
                if rows[other].0 == sy {
                    let (first, second) = rows.split_at_mut(1);
                    let (dst, src) = if slot == 0 {
                        (&mut first[0], &second[0])
                    } else {
                        (&mut second[0], &first[0])
                    };
                    dst.1.copy_from_slice(&src.1);
                    dst.0 = sy;
                } else {
                    horizontal(sy, &mut rows[slot].1);
                    rows[slot].0 = sy;
                }
            }
        }
        for ((o, &t), &u) in blended.iter_mut().zip(&rows[0].1).zip(&rows[1].1) {
            *o = blend(t, u, ty.w0 as i16, ty.w1 as i16);
        }
        let start = (lb.top as usize + dy) * w + lb.left as usize;
        let end = start + nw;
        spread_row(
            &blended,
            &mut r[start..end],
            &mut g[start..end],
            &mut b[start..end],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_values_are_the_f32_quotients() {
        for v in 0..=255u8 {
            assert_eq!(unit(v), f32::from(v) / 255.0, "{v}");
        }
    }

    #[test]
    fn geometry_matches_ultralytics_for_a_wide_image() {
        // 640x424 (person.jpg) into 640x640: no scaling, 216 rows of padding split 108/108.
        let lb = Letterbox::new(640, 424, 640, 640);
        assert_eq!((lb.new_w, lb.new_h, lb.left, lb.top), (640, 424, 0, 108));
        assert!((lb.scale - 1.0).abs() < 1e-6);
    }

    #[test]
    fn geometry_for_downscale_and_odd_padding() {
        // 1280x720 -> scale 0.5, 640x360, padding 280 -> 140 top.
        let lb = Letterbox::new(1280, 720, 640, 640);
        assert_eq!((lb.new_w, lb.new_h, lb.left, lb.top), (640, 360, 0, 140));
        // Odd padding: 101 rows of slack -> 50 top (the odd one goes to the bottom).
        let lb = Letterbox::new(100, 539, 100, 640);
        assert_eq!((lb.new_h, lb.top), (539, 50));
        // Tall image: horizontal padding.
        let lb = Letterbox::new(300, 600, 640, 640);
        assert_eq!((lb.new_w, lb.new_h, lb.left, lb.top), (320, 640, 160, 0));
        assert!((lb.scale - 640.0 / 600.0).abs() < 1e-6);
    }

    #[test]
    fn degenerate_sizes_stay_total() {
        let lb = Letterbox::new(0, 0, 640, 640);
        assert!(lb.new_w >= 1 && lb.new_h >= 1);
        let lb = Letterbox::new(100_000, 1, 640, 640);
        assert_eq!(lb.new_w, 640);
        assert_eq!(lb.new_h, 1);
    }

    #[test]
    fn to_source_inverts_the_mapping_and_clamps() {
        let lb = Letterbox::new(1280, 720, 640, 640);
        let (x, y) = lb.to_source(320.0, 140.0 + 180.0);
        assert!((x - 640.0).abs() < 1e-3 && (y - 360.0).abs() < 1e-3);
        // Points in the border clamp to the image edge.
        assert_eq!(lb.to_source(-5.0, 0.0), (0.0, 0.0));
        assert_eq!(lb.to_source(700.0, 639.0), (1280.0, 720.0));
    }

    #[test]
    fn unscaled_fill_pads_and_normalises() {
        let lb = Letterbox::new(2, 1, 2, 4);
        assert_eq!((lb.top, lb.new_h), (1, 1));
        let rgb = [255, 0, 51, 0, 255, 102];
        let mut t = vec![f32::NAN; lb.tensor_len()];
        fill_tensor(&rgb, &lb, &mut t).unwrap();
        let pad = 114.0 / 255.0;
        let close = |got: &[f32], want: &[f32]| {
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        };
        // R plane: row 0 pad, row 1 = [1, 0], rows 2,3 pad.
        close(&t[0..2], &[pad, pad]);
        close(&t[2..4], &[1.0, 0.0]);
        close(&t[4..8], &[pad; 4]);
        // G plane row 1, B plane row 1.
        close(&t[8 + 2..8 + 4], &[0.0, 1.0]);
        close(&t[16 + 2..16 + 4], &[0.2, 0.4]);
        assert!(t.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn bilinear_downscale_of_a_flat_image_is_flat_and_covers_every_value() {
        let (w, h) = (97u32, 61u32);
        let rgb: Vec<u8> = (0..w * h).flat_map(|_| [10u8, 20, 30]).collect();
        let lb = Letterbox::new(w, h, 32, 32);
        let mut t = vec![f32::NAN; lb.tensor_len()];
        fill_tensor(&rgb, &lb, &mut t).unwrap();
        assert!(t.iter().all(|v| v.is_finite()));
        let plane = 32 * 32;
        let y = lb.top as usize + lb.new_h as usize / 2;
        let i = y * 32 + 16;
        assert_eq!(t[i], 10.0 / 255.0);
        assert_eq!(t[plane + i], 20.0 / 255.0);
        assert_eq!(t[2 * plane + i], 30.0 / 255.0);
    }

    /// The red plane of `fill_tensor` over a canvas exactly the resized size, as `u8`.
    fn resized_red(rgb: &[u8], (w, h): (u32, u32), (nw, nh): (u32, u32)) -> Vec<u8> {
        let mut lb = Letterbox::new(w, h, nw, nh);
        // Force the exact target size (the letterbox would keep the aspect ratio).
        (lb.new_w, lb.new_h, lb.left, lb.top) = (nw, nh, 0, 0);
        let mut t = vec![0.0; lb.tensor_len()];
        fill_tensor(rgb, &lb, &mut t).unwrap();
        t[..(nw * nh) as usize]
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect()
    }

    #[test]
    fn bilinear_upscale_rounds_to_bytes_as_opencv_does() {
        // cv2.resize of [[0, 255]] to 4x2 with INTER_LINEAR: 0, 64, 191, 255 on both rows
        // (the float result 63.75 / 191.25 rounded by the fixed-point arithmetic).
        let rgb = [0, 0, 0, 255, 255, 255];
        assert_eq!(
            resized_red(&rgb, (2, 1), (4, 2)),
            [0, 64, 191, 255, 0, 64, 191, 255]
        );
    }

    #[test]
    fn resize_matches_opencv_to_the_bit() {
        // A 7x5 pattern, pixel (x, y) channel c = (37x + 11y + 5c) mod 256, resized with
        // cv2.resize(..., interpolation=cv2.INTER_LINEAR) (opencv-python 4.13): red plane.
        let rgb: Vec<u8> = (0..5u32)
            .flat_map(|y| {
                (0..7u32).flat_map(move |x| {
                    (0..3u32).map(move |c| ((x * 37 + y * 11 + c * 5) % 256) as u8)
                })
            })
            .collect();
        let up: [u8; 88] = [
            0, 17, 40, 64, 87, 111, 134, 158, 182, 205, 222, 5, 21, 45, 69, 92, 116, 139, 163, 186,
            210, 227, 12, 28, 52, 75, 99, 123, 146, 170, 193, 217, 234, 18, 35, 59, 82, 106, 129,
            153, 177, 200, 224, 241, 25, 42, 66, 89, 113, 136, 160, 183, 207, 230, 247, 32, 49, 73,
            96, 120, 143, 167, 190, 214, 237, 254, 39, 56, 79, 103, 126, 150, 174, 197, 221, 166,
            117, 44, 61, 84, 108, 131, 155, 178, 202, 226, 110, 10,
        ];
        assert_eq!(resized_red(&rgb, (7, 5), (11, 8)), up);
        let down: [u8; 12] = [17, 82, 147, 212, 36, 101, 165, 230, 54, 119, 184, 142];
        assert_eq!(resized_red(&rgb, (7, 5), (4, 3)), down);
    }

    #[test]
    fn reusing_a_buffer_skips_only_an_identical_border() {
        let noise = |w: u32, h: u32, seed: u32| -> Vec<u8> {
            (0..w * h * 3)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
                .collect()
        };
        let fresh = |rgb: &[u8], lb: &Letterbox| {
            let mut t = vec![f32::NAN; lb.tensor_len()];
            fill_tensor(rgb, lb, &mut t).unwrap();
            t
        };
        // Same geometry, different pixels: the reused buffer equals a fresh fill exactly.
        let lb = Letterbox::new(64, 40, 64, 64);
        let mut t = fresh(&noise(64, 40, 1), &lb);
        let second = noise(64, 40, 2);
        fill_tensor_reusing(&second, &lb, &mut t, Some(&lb)).unwrap();
        assert_eq!(t, fresh(&second, &lb));
        // A different placement (taller image, smaller top band) repaints the border.
        let tall = Letterbox::new(64, 60, 64, 64);
        assert!(!tall.same_canvas_area(&lb));
        let mut t = fresh(&noise(64, 40, 1), &lb);
        let third = noise(64, 60, 3);
        fill_tensor_reusing(&third, &tall, &mut t, Some(&lb)).unwrap();
        assert_eq!(t, fresh(&third, &tall));
        // The scaled path too: a 128x80 image lands where the 64x40 one did.
        let scaled = Letterbox::new(128, 80, 64, 64);
        assert!(scaled.same_canvas_area(&lb));
        let mut t = fresh(&noise(64, 40, 1), &lb);
        let fourth = noise(128, 80, 4);
        fill_tensor_reusing(&fourth, &scaled, &mut t, Some(&lb)).unwrap();
        assert_eq!(t, fresh(&fourth, &scaled));
    }

    #[test]
    fn mismatched_buffers_are_errors_not_panics() {
        let lb = Letterbox::new(4, 4, 8, 8);
        let mut t = vec![0.0; lb.tensor_len()];
        assert!(matches!(
            fill_tensor(&[0; 5], &lb, &mut t),
            Err(FillError::SourceSize { .. })
        ));
        assert!(matches!(
            fill_tensor(&[0; 48], &lb, &mut t[..10]),
            Err(FillError::TensorSize { .. })
        ));
    }
}
