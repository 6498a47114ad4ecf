//! The filter's incident records, read back from Envoy's log: each is one JSON object with
//! `"grayguard":"incident"` at the end of a log line, written when a rule starts
//! alerting, starts shedding (by a trigger, a bad probe or a person's confirmation) and
//! stops shedding. Anything else in the log is skipped; a record that is not valid JSON is
//! counted, not fatal.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use jiff::Timestamp;
use serde_json::{Map, Value};

/// The member every record carries (the filter writes the object's keys in sorted order,
/// so it is not necessarily the first).
const MARKER: &str = r#""grayguard":"incident""#;

/// What a record says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Confirm mode: a trigger fired and the rule waits for a person.
    AlertStart,
    /// The breaker opened (a trigger, a bad probe, or a confirmation).
    ShedStart,
    /// Enough healthy probes: the breaker closed.
    ShedEnd,
    /// An event this reader does not know (kept and shown, but it starts or ends nothing).
    Other(String),
}

impl Event {
    pub fn parse(text: &str) -> Event {
        match text {
            "alert_start" => Event::AlertStart,
            "shed_start" => Event::ShedStart,
            "shed_end" => Event::ShedEnd,
            other => Event::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Event::AlertStart => "alert_start",
            Event::ShedStart => "shed_start",
            Event::ShedEnd => "shed_end",
            Event::Other(s) => s,
        }
    }
}

/// One incident record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Which log it came from (one per gateway).
    pub source: String,
    pub at: Timestamp,
    pub event: Event,
    /// The rule (unit); `*` with `scope: all`.
    pub rule: String,
    pub trigger: Option<String>,
    /// Who confirmed a shed in confirm mode.
    pub confirmed_by: Option<String>,
    /// Re-opened by a bad half-open probe (continues the incident it belongs to).
    pub after_probe: bool,
    /// The gateway that wrote it (its node id, as in its latch calls), when the record says.
    pub gateway: Option<String>,
    /// The gray pods whose replies that gateway had seen (their `x-served-by`), when the
    /// record says.
    pub gray_pods: Vec<String>,
    /// The whole record, for the fields this reader does not interpret.
    pub fields: Map<String, Value>,
}

/// Records found in one log, and what could not be read.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    pub records: Vec<Record>,
    /// Lines that carried the marker but no readable record.
    pub unreadable: usize,
    /// Whether the start of the log was skipped because of the size limit.
    pub truncated: bool,
}

/// The record on `line`, if it has one: `None` for any other line, `Some(Err)` for a marked
/// line whose JSON is broken or lacks `at`, `event` or `rule`.
pub fn parse_line(source: &str, line: &str) -> Option<Result<Record, String>> {
    let marker = line.find(MARKER)?;
    // The record is the object that holds the marker: try each `{` before it, leftmost
    // first (Envoy's prefix has none; a message that quotes braces may).
    let mut last_error = String::from("no JSON object around the marker");
    for (start, _) in line[..marker].match_indices('{') {
        let mut objects = serde_json::Deserializer::from_str(&line[start..]).into_iter::<Value>();
        match objects.next() {
            Some(Ok(Value::Object(fields)))
                if fields.get("grayguard").and_then(Value::as_str) == Some("incident") =>
            {
                return Some(record(source, fields));
            }
            Some(Err(e)) => last_error = format!("not JSON: {e}"),
            _ => {}
        }
    }
    Some(Err(last_error))
}

fn record(source: &str, fields: Map<String, Value>) -> Result<Record, String> {
    let text_field = |k: &str| fields.get(k).and_then(Value::as_str);
    let at = text_field("at")
        .ok_or("no `at`")?
        .parse::<Timestamp>()
        .map_err(|e| format!("`at`: {e}"))?;
    let event = Event::parse(text_field("event").ok_or("no `event`")?);
    let rule = text_field("rule").ok_or("no `rule`")?.to_string();
    Ok(Record {
        source: source.to_string(),
        at,
        event,
        rule,
        trigger: text_field("trigger").map(str::to_string),
        confirmed_by: text_field("confirmed_by").map(str::to_string),
        after_probe: fields
            .get("after_probe")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        gateway: text_field("gateway").map(str::to_string),
        // Names only; anything else in the list is not a pod name and is left out.
        gray_pods: fields
            .get("gray_pods")
            .and_then(Value::as_array)
            .map(|pods| {
                pods.iter()
                    .filter_map(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        fields,
    })
}

/// Every record in `text`, in log order.
pub fn scan_text(source: &str, text: &str) -> Scan {
    let mut scan = Scan::default();
    for line in text.lines() {
        match parse_line(source, line) {
            Some(Ok(r)) => scan.records.push(r),
            Some(Err(_)) => scan.unreadable += 1,
            None => {}
        }
    }
    scan
}

/// Every record in the last `max_bytes` of the log at `path` (Envoy's logs grow without
/// bound; an incident worth a report is near the end). A partial first line is dropped.
pub fn scan_file(path: &Path, max_bytes: u64) -> Result<Scan, String> {
    let (text, truncated) =
        read_tail(path, max_bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut scan = scan_text(&path.display().to_string(), &text);
    scan.truncated = truncated;
    Ok(scan)
}

/// The last `max_bytes` of a file as text (invalid UTF-8 replaced), starting at a line
/// boundary when the start was cut, and whether it was cut.
pub fn read_tail(path: &Path, max_bytes: u64) -> std::io::Result<(String, bool)> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let cut = len > max_bytes;
    if cut {
        file.seek(SeekFrom::Start(len - max_bytes))?;
    }
    let mut bytes = Vec::with_capacity(len.min(max_bytes) as usize);
    file.take(max_bytes).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if cut {
        let first = text.find('\n').map_or(text.len(), |i| i + 1);
        text.drain(..first);
    }
    Ok((text, cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    // As Envoy logs it: the filter's keys in sorted order.
    const SHED: &str = r#"[2026-11-30 15:04:05.678][12][warning][wasm] [source/extensions/common/wasm/context.cc:1154] wasm log grayguard grayguard: {"after_probe":false,"at":"2026-11-30T15:04:05.678Z","event":"shed_start","evidence":[{"crossed":true,"log_e":9.9,"test":"box_count_above","threshold":8.3}],"grayguard":"incident","rule":"crane-cameras","scope":"rule","trigger":"box_count"}"#;

    #[test]
    fn reads_a_record_at_the_end_of_an_envoy_log_line() {
        let r = parse_line("envoy.log", SHED).unwrap().unwrap();
        assert_eq!(r.event, Event::ShedStart);
        assert_eq!(r.rule, "crane-cameras");
        assert_eq!(r.trigger.as_deref(), Some("box_count"));
        assert_eq!(r.at.to_string(), "2026-11-30T15:04:05.678Z");
        assert!(!r.after_probe);
        assert_eq!(r.fields["evidence"][0]["log_e"], 9.9);
        assert_eq!(r.source, "envoy.log");
        // Records from before the gateway and the gray pods were recorded.
        assert_eq!(r.gateway, None);
        assert!(r.gray_pods.is_empty());
    }

    #[test]
    fn reads_who_was_involved() {
        let line = r#"{"grayguard":"incident","event":"shed_start","rule":"r","at":"2026-11-30T15:00:00Z","gateway":"gw-1","gray_pods":["yolo-v10-gray-7d9f-a","",7,"yolo-v10-gray-7d9f-b"]}"#;
        let r = parse_line("x", line).unwrap().unwrap();
        assert_eq!(r.gateway.as_deref(), Some("gw-1"));
        assert_eq!(
            r.gray_pods,
            vec!["yolo-v10-gray-7d9f-a", "yolo-v10-gray-7d9f-b"]
        );
    }

    #[test]
    fn other_lines_are_not_records_and_broken_ones_are_counted() {
        assert!(parse_line("x", "15:04:05.123 POST /infer 200 decision=\"gray\"").is_none());
        // A quoted brace before the record does not hide it.
        let quoted = format!("msg {{not json}} {}", &SHED[SHED.find('{').unwrap()..]);
        assert!(parse_line("x", &quoted).unwrap().is_ok());
        let text = format!(
            "noise\n{SHED}\nwasm log: {{\"grayguard\":\"incident\",\"event\":\n{{\"grayguard\":\"incident\",\"event\":\"shed_end\",\"rule\":\"r\"}}\n"
        );
        let scan = scan_text("x", &text);
        assert_eq!(scan.records.len(), 1);
        // One cut-off line and one without `at`.
        assert_eq!(scan.unreadable, 2);
    }

    #[test]
    fn unknown_events_and_confirmations_are_kept() {
        let line = r#"{"grayguard":"incident","event":"alert_start","rule":"r","trigger":"latency","at":"2026-11-30T15:00:00Z"}"#;
        assert_eq!(
            parse_line("x", line).unwrap().unwrap().event,
            Event::AlertStart
        );
        let line = r#"{"grayguard":"incident","event":"shed_start","rule":"r","at":"2026-11-30T15:00:00Z","confirmed_by":"oncall@example.com"}"#;
        let r = parse_line("x", line).unwrap().unwrap();
        assert_eq!(r.confirmed_by.as_deref(), Some("oncall@example.com"));
        let line = r#"{"grayguard":"incident","event":"alert_cleared","rule":"r","at":"2026-11-30T15:00:00Z"}"#;
        assert_eq!(
            parse_line("x", line).unwrap().unwrap().event,
            Event::Other("alert_cleared".into())
        );
    }

    #[test]
    fn a_tail_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envoy.log");
        std::fs::write(&path, format!("{}\n{SHED}\n", "x".repeat(5000))).unwrap();
        let scan = scan_file(&path, SHED.len() as u64 + 10).unwrap();
        assert!(scan.truncated);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.unreadable, 0);
        let whole = scan_file(&path, 1 << 20).unwrap();
        assert!(!whole.truncated);
        assert_eq!(whole.records.len(), 1);
        let err = scan_file(&dir.path().join("missing.log"), 10).unwrap_err();
        assert!(err.contains("missing.log"), "{err}");
    }
}
