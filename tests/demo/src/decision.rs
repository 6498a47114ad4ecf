//! Parsing of the `x-canary-decision` response header that the filter sets on every reply:
//! `<gray|stable>` followed by `; `-separated items such as `rule=NAME`, `no-rule`,
//! `shed=REASON`, `probe`, `percent` and `dry-run=REASON`.

use std::fmt;

/// Where the filter sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    Stable,
    Gray,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Stable => "stable",
            Route::Gray => "gray",
        }
    }
}

/// One parsed decision header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub route: Option<Route>,
    /// The rule that matched, if any.
    pub rule: Option<String>,
    /// No rule matched the request.
    pub no_rule: bool,
    /// The breaker of the rule is open; the reason that opened it (e.g. `box_count`).
    pub shed: Option<String>,
    /// A half-open probe sent to gray.
    pub probe: bool,
    /// The device fell outside the rule's sticky share.
    pub percent: bool,
    /// The breaker would have shed (dry-run mode); the reason.
    pub dry_run: Option<String>,
    /// Items this parser does not know, kept verbatim so that newer filters still display.
    pub other: Vec<String>,
}

/// Why a header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionError {
    Empty,
    UnknownRoute(String),
}

impl fmt::Display for DecisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecisionError::Empty => write!(f, "x-canary-decision is empty"),
            DecisionError::UnknownRoute(r) => write!(
                f,
                "x-canary-decision: route {r:?} is neither `gray` nor `stable`"
            ),
        }
    }
}

impl std::error::Error for DecisionError {}

impl Decision {
    pub fn parse(header: &str) -> Result<Decision, DecisionError> {
        let mut items = header.split(';').map(str::trim);
        let route = match items.next().unwrap_or_default() {
            "" => return Err(DecisionError::Empty),
            "gray" => Route::Gray,
            "stable" => Route::Stable,
            other => return Err(DecisionError::UnknownRoute(other.to_string())),
        };
        let mut d = Decision {
            route: Some(route),
            ..Decision::default()
        };
        for item in items.filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some(("rule", v)) => d.rule = Some(v.trim().to_string()),
                Some(("shed", v)) => d.shed = Some(v.trim().to_string()),
                Some(("dry-run", v)) => d.dry_run = Some(v.trim().to_string()),
                None if item == "no-rule" => d.no_rule = true,
                None if item == "probe" => d.probe = true,
                None if item == "percent" => d.percent = true,
                _ => d.other.push(item.to_string()),
            }
        }
        Ok(d)
    }

    /// A short label naming where the request went and why, used to count decisions:
    /// `gray rule`, `gray probe`, `stable shed=box_count`, `stable no-rule`, ...
    pub fn label(&self) -> String {
        let route = self.route.map_or("?", Route::as_str);
        let why = if let Some(r) = &self.shed {
            format!("shed={r}")
        } else if self.probe {
            "probe".to_string()
        } else if let Some(r) = &self.dry_run {
            format!("dry-run={r}")
        } else if self.percent {
            "percent".to_string()
        } else if self.no_rule {
            "no-rule".to_string()
        } else if self.rule.is_some() {
            "rule".to_string()
        } else if let Some(o) = self.other.first() {
            o.clone()
        } else {
            "-".to_string()
        };
        format!("{route} {why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let d = Decision::parse("gray; rule=night-cranes").unwrap();
        assert_eq!(d.route, Some(Route::Gray));
        assert_eq!(d.rule.as_deref(), Some("night-cranes"));
        assert_eq!(d.label(), "gray rule");

        let d = Decision::parse("stable; rule=night-cranes; shed=box_count").unwrap();
        assert_eq!(d.route, Some(Route::Stable));
        assert_eq!(d.shed.as_deref(), Some("box_count"));
        assert_eq!(d.label(), "stable shed=box_count");

        assert_eq!(
            Decision::parse("stable; no-rule").unwrap().label(),
            "stable no-rule"
        );
        let d = Decision::parse("gray; rule=r; probe").unwrap();
        assert!(d.probe);
        assert_eq!(d.label(), "gray probe");
        assert_eq!(
            Decision::parse("stable; rule=r; percent").unwrap().label(),
            "stable percent"
        );
        let d = Decision::parse("gray; rule=r; dry-run=box_count").unwrap();
        assert_eq!(d.dry_run.as_deref(), Some("box_count"));
        assert_eq!(d.label(), "gray dry-run=box_count");
    }

    #[test]
    fn tolerates_spacing_and_unknown_items() {
        let d = Decision::parse("  stable ;rule=a ;  future=thing;; ").unwrap();
        assert_eq!(d.route, Some(Route::Stable));
        assert_eq!(d.rule.as_deref(), Some("a"));
        assert_eq!(d.other, vec!["future=thing".to_string()]);
        assert_eq!(d.label(), "stable rule");
        assert_eq!(
            Decision::parse("gray; novel").unwrap().label(),
            "gray novel"
        );
    }

    #[test]
    fn rejects_missing_or_unknown_route() {
        assert_eq!(Decision::parse(""), Err(DecisionError::Empty));
        assert_eq!(Decision::parse(" ; rule=a"), Err(DecisionError::Empty));
        assert_eq!(
            Decision::parse("blue; rule=a"),
            Err(DecisionError::UnknownRoute("blue".into()))
        );
        // The route must be the first item, not anywhere.
        assert!(Decision::parse("rule=a; gray").is_err());
    }
}
