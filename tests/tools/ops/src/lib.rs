//! grayguard's operator tools, read from outside the mesh (HTTP APIs and logs), never in the
//! request path:
//!
//! - `grayguard-report` writes (or serves) the postmortem of an incident as one
//!   self-contained HTML page: the filter's incident records (`record`, `incident`), charts
//!   from Prometheus around it (`queries`, `chart`), the gateways' state
//!   (`gateway`), what the gray and stable sidecars serve (`info`), the gray pods' logs;
//!   assembled by `report`, rendered by `html`, served by `serve`. With `--reports-dir` it
//!   keeps each incident's report, driven by Alertmanager's webhook (`alert_hook`,
//!   `keeper`): one file per incident on disk (`kept`, its flags `kept_cli`) and an index
//!   (`kept_index`). It also writes (or serves) a rule's promotion report (`promotion`,
//!   `promotion_chart`, `promotion_html`) and answers Flagger's confirm-promotion and
//!   rollback webhooks on the promotion verdict (`webhook`), both routed by `routes`.
//! - `grayguard-alert-sink` receives Alertmanager's webhook, Slack and WeChat Work
//!   notifications on loopback and shows what a person would receive (`sink`).
//!
//! Prometheus' API, the HTTP reads, the metrics text and the chart style are the client
//! library's (`grayguard-client`), shared with the demo and the soak.

pub mod alert_hook;
pub mod answer;
pub mod body;
pub mod chart;
pub mod gateway;
pub mod html;
pub mod incident;
pub mod info;
pub mod keeper;
pub mod kept;
pub mod kept_cli;
pub mod kept_index;
pub mod promotion;
pub mod promotion_chart;
pub mod promotion_html;
pub mod queries;
pub mod record;
pub mod report;
pub mod report_cli;
pub mod routes;
pub mod serve;
pub mod sink;
pub mod sink_server;
pub mod webhook;
