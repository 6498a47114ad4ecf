//! The `x-canary-decision` header: where the filter sent a request and why. The filter
//! renders it on every response; the demo, the tests and people read it.
//!
//! ```text
//! decision = side "; " ( "no-rule" / "rule=" name [ "; " note ] )
//! side     = "gray" / "stable"
//! note     = "percent"             ; matched, outside the share       (stable)
//!          / "shed=" trigger       ; the rule's breaker is open        (stable)
//!          / "probe"               ; half-open probe                   (gray)
//!          / "dry-run=" trigger    ; would have shed, dry_run is on    (gray)
//!          / "alert=" trigger      ; confirm mode: a person is asked   (gray)
//!          / "fallback"            ; gray failed, stable answered      (gray)
//! trigger  = "flag" / "latency" / "box_count" / "error_rate" / "agreement"
//!          / "consecutive_failures" / "latch" / "operator"
//! name     = 1*64( ALPHA / DIGIT / "." / "_" / "-" )
//! ```
//!
//! Parsing is strict: an item this grammar does not define is an error, so a test that
//! parses every header it sees also checks that the filter only says what is documented.

use std::borrow::Cow;
use std::fmt;

use crate::reason::Trigger;

/// Where the request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Stable,
    Gray,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Stable => "stable",
            Side::Gray => "gray",
        }
    }
}

/// Why, beyond the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Note {
    /// Matched, outside the rule's share (stable).
    Percent,
    /// The rule's breaker is open; what opened it (stable).
    Shed(Trigger),
    /// A half-open probe (gray).
    Probe,
    /// Would have been shed, but dry run is on (gray).
    DryRun(Trigger),
    /// Confirm mode: the trigger fired and a person is asked to confirm the shed (gray).
    Alert(Trigger),
    /// Sent to gray, whose attempt failed; Envoy's one retry was answered by stable (gray:
    /// the request was gray's, and counts as a gray failure). Takes the place of any other
    /// note.
    Fallback,
}

/// One decision header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decision<'a> {
    pub side: Side,
    /// The matched rule; `None` is `no-rule`.
    pub rule: Option<Cow<'a, str>>,
    /// At most one note, only with a rule.
    pub note: Option<Note>,
}

/// A header that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    /// The first item is neither `gray` nor `stable`.
    Side(String),
    /// Neither `no-rule` nor `rule=NAME` after the side.
    MissingRule,
    /// A rule name outside `[A-Za-z0-9._-]{1,64}`.
    RuleName(String),
    /// An item the grammar does not define, or one too many.
    Item(String),
    /// `shed=` or `dry-run=` with an unknown trigger.
    Trigger(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(f, "x-canary-decision is empty"),
            ParseError::Side(s) => write!(
                f,
                "x-canary-decision: side {s:?} is neither `gray` nor `stable`"
            ),
            ParseError::MissingRule => {
                write!(
                    f,
                    "x-canary-decision: `no-rule` or `rule=NAME` must follow the side"
                )
            }
            ParseError::RuleName(n) => write!(f, "x-canary-decision: bad rule name {n:?}"),
            ParseError::Item(i) => write!(f, "x-canary-decision: unexpected item {i:?}"),
            ParseError::Trigger(t) => write!(f, "x-canary-decision: unknown trigger {t:?}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Whether `name` is a valid rule name (the filter's configuration enforces the same).
pub fn valid_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl<'a> Decision<'a> {
    /// A request no rule matched.
    pub fn no_rule(side: Side) -> Decision<'a> {
        Decision {
            side,
            rule: None,
            note: None,
        }
    }

    /// A request that matched `rule`.
    pub fn rule(side: Side, rule: &'a str, note: Option<Note>) -> Decision<'a> {
        Decision {
            side,
            rule: Some(Cow::Borrowed(rule)),
            note,
        }
    }

    /// The header text appended to `out` (the filter reuses one buffer per VM).
    pub fn render_into(&self, out: &mut String) {
        out.push_str(self.side.as_str());
        let Some(rule) = &self.rule else {
            out.push_str("; no-rule");
            return;
        };
        out.push_str("; rule=");
        out.push_str(rule);
        match self.note {
            None => {}
            Some(Note::Percent) => out.push_str("; percent"),
            Some(Note::Probe) => out.push_str("; probe"),
            Some(Note::Shed(t)) => {
                out.push_str("; shed=");
                out.push_str(t.as_str());
            }
            Some(Note::DryRun(t)) => {
                out.push_str("; dry-run=");
                out.push_str(t.as_str());
            }
            Some(Note::Alert(t)) => {
                out.push_str("; alert=");
                out.push_str(t.as_str());
            }
            Some(Note::Fallback) => out.push_str("; fallback"),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(48);
        self.render_into(&mut out);
        out
    }

    /// Parses a header value (strictly: see the module docs). Space around items is
    /// tolerated.
    pub fn parse(text: &'a str) -> Result<Decision<'a>, ParseError> {
        let mut items = text.split(';').map(str::trim);
        let side = match items.next().unwrap_or_default() {
            "" => return Err(ParseError::Empty),
            "gray" => Side::Gray,
            "stable" => Side::Stable,
            other => return Err(ParseError::Side(other.to_string())),
        };
        let rule = match items.next() {
            Some("no-rule") => None,
            Some(item) => match item.strip_prefix("rule=") {
                Some(name) if valid_rule_name(name) => Some(Cow::Borrowed(name)),
                Some(name) => return Err(ParseError::RuleName(name.to_string())),
                None => return Err(ParseError::MissingRule),
            },
            None => return Err(ParseError::MissingRule),
        };
        let trigger = |t: &str| Trigger::parse(t).ok_or_else(|| ParseError::Trigger(t.into()));
        let note = match items.next() {
            None => None,
            Some(item) if rule.is_none() => return Err(ParseError::Item(item.to_string())),
            Some("percent") => Some(Note::Percent),
            Some("probe") => Some(Note::Probe),
            Some("fallback") => Some(Note::Fallback),
            Some(item) => match item.split_once('=') {
                Some(("shed", t)) => Some(Note::Shed(trigger(t)?)),
                Some(("dry-run", t)) => Some(Note::DryRun(trigger(t)?)),
                Some(("alert", t)) => Some(Note::Alert(trigger(t)?)),
                _ => return Err(ParseError::Item(item.to_string())),
            },
        };
        if let Some(extra) = items.next() {
            return Err(ParseError::Item(extra.to_string()));
        }
        Ok(Decision { side, rule, note })
    }

    /// The same decision, owning its rule name.
    pub fn into_owned(self) -> Decision<'static> {
        Decision {
            side: self.side,
            rule: self.rule.map(|r| Cow::Owned(r.into_owned())),
            note: self.note,
        }
    }

    /// The trigger of a `shed=` note.
    pub fn shed(&self) -> Option<Trigger> {
        match self.note {
            Some(Note::Shed(t)) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_round_trips() {
        let t = Trigger::BoxCount;
        let cases = [
            (Decision::no_rule(Side::Stable), "stable; no-rule"),
            (
                Decision::rule(Side::Gray, "night-cranes", None),
                "gray; rule=night-cranes",
            ),
            (
                Decision::rule(Side::Stable, "r", Some(Note::Percent)),
                "stable; rule=r; percent",
            ),
            (
                Decision::rule(Side::Stable, "r", Some(Note::Shed(t))),
                "stable; rule=r; shed=box_count",
            ),
            (
                Decision::rule(Side::Gray, "r", Some(Note::Probe)),
                "gray; rule=r; probe",
            ),
            (
                Decision::rule(Side::Gray, "r", Some(Note::DryRun(t))),
                "gray; rule=r; dry-run=box_count",
            ),
            (
                Decision::rule(Side::Gray, "r", Some(Note::Alert(t))),
                "gray; rule=r; alert=box_count",
            ),
            (
                Decision::rule(Side::Gray, "r", Some(Note::Fallback)),
                "gray; rule=r; fallback",
            ),
        ];
        for (d, text) in cases {
            assert_eq!(d.render(), text);
            assert_eq!(Decision::parse(text), Ok(d.clone()), "{text}");
            assert_eq!(
                Decision::parse(text).map(Decision::into_owned),
                Ok(d.into_owned())
            );
        }
        for t in Trigger::ALL {
            let d = Decision::rule(Side::Stable, "a.b_c-1", Some(Note::Shed(t)));
            assert_eq!(Decision::parse(&d.render()), Ok(d));
        }
        assert_eq!(
            Decision::parse("  stable ;rule=a ;  shed=flag ").map(|d| d.shed()),
            Ok(Some(Trigger::Flag))
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let cases = [
            ("", ParseError::Empty),
            (" ; rule=a", ParseError::Empty),
            ("blue; rule=a", ParseError::Side("blue".into())),
            ("rule=a; gray", ParseError::Side("rule=a".into())),
            ("gray", ParseError::MissingRule),
            ("gray; probe", ParseError::MissingRule),
            ("gray; rule=", ParseError::RuleName(String::new())),
            ("gray; rule=a b", ParseError::RuleName("a b".into())),
            (
                "stable; no-rule; percent",
                ParseError::Item("percent".into()),
            ),
            (
                "stable; rule=a; shed=boxes",
                ParseError::Trigger("boxes".into()),
            ),
            (
                "gray; rule=a; future=thing",
                ParseError::Item("future=thing".into()),
            ),
            (
                "gray; rule=a; probe; probe",
                ParseError::Item("probe".into()),
            ),
        ];
        for (text, err) in cases {
            assert_eq!(Decision::parse(text), Err(err), "{text:?}");
        }
    }
}
