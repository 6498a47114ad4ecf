//! Alertmanager's webhook (JSON, version 4) as the report server reads it: which of the
//! notified alerts are about a shed (`GrayguardRuleShedding`, `GrayguardShedAwaitsConfirmation`
//! in mesh-config/prometheus/rules.yaml), and for each its rule, gateway, whether it fires or
//! has resolved, and when it started: what finds the incident whose report is kept. Every
//! other alert is ignored; a body that is not such a notification is an error that says why.

use jiff::Timestamp;
use serde_json::Value;

/// The alerts whose notifications keep a report: a gateway shedding a rule (automatically or
/// confirmed), and a rule waiting for a person's confirmation.
pub const SHED_ALERTS: &[&str] = &["GrayguardRuleShedding", "GrayguardShedAwaitsConfirmation"];

/// One shed alert of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShedAlert {
    pub alertname: String,
    pub rule: String,
    /// The gateway that alerted (its scrape target), when the labels say.
    pub instance: Option<String>,
    /// `firing` (true) or `resolved`.
    pub firing: bool,
    pub starts_at: Timestamp,
}

/// What a notification asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notification {
    /// The shed alerts, one per rule and start (several gateways alerting at the same moment
    /// are one incident's report, written once).
    pub shed: Vec<ShedAlert>,
    /// Alerts of other names, not kept.
    pub ignored: usize,
}

/// Reads a webhook body.
pub fn parse(body: &[u8]) -> Result<Notification, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let alerts = doc
        .get("alerts")
        .and_then(Value::as_array)
        .ok_or("no `alerts` list: not an Alertmanager webhook notification")?;
    let mut out = Notification::default();
    for (k, a) in alerts.iter().enumerate() {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let labels = &a["labels"];
        let alertname = text(&labels["alertname"])
            .ok_or_else(|| format!("alerts[{k}]: no labels.alertname"))?;
        if !SHED_ALERTS.contains(&alertname.as_str()) {
            out.ignored += 1;
            continue;
        }
        let rule = text(&labels["rule"])
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("alerts[{k}] ({alertname}): no labels.rule"))?;
        let firing = match a["status"].as_str() {
            Some("firing") => true,
            Some("resolved") => false,
            other => {
                return Err(format!(
                    "alerts[{k}] ({alertname}): status {other:?} is neither firing nor resolved"
                ));
            }
        };
        let starts_at = a["startsAt"]
            .as_str()
            .ok_or_else(|| format!("alerts[{k}] ({alertname}): no startsAt"))?
            .parse::<Timestamp>()
            .map_err(|e| format!("alerts[{k}] ({alertname}): startsAt: {e}"))?;
        let alert = ShedAlert {
            alertname,
            rule,
            instance: text(&labels["instance"]),
            firing,
            starts_at,
        };
        if !out
            .shed
            .iter()
            .any(|s| s.rule == alert.rule && s.starts_at == alert.starts_at)
        {
            out.shed.push(alert);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shed_alerts_of_a_notification() {
        let body = br#"{"version":"4","status":"firing","receiver":"grayguard-reports","alerts":[
            {"status":"firing","labels":{"alertname":"GrayguardRuleShedding","rule":"crane-cameras","instance":"127.0.0.1:9901","severity":"critical"},
             "startsAt":"2026-11-30T15:04:10.123Z","endsAt":"0001-01-01T00:00:00Z"},
            {"status":"resolved","labels":{"alertname":"GrayguardShedAwaitsConfirmation","rule":"night-cranes","trigger":"latency"},
             "startsAt":"2026-11-30T14:00:00Z","endsAt":"2026-11-30T14:30:00Z"},
            {"status":"firing","labels":{"alertname":"GrayguardRuleShedding","rule":"crane-cameras","instance":"127.0.0.1:9902"},
             "startsAt":"2026-11-30T15:04:10.123Z"},
            {"status":"firing","labels":{"alertname":"GrayguardSidecarMemoryHigh","track":"gray"},"startsAt":"2026-11-30T15:00:00Z"}]}"#;
        let n = parse(body).unwrap();
        assert_eq!(n.ignored, 1);
        assert_eq!(
            n.shed.len(),
            2,
            "the second gateway's alert is the same incident"
        );
        assert_eq!(n.shed[0].rule, "crane-cameras");
        assert_eq!(n.shed[0].instance.as_deref(), Some("127.0.0.1:9901"));
        assert!(n.shed[0].firing);
        assert_eq!(n.shed[0].starts_at.to_string(), "2026-11-30T15:04:10.123Z");
        assert!(!n.shed[1].firing);
        assert_eq!(n.shed[1].alertname, "GrayguardShedAwaitsConfirmation");
    }

    #[test]
    fn what_is_not_a_notification_says_why() {
        let err = |body: &str| parse(body.as_bytes()).unwrap_err();
        assert!(err("not json").starts_with("the body is not JSON"));
        assert!(err("{}").contains("no `alerts` list"));
        assert!(err(r#"{"alerts":[{"labels":{}}]}"#).contains("alerts[0]: no labels.alertname"));
        assert!(
            err(r#"{"alerts":[{"status":"firing","labels":{"alertname":"GrayguardRuleShedding"},"startsAt":"2026-11-30T15:00:00Z"}]}"#)
                .contains("no labels.rule")
        );
        assert!(
            err(r#"{"alerts":[{"status":"firing","labels":{"alertname":"GrayguardRuleShedding","rule":"r"},"startsAt":"soon"}]}"#)
                .contains("startsAt")
        );
        assert!(
            err(r#"{"alerts":[{"status":"pending","labels":{"alertname":"GrayguardRuleShedding","rule":"r"},"startsAt":"2026-11-30T15:00:00Z"}]}"#)
                .contains("neither firing nor resolved")
        );
        // Other alerts only: nothing to keep, and no error.
        let n = parse(br#"{"alerts":[{"labels":{"alertname":"NodeDiskFull"}}]}"#).unwrap();
        assert_eq!((n.shed.len(), n.ignored), (0, 1));
    }

    #[test]
    fn the_shed_alerts_are_the_rules_files() {
        let rules = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../mesh-config/prometheus/rules.yaml"),
        )
        .unwrap();
        for name in SHED_ALERTS {
            assert!(
                rules.contains(&format!("- alert: {name}\n")),
                "{name} is not an alert of mesh-config/prometheus/rules.yaml"
            );
        }
    }
}
