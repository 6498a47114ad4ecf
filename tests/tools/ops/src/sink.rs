//! What a person receives from Alertmanager, decoded: its generic webhook (the alerts as
//! data), a Slack incoming-webhook message, and a WeChat Work application message (with the
//! two calls Alertmanager makes to WeChat's API: a token, then the message). Each becomes a
//! [`Message`]: the text as rendered by Alertmanager's templates and the links in it.
//! `grayguard-alert-sink` serves these on loopback for the local mesh.

use jiff::Timestamp;
use serde_json::{Value, json};

/// Where a message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Webhook,
    Slack,
    Wechat,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Slack => "slack",
            Channel::Wechat => "wechat",
        }
    }
}

/// A link in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// One received notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub channel: Channel,
    pub received_at: Timestamp,
    /// `firing` or `resolved` (of the notification's group), when the payload says.
    pub status: String,
    pub title: String,
    /// The body as a person reads it.
    pub text: String,
    pub links: Vec<Link>,
    /// Alert names in the notification (webhook), or those the text names.
    pub alertnames: Vec<String>,
}

impl Message {
    pub fn to_json(&self) -> Value {
        json!({
            "channel": self.channel.as_str(),
            "received_at": self.received_at.to_string(),
            "status": self.status,
            "title": self.title,
            "text": self.text,
            "links": self.links.iter().map(|l| json!({"label": l.label, "url": l.url})).collect::<Vec<_>>(),
            "alertnames": self.alertnames,
        })
    }

    /// One log line: channel, status, title, then the links.
    pub fn log_line(&self) -> String {
        let links: Vec<String> = self
            .links
            .iter()
            .map(|l| format!("{}: {}", l.label, l.url))
            .collect();
        format!(
            "{} {} {} {}{}{}",
            self.received_at,
            self.channel.as_str(),
            self.status.to_uppercase(),
            self.title,
            if links.is_empty() { "" } else { " | " },
            links.join(" | ")
        )
    }
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("the body is not a JSON object".into()),
        Err(e) => Err(format!("the body is not JSON: {e}")),
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Alertmanager's webhook (version 4): one line per alert with its summary, and its
/// annotations' URLs as links.
pub fn from_webhook(body: &[u8], now: Timestamp) -> Result<Message, String> {
    let m = object(body)?;
    let alerts = m
        .get("alerts")
        .and_then(Value::as_array)
        .ok_or("no `alerts` list: not an Alertmanager webhook")?;
    let mut lines = Vec::new();
    let mut links = Vec::new();
    let mut names = Vec::new();
    for a in alerts {
        let name = text(&a["labels"]["alertname"]);
        let labels: Vec<String> = ["rule", "trigger", "instance"]
            .iter()
            .filter_map(|k| a["labels"][k].as_str().map(|v| format!("{k}={v}")))
            .collect();
        lines.push(format!(
            "[{}] {name} {}: {}",
            text(&a["status"]).to_uppercase(),
            labels.join(" "),
            text(&a["annotations"]["summary"])
        ));
        if let Some(ann) = a["annotations"].as_object() {
            for (k, v) in ann {
                if let Some(url) = v.as_str().filter(|u| u.starts_with("http")) {
                    links.push(Link {
                        label: k.clone(),
                        url: url.to_string(),
                    });
                }
            }
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(Message {
        channel: Channel::Webhook,
        received_at: now,
        status: text(&m.get("status").cloned().unwrap_or_default()),
        title: format!("{} alert(s): {}", alerts.len(), names.join(", ")),
        text: lines.join("\n"),
        links,
        alertnames: names,
    })
}

/// A Slack incoming-webhook message (attachments, as Alertmanager sends them): title,
/// text, and every `<url|label>` link.
pub fn from_slack(body: &[u8], now: Timestamp) -> Result<Message, String> {
    let m = object(body)?;
    let mut title = String::new();
    let mut parts = Vec::new();
    let mut links = Vec::new();
    if let Some(t) = m.get("text").and_then(Value::as_str) {
        parts.push(t.to_string());
    }
    for a in m
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if title.is_empty() {
            title = text(&a["title"]);
        }
        if let Some(url) = a["title_link"].as_str().filter(|u| !u.is_empty()) {
            links.push(Link {
                label: "title link".into(),
                url: url.to_string(),
            });
        }
        parts.push(text(&a["text"]));
    }
    if title.is_empty() && parts.iter().all(String::is_empty) {
        return Err("neither `text` nor `attachments`: not a Slack message".into());
    }
    let body = parts.join("\n");
    links.extend(slack_links(&body));
    Ok(Message {
        channel: Channel::Slack,
        received_at: now,
        status: status_of(&title),
        alertnames: alertnames(&format!("{title}\n{body}")),
        title,
        text: body,
        links,
    })
}

/// A WeChat Work application message (`text` or `markdown`), with its `[label](url)` links
/// (markdown) or bare URLs (text).
pub fn from_wechat(body: &[u8], now: Timestamp) -> Result<Message, String> {
    let m = object(body)?;
    let kind = m.get("msgtype").and_then(Value::as_str).unwrap_or("text");
    let content = m
        .get(kind)
        .and_then(|c| c["content"].as_str())
        .ok_or_else(|| format!("no `{kind}.content`: not a WeChat Work message"))?;
    let title = content
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches(['#', ' '])
        .to_string();
    let links = if kind == "markdown" {
        markdown_links(content)
    } else {
        bare_urls(content)
    };
    Ok(Message {
        channel: Channel::Wechat,
        received_at: now,
        status: status_of(&title),
        alertnames: alertnames(content),
        title,
        text: content.to_string(),
        links,
    })
}

/// `firing` or `resolved`, as the title says (`[FIRING:1] ...`).
fn status_of(title: &str) -> String {
    let upper = title.to_uppercase();
    if upper.contains("RESOLVED") {
        "resolved".into()
    } else if upper.contains("FIRING") {
        "firing".into()
    } else {
        String::new()
    }
}

/// The grayguard alert names a text mentions.
fn alertnames(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.starts_with("Grayguard") && w.len() > "Grayguard".len())
        .map(str::to_string)
        .collect();
    out.dedup();
    out
}

/// Slack's `<url|label>` and `<url>` links.
pub fn slack_links(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        let (url, label) = inner.split_once('|').unwrap_or((inner, inner));
        if url.starts_with("http://") || url.starts_with("https://") {
            out.push(Link {
                label: label.to_string(),
                url: url.to_string(),
            });
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// Markdown `[label](url)` links.
pub fn markdown_links(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(mid) = after.find("](") else { break };
        let Some(close) = after[mid + 2..].find(')') else {
            break;
        };
        // The label starts after the last `[` before `](` (text may hold other brackets).
        let label = after[..mid].rsplit('[').next().unwrap_or_default();
        let url = &after[mid + 2..mid + 2 + close];
        if !label.contains(']') && (url.starts_with("http://") || url.starts_with("https://")) {
            out.push(Link {
                label: label.to_string(),
                url: url.to_string(),
            });
        }
        rest = &after[mid + 2 + close..];
    }
    out
}

/// Bare `http(s)://` URLs, up to the next space.
fn bare_urls(text: &str) -> Vec<Link> {
    text.split_whitespace()
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|u| Link {
            label: u.to_string(),
            url: u.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_764_515_000).unwrap()
    }

    #[test]
    fn decodes_alertmanagers_webhook() {
        let body = br#"{"version":"4","status":"firing","alerts":[{"status":"firing",
            "labels":{"alertname":"GrayguardShedAwaitsConfirmation","rule":"crane-cameras","trigger":"box_count","instance":"127.0.0.1:9901"},
            "annotations":{"summary":"shed gray?","confirm_url":"http://127.0.0.1:10100/grayguard/confirm?rule=crane-cameras&sig=ab","description":"x"},
            "startsAt":"2026-11-30T15:00:00Z"}]}"#;
        let m = from_webhook(body, now()).unwrap();
        assert_eq!(m.status, "firing");
        assert_eq!(m.alertnames, vec!["GrayguardShedAwaitsConfirmation"]);
        assert!(
            m.text.contains("rule=crane-cameras trigger=box_count"),
            "{}",
            m.text
        );
        assert_eq!(m.links.len(), 1);
        assert_eq!(m.links[0].label, "confirm_url");
        assert!(
            m.log_line()
                .contains("confirm_url: http://127.0.0.1:10100/")
        );
        assert!(from_webhook(b"{}", now()).unwrap_err().contains("alerts"));
        assert!(from_webhook(b"[1]", now()).is_err());
    }

    #[test]
    fn decodes_a_slack_message_and_its_links() {
        let body = br##"{"channel":"#oncall","attachments":[{"title":"[FIRING:1] GrayguardShedAwaitsConfirmation crane-cameras","title_link":"http://127.0.0.1:9096/report?rule=crane-cameras&at=1",
            "text":"*shed gray?*\n<http://127.0.0.1:10100/grayguard/confirm?rule=crane-cameras&sig=ab|Shed gray now> - <http://127.0.0.1:9096/report?rule=crane-cameras&at=1|Incident report>","color":"danger"}]}"##;
        let m = from_slack(body, now()).unwrap();
        assert_eq!(m.status, "firing");
        assert_eq!(m.alertnames, vec!["GrayguardShedAwaitsConfirmation"]);
        let labels: Vec<&str> = m.links.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            vec!["title link", "Shed gray now", "Incident report"]
        );
        assert!(m.links[1].url.ends_with("sig=ab"));
        assert!(from_slack(b"{}", now()).is_err());
    }

    #[test]
    fn decodes_a_wechat_message() {
        let md = br###"{"touser":"@all","agentid":"1000002","msgtype":"markdown","safe":"0",
            "markdown":{"content":"## [RESOLVED] GrayguardRuleShedding crane-cameras\n[Incident report](http://127.0.0.1:9096/report?rule=crane-cameras&at=1)"}}"###;
        let m = from_wechat(md, now()).unwrap();
        assert_eq!(m.status, "resolved");
        assert_eq!(m.title, "[RESOLVED] GrayguardRuleShedding crane-cameras");
        assert_eq!(m.links[0].label, "Incident report");
        let plain =
            br#"{"msgtype":"text","text":{"content":"[FIRING:1] x\nreport: http://a/b?c=d end"}}"#;
        assert_eq!(
            from_wechat(plain, now()).unwrap().links[0].url,
            "http://a/b?c=d"
        );
        assert!(from_wechat(br#"{"msgtype":"markdown"}"#, now()).is_err());
    }

    #[test]
    fn a_held_rules_release_link_comes_through_every_channel() {
        let release = "http://127.0.0.1:10100/grayguard/release?rule=crane-cameras&trigger=box_count&exp=1&sig=ab";
        let hook = json!({"version": "4", "status": "firing", "alerts": [{
            "status": "firing",
            "labels": {"alertname": "GrayguardRuleHeld", "rule": "crane-cameras", "trigger": "box_count"},
            "annotations": {"summary": "held", "release_url": release},
        }]});
        let m = from_webhook(hook.to_string().as_bytes(), now()).unwrap();
        assert_eq!(m.alertnames, vec!["GrayguardRuleHeld"]);
        assert_eq!(
            m.links,
            vec![Link {
                label: "release_url".into(),
                url: release.into()
            }]
        );
        let report = "http://127.0.0.1:9096/report?rule=crane-cameras&at=1";
        let slack = json!({"attachments": [{
            "title": "[FIRING:1] GrayguardRuleHeld · rule crane-cameras",
            "text": format!(":unlock: <{release}|Release> (signed)\n:page_facing_up: <{report}|Incident report>"),
        }]});
        let m = from_slack(slack.to_string().as_bytes(), now()).unwrap();
        let labels: Vec<&str> = m.links.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["Release", "Incident report"]);
        assert_eq!(m.links[0].url, release);
        let wechat = json!({"msgtype": "markdown", "markdown": {"content": format!(
            "## [FIRING:1] GrayguardRuleHeld · rule crane-cameras\n[Release]({release}) (signed)\n[Incident report]({report})"
        )}});
        let m = from_wechat(wechat.to_string().as_bytes(), now()).unwrap();
        assert_eq!(m.status, "firing");
        assert_eq!(
            (m.links[0].label.as_str(), m.links[0].url.as_str()),
            ("Release", release)
        );
        assert!(m.log_line().contains(&format!("Release: {release}")));
    }

    #[test]
    fn link_extraction_skips_what_is_not_a_link() {
        assert!(slack_links("a <b> <mailto:x|y> <http://u").is_empty());
        assert_eq!(slack_links("<https://a/b>")[0].label, "https://a/b");
        assert!(markdown_links("[a](b) [c](ftp://x) (http://y)").is_empty());
        assert_eq!(markdown_links("x [a [b](http://c)")[0].label, "b");
    }
}
