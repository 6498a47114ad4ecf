//! Turning one HTTP reply (status, grayguard headers, JSON body) into a [`Reply`].

use crate::decision::{self, Route};
use crate::timeline::Reply;

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
