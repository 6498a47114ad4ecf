//! The in-band signals a sidecar puts on every response: parsing that never lets a bad
//! value crash the VM or poison the statistics.

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
}
