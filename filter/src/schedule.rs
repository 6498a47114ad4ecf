//! Time of day: UTC offsets, `HH:MM` clock times, `[from, to)` windows that may wrap
//! midnight, and the minute of the day a request is judged at.

/// Minutes in a day.
pub const DAY_MIN: u16 = 24 * 60;

/// Largest accepted UTC offset, in minutes (UTC+14:00, Kiribati).
pub const MAX_OFFSET_MIN: i32 = 14 * 60;

/// A window of the day, `[from, to)` in minutes since local midnight; `from > to` wraps
/// midnight (`22:00`–`02:00`). `from == to` is never built (rejected by the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, minutes since midnight, inclusive (0..1440).
    pub from: u16,
    /// End, minutes since midnight, exclusive (0..=1440).
    pub to: u16,
}

impl Window {
    /// Whether `minute` (0..1440) falls inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.from < self.to {
            self.from <= minute && minute < self.to
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

/// Parses a clock time `HH:MM` (00:00..=23:59; `24:00` too when `allow_24` is set, for the
/// end of a window) into minutes since midnight.
pub fn parse_hhmm(text: &str, allow_24: bool) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h = two_digits(h)?;
    let m = two_digits(m)?;
    if m > 59 {
        return None;
    }
    match h {
        0..=23 => Some(h * 60 + m),
        24 if allow_24 && m == 0 => Some(DAY_MIN),
        _ => None,
    }
}

fn two_digits(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    match b {
        [a, c] if a.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u16::from(a - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// Parses a UTC offset `+HH:MM` / `-HH:MM` (also `Z`) into signed minutes, at most ±14:00.
pub fn parse_offset(text: &str) -> Option<i32> {
    if text == "Z" {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, text.get(1..)?),
        b'-' => (-1, text.get(1..)?),
        _ => return None,
    };
    let minutes = i32::from(parse_hhmm(rest, false)?);
    (minutes <= MAX_OFFSET_MIN).then_some(sign * minutes)
}

/// Parses a client's `x-time-of-day` (`HH` or `HH:MM`) into minutes since midnight.
pub fn parse_time_header(text: &str) -> Option<u16> {
    let text = text.trim();
    if text.len() == 2 {
        let h = two_digits(text)?;
        return (h < 24).then_some(h * 60);
    }
    parse_hhmm(text, false)
}

/// The local minute of the day (0..1440) at `epoch_ns` (nanoseconds since the Unix epoch,
/// UTC) in a zone `offset_min` minutes east of UTC.
pub fn minute_of_day(epoch_ns: u64, offset_min: i32) -> u16 {
    let utc_min = (epoch_ns / 60_000_000_000) % u64::from(DAY_MIN);
    let local = (utc_min as i64 + i64::from(offset_min)).rem_euclid(i64::from(DAY_MIN));
    local as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_NS: u64 = 60_000_000_000;

    #[test]
    fn windows_with_and_without_midnight_wrap() {
        let day = Window { from: 0, to: 360 };
        let night = Window {
            from: 22 * 60,
            to: 2 * 60,
        };
        let to_end = Window {
            from: 18 * 60,
            to: DAY_MIN,
        };
        let cases = [
            (day, 0, true),
            (day, 359, true),
            (day, 360, false),
            (day, 1439, false),
            (night, 22 * 60 - 1, false),
            (night, 22 * 60, true),
            (night, 1439, true),
            (night, 0, true),
            (night, 119, true),
            (night, 120, false),
            (night, 12 * 60, false),
            (to_end, 1439, true),
            (to_end, 0, false),
            (to_end, 18 * 60, true),
        ];
        for (w, minute, want) in cases {
            assert_eq!(w.contains(minute), want, "{w:?} at {minute}");
        }
    }

    #[test]
    fn clock_times() {
        let cases = [
            ("00:00", false, Some(0)),
            ("23:59", false, Some(1439)),
            ("06:30", false, Some(390)),
            ("24:00", true, Some(1440)),
            ("24:00", false, None),
            ("24:01", true, None),
            ("25:00", true, None),
            ("12:60", false, None),
            ("6:00", false, None),
            ("06:0", false, None),
            ("0600", false, None),
            ("+6:00", false, None),
            ("ab:cd", false, None),
            ("", false, None),
        ];
        for (text, allow_24, want) in cases {
            assert_eq!(parse_hhmm(text, allow_24), want, "{text:?}");
        }
    }

    #[test]
    fn offsets() {
        let cases = [
            ("+00:00", Some(0)),
            ("Z", Some(0)),
            ("+08:00", Some(480)),
            ("-05:30", Some(-330)),
            ("+14:00", Some(840)),
            ("+14:01", None),
            ("-14:00", Some(-840)),
            ("08:00", None),
            ("+8", None),
            ("+", None),
            ("", None),
            ("−01:00", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_offset(text), want, "{text:?}");
        }
    }

    #[test]
    fn time_headers() {
        let cases = [
            ("03", Some(180)),
            ("23", Some(1380)),
            ("24", None),
            ("03:45", Some(225)),
            (" 03:45 ", Some(225)),
            ("3", None),
            ("noon", None),
            ("-1", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_time_header(text), want, "{text:?}");
        }
    }

    #[test]
    fn minute_of_day_in_offsets() {
        // 2024-01-01T23:30:00Z
        let t = 1_704_151_800 * 1_000_000_000u64;
        let cases = [
            (0, 23 * 60 + 30),
            (480, 7 * 60 + 30),  // +08:00 → 07:30 next day
            (-330, 18 * 60),     // -05:30 → 18:00
            (30, 0),             // +00:30 → midnight
            (-840, 9 * 60 + 30), // -14:00
            (840, 13 * 60 + 30), // +14:00
        ];
        for (offset, want) in cases {
            assert_eq!(minute_of_day(t, offset), want, "offset {offset}");
        }
        assert_eq!(minute_of_day(0, 0), 0);
        assert_eq!(minute_of_day(59 * MIN_NS + MIN_NS - 1, 0), 59);
        assert_eq!(minute_of_day(0, -1), 1439);
    }
}
