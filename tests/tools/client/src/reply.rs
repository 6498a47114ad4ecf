//! One HTTP reply as a client of the mesh saw it ([`Reply`]: status, the filter's decision,
//! the version that served it, its boxes and breach flag), read from the status, the
//! grayguard headers and the JSON body.

use crate::decision::{self, Decision, Route};

/// An HTTP reply as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// The parsed `x-canary-decision`; `None` when the header was missing, `Err` text when
    /// it did not parse.
    pub decision: Option<Result<Decision, String>>,
    /// Which version answered, from `x-model-version` (falls back to the decision's route).
    pub served_by: Option<Route>,
    /// `x-box-count`, or the length of `boxes` in the body.
    pub box_count: Option<u32>,
    /// `x-canary-breach`, if the sidecar flagged one and the proxy let it through.
    pub breach: Option<String>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref().and_then(|d| d.as_ref().ok())
    }

    /// The route that served the request: the model version if known, else the decision.
    pub fn route(&self) -> Option<Route> {
        self.served_by.or_else(|| self.decision().map(|d| d.side))
    }
}

/// The grayguard headers of one reply, as received (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    pub decision: Option<&'a str>,
    pub model_version: Option<&'a str>,
    pub box_count: Option<&'a str>,
    pub breach: Option<&'a str>,
}

/// Interprets a reply; `gray`/`stable` are the `x-model-version`s of the two versions.
/// The box count comes from `x-box-count`, else from the `boxes` array of a JSON body.
pub fn interpret(status: u16, h: Headers<'_>, body: &[u8], gray: &str, stable: &str) -> Reply {
    let decision = h
        .decision
        .map(|d| decision::parse(d).map_err(|e| e.to_string()));
    let served_by = match h.model_version.map(str::trim) {
        Some(v) if v == gray => Some(Route::Gray),
        Some(v) if v == stable => Some(Route::Stable),
        _ => None,
    };
    let box_count = h
        .box_count
        .and_then(|b| b.trim().parse::<u32>().ok())
        .or_else(|| {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            u32::try_from(v.get("boxes")?.as_array()?.len()).ok()
        });
    Reply {
        status,
        decision,
        served_by,
        box_count,
        breach: h
            .breach
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::DecisionExt;

    #[test]
    fn reads_headers_first() {
        let r = interpret(
            200,
            Headers {
                decision: Some("gray; rule=crane-cameras"),
                model_version: Some("v10-gray"),
                box_count: Some("57"),
                breach: Some("box_count"),
            },
            br#"{"boxes":[]}"#,
            "v10-gray",
            "v9-prod",
        );
        assert!(r.ok());
        assert_eq!(r.served_by, Some(Route::Gray));
        assert_eq!(r.box_count, Some(57));
        assert_eq!(r.breach.as_deref(), Some("box_count"));
        assert_eq!(r.decision().unwrap().label(), "gray rule");
    }

    #[test]
    fn falls_back_to_the_body_and_the_decision() {
        let r = interpret(
            200,
            Headers {
                decision: Some("stable; no-rule"),
                ..Headers::default()
            },
            br#"{"model_version":"x","boxes":[{"x1":0},{"x1":1}]}"#,
            "v10-gray",
            "v9-prod",
        );
        assert_eq!(r.box_count, Some(2));
        assert_eq!(r.served_by, None);
        assert_eq!(r.route(), Some(Route::Stable));
    }

    #[test]
    fn keeps_malformed_and_missing_signals_visible() {
        let r = interpret(
            503,
            Headers {
                decision: Some("sideways"),
                box_count: Some("many"),
                breach: Some(" "),
                ..Headers::default()
            },
            b"upstream connect error",
            "v10-gray",
            "v9-prod",
        );
        assert!(!r.ok());
        assert!(matches!(r.decision, Some(Err(_))));
        assert_eq!(
            (r.box_count, r.breach.as_deref(), r.route()),
            (None, None, None)
        );
    }
}
