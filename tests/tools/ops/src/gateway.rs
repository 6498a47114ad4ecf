//! What each gateway says about itself right now, from its Envoy admin: the Envoy build and
//! uptime (`/server_info`), every rule's breaker and alert (`/stats/prometheus`), and the
//! grayguard settings in force (the plugin configuration in `/config_dump`).

use std::collections::BTreeMap;

use grayguard_contract::metrics::filter;
use serde_json::Value;

use grayguard_client::exposition;
use grayguard_client::fetch::Client;

use crate::queries::ALERT;

/// One gateway's state; each part is an error when its admin endpoint did not answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub url: String,
    /// Envoy version and state, uptime.
    pub server: Result<Server, String>,
    /// Rule → breaker state (0 closed, 1 open, 2 half-open) and whether it is alerting.
    pub rules: Result<BTreeMap<String, RuleState>, String>,
    /// The breach settings as `key` → value, flattened (`latency.max_ratio`, ...).
    pub settings: Result<BTreeMap<String, String>, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub version: String,
    pub state: String,
    pub uptime: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleState {
    pub breaker: Option<u8>,
    pub alerting: bool,
}

impl RuleState {
    pub fn describe(self) -> &'static str {
        match (self.breaker, self.alerting) {
            (_, true) => "alerting: waits for a confirmation",
            (Some(1), _) => "shedding (open)",
            (Some(2), _) => "probing (half-open)",
            (Some(0), _) => "closed",
            _ => "unknown",
        }
    }
}

/// Reads the gateway whose admin is at `url`.
pub fn fetch(client: &Client, url: &str) -> Gateway {
    let base = url.trim_end_matches('/');
    let get = |path: &str| {
        client
            .get(&format!("{base}{path}"), &[])
            .map_err(|e| e.to_string())
    };
    Gateway {
        url: base.to_string(),
        server: get("/server_info").and_then(|b| server(&b)),
        rules: get("/stats/prometheus").map(|t| rules(&t)),
        settings: get("/config_dump").and_then(|b| settings(&b)),
    }
}

/// The interesting part of `/server_info`.
pub fn server(body: &str) -> Result<Server, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("/server_info: {e}"))?;
    let text = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    // "9e55…/1.40.0/Clean/RELEASE/BoringSSL": the second part is the release.
    let version = text("version");
    let release = version.split('/').nth(1).unwrap_or(&version).to_string();
    Ok(Server {
        version: release,
        state: text("state"),
        uptime: text("uptime_current_epoch"),
    })
}

/// Rule states from the admin's Prometheus text.
pub fn rules(text: &str) -> BTreeMap<String, RuleState> {
    let mut out: BTreeMap<String, RuleState> = BTreeMap::new();
    for s in exposition::samples(text, filter::RULE_BREAKER_STATE) {
        if let Some(rule) = s.labels.get("rule") {
            out.entry(rule.clone()).or_default().breaker = Some(s.value.clamp(0.0, 255.0) as u8);
        }
    }
    for s in exposition::samples(text, ALERT) {
        if let Some(rule) = s.labels.get("rule") {
            let e = out.entry(rule.clone()).or_default();
            e.alerting |= s.value > 0.0;
        }
    }
    out
}

/// The `breach` section (and rule names) of the grayguard plugin configuration found
/// anywhere in a config dump (a static listener, or an extension config from Istio).
pub fn settings(body: &str) -> Result<BTreeMap<String, String>, String> {
    let dump: Value = serde_json::from_str(body).map_err(|e| format!("/config_dump: {e}"))?;
    let config = find_plugin_config(&dump)
        .ok_or("/config_dump: no grayguard plugin configuration (root_id grayguard)")?;
    let parsed: Value = serde_json::from_str(config)
        .map_err(|e| format!("the grayguard plugin configuration is not JSON: {e}"))?;
    let mut out = crate::info::flatten(&parsed["breach"]);
    let names: Vec<&str> = parsed["rules"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    out.insert("rules".into(), names.join(", "));
    Ok(out)
}

fn find_plugin_config(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) => {
            if m.get("root_id").and_then(Value::as_str) == Some("grayguard")
                && let Some(s) = m["configuration"]["value"].as_str()
            {
                return Some(s);
            }
            m.values().find_map(find_plugin_config)
        }
        Value::Array(items) => items.iter().find_map(find_plugin_config),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_info() {
        let s = server(r#"{"version":"9e55/1.40.0/Clean/RELEASE/BoringSSL","state":"LIVE","uptime_current_epoch":"42s"}"#).unwrap();
        assert_eq!(s.version, "1.40.0");
        assert_eq!(s.state, "LIVE");
        assert_eq!(s.uptime, "42s");
        assert!(server("nope").is_err());
    }

    #[test]
    fn reads_rule_states() {
        let text = "grayguard_rule_breaker_state{rule=\"crane-cameras\"} 1\n\
                    grayguard_rule_breaker_state{rule=\"night\"} 0\n\
                    grayguard_alert{rule=\"night\",trigger=\"latency\",confirm=\"rule=night&sig=ab\"} 1\n";
        let r = rules(text);
        assert_eq!(r["crane-cameras"].describe(), "shedding (open)");
        assert_eq!(r["night"].describe(), "alerting: waits for a confirmation");
        assert!(rules("").is_empty());
    }

    #[test]
    fn finds_the_plugin_configuration_in_a_config_dump() {
        let plugin = r#"{"stable":"v9-prod","gray":"v10-gray","rules":[{"name":"crane-cameras"}],"breach":{"arl":1000000,"latency":{"max_ratio":1.25}}}"#;
        let dump = serde_json::json!({"configs": [{"dynamic_listeners": []}, {"static_listeners": [{"listener": {
        "filter_chains": [{"filters": [{"typed_config": {"http_filters": [{"typed_config": {"config": {
            "root_id": "grayguard",
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": plugin}
        }}}]}}]}]}}]}]});
        let s = settings(&dump.to_string()).unwrap();
        assert_eq!(s["arl"], "1000000");
        assert_eq!(s["latency.max_ratio"], "1.25");
        assert_eq!(s["rules"], "crane-cameras");
        assert!(settings("{}").unwrap_err().contains("no grayguard plugin"));
    }
}
