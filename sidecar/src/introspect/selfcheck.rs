//! Warm-up and periodic self-checks. Both push a real image through the full pipeline: the
//! most recent image a client sent (kept in memory), or, until one has arrived, a built-in
//! synthetic image, so health checks look like production traffic rather than a blank frame.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::vision::decode::encode_png;

/// Width and height of the synthetic image, pixels (a typical camera frame's aspect).
const SYNTHETIC_W: u32 = 640;
const SYNTHETIC_H: u32 = 480;

/// A deterministic PNG with gradients and blocks (something for the convolutions to chew on).
pub fn synthetic_image() -> Bytes {
    let mut rgb = Vec::with_capacity((SYNTHETIC_W * SYNTHETIC_H * 3) as usize);
    for y in 0..SYNTHETIC_H {
        for x in 0..SYNTHETIC_W {
            let block = ((x / 80) + (y / 80)) % 2 == 0;
            let r = (x * 255 / SYNTHETIC_W) as u8;
            let g = (y * 255 / SYNTHETIC_H) as u8;
            let b = if block { 200 } else { 40 };
            rgb.extend_from_slice(&[r, g, b]);
        }
    }
    // Encoding a fixed-size RGB buffer cannot fail; an empty image would only make the
    // self-check report a decode error, never a panic.
    Bytes::from(encode_png(&rgb, SYNTHETIC_W, SYNTHETIC_H).unwrap_or_default())
}

/// The image self-checks use.
pub struct ImageMemory {
    synthetic: Bytes,
    last_real: Mutex<Option<Bytes>>,
}

impl ImageMemory {
    pub fn new() -> ImageMemory {
        ImageMemory {
            synthetic: synthetic_image(),
            last_real: Mutex::new(None),
        }
    }

    /// Remembers a client image that decoded and ran successfully (a cheap `Bytes` clone).
    pub fn remember(&self, image: Bytes) {
        if let Ok(mut last) = self.last_real.lock() {
            *last = Some(image);
        }
    }

    /// The most recent real image, else the synthetic one; `true` when real.
    pub fn current(&self) -> (Bytes, bool) {
        match self.last_real.lock().ok().and_then(|l| l.clone()) {
            Some(img) => (img, true),
            None => (self.synthetic.clone(), false),
        }
    }
}

impl Default for ImageMemory {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a self-check is due: always while unhealthy; otherwise only when no request has
/// succeeded for a whole interval (real traffic is the best self-check there is).
pub fn due(now: Instant, last_success: Option<Instant>, interval: Duration, healthy: bool) -> bool {
    !healthy || last_success.is_none_or(|t| now.saturating_duration_since(t) >= interval)
}

/// Outcome of one self-check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Healthy,
    Failed(String),
    TooSlow { latency_ms: f64, limit_ms: f64 },
}

/// Judges a self-check that took `latency_ms` against `slow_factor` × the reference latency
/// (the watchdog window's mean, or the warm-up median when the window is empty).
pub fn judge(
    result: Result<(), String>,
    latency_ms: f64,
    reference_ms: Option<f64>,
    slow_factor: f64,
) -> Verdict {
    if let Err(e) = result {
        return Verdict::Failed(e);
    }
    match reference_ms {
        // A floor keeps sub-millisecond GPU references from flagging scheduler jitter.
        Some(r) if latency_ms > slow_factor * r.max(1.0) => Verdict::TooSlow {
            latency_ms,
            limit_ms: slow_factor * r.max(1.0),
        },
        _ => Verdict::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::decode::{decode_rgb, sniff};

    #[test]
    fn synthetic_image_decodes() {
        let img = synthetic_image();
        assert!(sniff(&img).is_some());
        let mut out = Vec::new();
        let size = decode_rgb(&img, u64::MAX, &mut out, &mut Vec::new()).unwrap();
        assert_eq!((size.width, size.height), (640, 480));
    }

    #[test]
    fn memory_prefers_the_latest_real_image() {
        let m = ImageMemory::new();
        assert!(!m.current().1);
        m.remember(Bytes::from_static(b"first"));
        m.remember(Bytes::from_static(b"second"));
        assert_eq!(m.current(), (Bytes::from_static(b"second"), true));
    }

    #[test]
    fn checks_are_skipped_while_traffic_succeeds() {
        let t0 = Instant::now();
        let i = Duration::from_secs(30);
        assert!(due(t0, None, i, true));
        assert!(!due(t0 + Duration::from_secs(10), Some(t0), i, true));
        assert!(due(t0 + Duration::from_secs(30), Some(t0), i, true));
        assert!(
            due(t0, Some(t0), i, false),
            "unhealthy: check every interval"
        );
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(Ok(()), 150.0, Some(140.0), 5.0), Verdict::Healthy);
        assert_eq!(judge(Ok(()), 150.0, None, 5.0), Verdict::Healthy);
        assert_eq!(
            judge(Ok(()), 800.0, Some(140.0), 5.0),
            Verdict::TooSlow {
                latency_ms: 800.0,
                limit_ms: 700.0
            }
        );
        assert_eq!(
            judge(Ok(()), 4.0, Some(0.1), 5.0),
            Verdict::Healthy,
            "1 ms floor"
        );
        assert_eq!(
            judge(Err("boom".into()), 1.0, None, 5.0),
            Verdict::Failed("boom".into())
        );
    }
}
