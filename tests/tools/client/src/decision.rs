//! The `x-canary-decision` header as the tools read it: the contract's grammar
//! (`grayguard_contract::decision`, the same code the filter renders with) and a short label
//! per decision for counting.

pub use grayguard_contract::decision::{Note, ParseError, Side as Route};

/// One parsed decision header.
pub type Decision = grayguard_contract::Decision<'static>;

/// Parses a header value (strictly: anything outside the grammar is an error).
pub fn parse(text: &str) -> Result<Decision, ParseError> {
    grayguard_contract::Decision::parse(text).map(grayguard_contract::Decision::into_owned)
}

/// What the tools ask of a decision.
pub trait DecisionExt {
    /// A short label naming where the request went and why, used to count decisions:
    /// `gray rule`, `gray probe`, `stable shed=box_count`, `stable no-rule`, ...
    fn label(&self) -> String;
    /// A half-open probe.
    fn probe(&self) -> bool;
}

impl DecisionExt for Decision {
    fn label(&self) -> String {
        let why = match (&self.rule, self.note) {
            (None, _) => "no-rule".to_string(),
            (Some(_), None) => "rule".to_string(),
            (Some(_), Some(Note::Percent)) => "percent".to_string(),
            (Some(_), Some(Note::Probe)) => "probe".to_string(),
            (Some(_), Some(Note::Shed(t))) => format!("shed={t}"),
            (Some(_), Some(Note::DryRun(t))) => format!("dry-run={t}"),
            (Some(_), Some(Note::Alert(t))) => format!("alert={t}"),
            (Some(_), Some(Note::Fallback)) => "fallback".to_string(),
        };
        format!("{} {why}", self.side.as_str())
    }

    fn probe(&self) -> bool {
        self.note == Some(Note::Probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_every_documented_form() {
        let cases = [
            ("gray; rule=night-cranes", "gray rule"),
            (
                "stable; rule=night-cranes; shed=box_count",
                "stable shed=box_count",
            ),
            ("stable; no-rule", "stable no-rule"),
            ("gray; rule=r; probe", "gray probe"),
            ("stable; rule=r; percent", "stable percent"),
            ("gray; rule=r; dry-run=box_count", "gray dry-run=box_count"),
        ];
        for (text, label) in cases {
            assert_eq!(parse(text).unwrap().label(), label, "{text}");
        }
        assert!(parse("gray; rule=r; probe").unwrap().probe());
        assert!(!parse("gray; rule=r").unwrap().probe());
    }

    #[test]
    fn headers_outside_the_grammar_are_errors() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert!(parse("blue; rule=a").is_err());
        assert!(parse("gray; novel").is_err());
    }
}
