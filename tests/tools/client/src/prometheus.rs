//! Prometheus' HTTP API: range and instant queries, and the parsing of their JSON answers
//! into series (pure, so it is tested on recorded answers).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::Value;

use crate::fetch::Client;

/// One series of a query's answer: its labels and its samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(Timestamp, f64)>,
}

impl Series {
    /// The value of label `name`, or "" when it has none.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A Prometheus server.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    client: Client,
}

impl Prometheus {
    /// `base` is the server's URL (`http://127.0.0.1:9090`).
    pub fn new(base: &str, client: Client) -> Prometheus {
        Prometheus {
            base: base.trim_end_matches('/').to_string(),
            client,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `expr` evaluated every `step_s` seconds from `from` to `to`.
    pub fn range(
        &self,
        expr: &str,
        from: Timestamp,
        to: Timestamp,
        step_s: u32,
    ) -> Result<Vec<Series>, String> {
        let url = format!("{}/api/v1/query_range", self.base);
        let (start, end, step) = (
            from.as_second().to_string(),
            to.as_second().to_string(),
            step_s.max(1).to_string(),
        );
        let body = self
            .client
            .get(
                &url,
                &[
                    ("query", expr),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                ],
            )
            .map_err(|e| e.to_string())?;
        parse(&body, "matrix").map_err(|e| format!("{expr}: {e}"))
    }

    /// `expr` evaluated at `at`: one sample per series.
    pub fn instant(&self, expr: &str, at: Timestamp) -> Result<Vec<Series>, String> {
        let url = format!("{}/api/v1/query", self.base);
        let time = at.as_second().to_string();
        let body = self
            .client
            .get(&url, &[("query", expr), ("time", &time)])
            .map_err(|e| e.to_string())?;
        parse(&body, "vector").map_err(|e| format!("{expr}: {e}"))
    }
}

/// The series of a query answer whose result type must be `kind` (`matrix` or `vector`).
/// Samples that are not finite numbers (`NaN`, `+Inf`: a division by zero rate) are dropped.
pub fn parse(body: &str, kind: &str) -> Result<Vec<Series>, String> {
    let json: Value =
        serde_json::from_str(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if json["status"] != "success" {
        return Err(format!(
            "Prometheus says {}: {}",
            json["errorType"].as_str().unwrap_or("error"),
            json["error"].as_str().unwrap_or("(no message)")
        ));
    }
    let data = &json["data"];
    if data["resultType"] != kind {
        return Err(format!("expected a {kind}, got {}", data["resultType"]));
    }
    let results = data["result"].as_array().ok_or("no result list")?;
    results
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let raw: Vec<&Value> = match kind {
                "vector" => vec![&r["value"]],
                _ => r["values"]
                    .as_array()
                    .map(|v| v.iter().collect())
                    .unwrap_or_default(),
            };
            let points = raw.into_iter().filter_map(sample).collect();
            Ok(Series { labels, points })
        })
        .collect()
}

/// `[unix_seconds, "value"]`, if the value is a finite number.
fn sample(v: &Value) -> Option<(Timestamp, f64)> {
    let secs = v[0].as_f64()?;
    let value: f64 = v[1].as_str()?.parse().ok()?;
    let at = Timestamp::from_millisecond((secs * 1000.0).round() as i64).ok()?;
    value.is_finite().then_some((at, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_matrix_dropping_non_finite_samples() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"trigger":"box_count","rule":"crane-cameras"},
             "values":[[1764515285,"12.5"],[1764515290.5,"NaN"],[1764515295,"100"]]},
            {"metric":{},"values":[]}]}}"#;
        let series = parse(body, "matrix").unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].label("trigger"), "box_count");
        assert_eq!(series[0].label("missing"), "");
        let values: Vec<f64> = series[0].points.iter().map(|p| p.1).collect();
        assert_eq!(values, vec![12.5, 100.0]);
        assert_eq!(series[0].points[0].0.as_second(), 1764515285);
        assert!(series[1].points.is_empty());
    }

    #[test]
    fn reads_a_vector() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"a"},"value":[1764515285.25,"2"]}]}}"#;
        let series = parse(body, "vector").unwrap();
        assert_eq!(series[0].points.len(), 1);
        assert_eq!(series[0].points[0].0.as_millisecond(), 1764515285250);
    }

    #[test]
    fn errors_say_what_prometheus_said() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert_eq!(
            parse(body, "matrix").unwrap_err(),
            "Prometheus says bad_data: parse error at char 3"
        );
        let wrong = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(
            parse(wrong, "matrix")
                .unwrap_err()
                .contains("expected a matrix")
        );
        assert!(parse("<html>", "matrix").unwrap_err().contains("not JSON"));
    }
}
