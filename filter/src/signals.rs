//! The in-band signals a sidecar puts on every response, and what one reply said: the
//! status, the latency and box count, the breach flag. Parsing never lets a bad value
//! crash the VM or poison the statistics.

use grayguard_contract::headers::{
    AGREEMENT, BOX_COUNT, ENVOY_ATTEMPT_COUNT, INFERENCE_LATENCY_MS, MODEL_VERSION,
};

use crate::config::Config;

/// Largest latency accepted as real, in ms (one hour); anything above is malformed.
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;
/// Largest box count accepted as real; anything above is malformed.
pub const MAX_BOX_COUNT: f64 = 1_000_000.0;
/// Longest flag value kept (the reasons and latches), in bytes.
pub const MAX_FLAG_LEN: usize = 512;

/// A signal header that is present but unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A latency header value in ms: a finite decimal in `0..=MAX_LATENCY_MS`.
pub fn latency_ms(text: &str) -> Result<f64, Malformed> {
    bounded_number(text, MAX_LATENCY_MS)
}

/// An agreement value: a decimal in `0..=1`.
pub fn agreement(text: &str) -> Result<f64, Malformed> {
    bounded_number(text, 1.0)
}

/// A box count: a whole number in `0..=MAX_BOX_COUNT` (`"7"`; `"7.0"` too, `"7.5"` not).
pub fn box_count(text: &str) -> Result<f64, Malformed> {
    let v = bounded_number(text, MAX_BOX_COUNT)?;
    if v.fract() == 0.0 {
        Ok(v)
    } else {
        Err(Malformed)
    }
}

/// A plain decimal (digits, optional fraction; no sign, exponent, `inf` or `NaN`).
fn bounded_number(text: &str, max: f64) -> Result<f64, Malformed> {
    let t = text.trim();
    if t.is_empty() || t.len() > 32 {
        return Err(Malformed);
    }
    let mut dot = false;
    let mut digits = 0;
    for b in t.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' if !dot => dot = true,
            _ => return Err(Malformed),
        }
    }
    if digits == 0 {
        return Err(Malformed);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => Ok(v),
        _ => Err(Malformed),
    }
}

/// The breach flag's reason for logs and the incident record: printable ASCII only,
/// at most [`MAX_FLAG_LEN`] bytes; an empty value reads as `flag`.
pub fn flag_reason(text: &str) -> String {
    let clean: String = text
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_FLAG_LEN)
        .collect();
    if clean.is_empty() {
        "flag".into()
    } else {
        clean
    }
}

/// What one reply said.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observation {
    /// The breach flag header was present.
    pub flagged: bool,
    /// 5xx, reset, or a configured signal header missing.
    pub failed: bool,
    /// Parsed latency, ms.
    pub latency_ms: Option<f64>,
    /// Parsed box count.
    pub boxes: Option<f64>,
    /// Parsed agreement of an earlier frame's comparison with stable, 0..=1 (only some
    /// replies carry one).
    pub agreement: Option<f64>,
}

/// What one response said, as read from its headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub obs: Observation,
    /// The breach flag's reason, when the flag was present.
    pub flag_reason: Option<String>,
    /// A gray-routed request that stable answered: gray's attempt failed and Envoy's retry
    /// went to stable (mesh-config's gray fallback). A gray failure, and nothing else of it
    /// is gray's.
    pub fallback: bool,
}

impl Reply {
    /// A request that never got response headers (reset): a failure.
    pub fn reset() -> Reply {
        Reply {
            obs: Observation {
                failed: true,
                ..Observation::default()
            },
            flag_reason: None,
            fallback: false,
        }
    }
}

/// Whether a reply to a gray-routed request came from stable: it says stable's model
/// version (`x-model-version` equal to the configuration's `stable`), or Envoy made more
/// than one attempt and the answer is not gray's (a hedged gray answer that won the race
/// says gray's version, and is gray's).
fn fallback<'h>(cfg: &Config, header: &impl Fn(&str) -> Option<&'h [u8]>) -> bool {
    let version = header(MODEL_VERSION);
    if version == Some(cfg.stable.as_bytes()) {
        return true;
    }
    let attempts = header(ENVOY_ATTEMPT_COUNT)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1);
    attempts > 1 && version != Some(cfg.gray.as_bytes())
}

/// A `:status` value.
pub fn status(text: &[u8]) -> Option<u16> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Reads a reply's status and signal headers (`header` looks one up, as bytes); `gray`: the
/// request was routed to gray. Returns the reply and how many signal values were malformed
/// (ignored, never trusted). A gray request stable answered is a failure, and its signals
/// (stable's latency, boxes, breach flag) are not read: they are not gray's.
pub fn read<'h>(
    cfg: &Config,
    gray: bool,
    status: Option<u16>,
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> (Reply, u32) {
    if gray && fallback(cfg, &header) {
        let mut reply = Reply::reset();
        reply.fallback = true;
        return (reply, 0);
    }
    let b = &cfg.breach;
    let lat_header = b
        .latency
        .as_ref()
        .map_or(INFERENCE_LATENCY_MS, |t| t.header.as_str());
    let box_header = b
        .box_count
        .as_ref()
        .map_or(BOX_COUNT, |t| t.header.as_str());
    let agreement_header = b
        .agreement
        .as_ref()
        .map_or(AGREEMENT, |t| t.header.as_str());
    let lat_raw = header(lat_header);
    let box_raw = header(box_header);
    let agreement_raw = header(agreement_header);
    let flag = header(&b.flag_header);
    let missing =
        (b.latency.is_some() && lat_raw.is_none()) || (b.box_count.is_some() && box_raw.is_none());
    let status = status.unwrap_or(0);
    let mut obs = Observation {
        flagged: flag.is_some(),
        failed: status == 0 || status >= 500 || missing,
        latency_ms: None,
        boxes: None,
        agreement: None,
    };
    let mut malformed = 0;
    let text = |v: &'h [u8]| std::str::from_utf8(v).map_err(|_| Malformed);
    // A failed reply's signals describe the refusal, not the model (a full queue answers
    // 503 at once, with no boxes): it counts as a failure only, never as a latency or box
    // sample, or an overloaded control would make a healthy gray look slow and noisy.
    let sample = !obs.failed;
    if let Some(v) = lat_raw {
        match text(v).and_then(latency_ms) {
            Ok(ms) => obs.latency_ms = sample.then_some(ms),
            Err(_) => malformed += 1,
        }
    }
    if let Some(v) = box_raw {
        match text(v).and_then(box_count) {
            Ok(n) => obs.boxes = sample.then_some(n),
            Err(_) => malformed += 1,
        }
    }
    // An agreement describes an earlier frame's comparison, not this reply: read whatever
    // became of this one.
    if let Some(v) = agreement_raw {
        match text(v).and_then(agreement) {
            Ok(a) => obs.agreement = Some(a),
            Err(_) => malformed += 1,
        }
    }
    let reply = Reply {
        obs,
        flag_reason: flag.map(|v| flag_reason(&String::from_utf8_lossy(v))),
        fallback: false,
    };
    (reply, malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_values() {
        let ok = [
            ("12", 12.0),
            ("0", 0.0),
            ("12.5", 12.5),
            (" 7.25 ", 7.25),
            ("3600000", 3.6e6),
            (".5", 0.5),
        ];
        for (t, v) in ok {
            assert_eq!(latency_ms(t), Ok(v), "{t:?}");
        }
        let bad = [
            "",
            " ",
            "-1",
            "+1",
            "NaN",
            "nan",
            "inf",
            "1e3",
            "1.2.3",
            "12ms",
            "0x10",
            "3600001",
            "1,5",
            ".",
            "99999999999999999999999999999999999",
        ];
        for t in bad {
            assert_eq!(latency_ms(t), Err(Malformed), "{t:?}");
        }
    }

    #[test]
    fn box_counts() {
        let ok = [("0", 0.0), ("7", 7.0), ("7.0", 7.0), ("1000000", 1e6)];
        for (t, v) in ok {
            assert_eq!(box_count(t), Ok(v), "{t:?}");
        }
        for t in ["7.5", "-3", "many", "1000001", "Infinity", ""] {
            assert_eq!(box_count(t), Err(Malformed), "{t:?}");
        }
    }

    #[test]
    fn flag_reasons() {
        assert_eq!(flag_reason("box_count"), "box_count");
        assert_eq!(flag_reason(" latency,errors "), "latency,errors");
        assert_eq!(flag_reason(""), "flag");
        assert_eq!(flag_reason("a\"b\u{7}c"), "a\"bc");
        assert_eq!(
            flag_reason(&"x".repeat(2 * MAX_FLAG_LEN)).len(),
            MAX_FLAG_LEN
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(status(b"200"), Some(200));
        assert_eq!(status(b"503"), Some(503));
        for bad in [&b""[..], b"2OO", b"-1", b"70000", b"\xff"] {
            assert_eq!(status(bad), None, "{bad:?}");
        }
    }
}
