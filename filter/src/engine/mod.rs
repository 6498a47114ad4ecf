//! The decision core of one VM (one per Envoy worker): [`Engine`], its state, and the
//! rooms its work is done in — each an `impl Engine` block of its own:
//!
//! - `request`: what a request's headers ask for before it is routed (spoofed headers
//!   stripped; an operator request answered or refused);
//! - `route`: where a request goes, and the headers that say so;
//! - `reply`: a reply read and settled (its signals, the detector, the flag, a probe);
//! - `tick`: the periodic work (the detector's tick, the gauges, the counters);
//! - `breaker`: the breaker transitions (trip, probe result, alert) and incident records;
//! - `latch`: the mesh-wide latch calls (queued, sent, answered);
//! - `operator`: a person on the operator listener — confirming or dismissing an alert
//!   through its signed link, shedding a rule directly, releasing a hold;
//! - `hold`: a person's decision held until a person releases it, on this gateway and
//!   through the gray workload on every other (checked from the tick);
//! - `promotion`: the promotion verdict logged when reached and served to the operator.
//!
//! Everything here talks to Envoy only through [`Host`], so the same code runs inside the
//! Wasm VM (`crate::glue`) and on the host in tests and the detection simulator
//! ([`crate::host::MemoryHost`]). Which detector runs is the [`Detector`]'s business.

mod breaker;
mod hold;
mod latch;
mod operator;
mod promotion;
mod reply;
mod request;
mod route;
mod tick;

use std::collections::HashMap;

use grayguard_contract::latch::{self as latching, Request as LatchRequest};

use crate::config::{Config, Scope};
use crate::decision::Routed;
use crate::detect::sequential::evidence::UnitEvidence;
use crate::detect::sequential::plan::Finding;
use crate::detect::{self, Detector};
use crate::host::Host;
use crate::metrics::Pending;
use crate::rules::Draw;
use crate::shared::{self, BoardCache, HostStore, Keys};

pub use hold::{CHECK_EVERY_MS, MAX_LISTING_BYTES};
pub use operator::OperatorCall;

/// What the glue does with a request, as the core decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Route it upstream ([`Engine::upstream_headers`]); the reply settles it.
    Route(Routed),
    /// An operator request: answer it from the gateway, never upstream.
    Answer(OperatorReply),
}

/// The answer to an operator request (`/grayguard/...`), sent by the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorReply {
    pub status: u16,
    /// A one-line JSON body.
    pub body: String,
}

impl OperatorReply {
    fn new(status: u16, result: &str, detail: &str) -> OperatorReply {
        OperatorReply {
            status,
            body: serde_json::json!({ "result": result, "detail": detail }).to_string(),
        }
    }
}

/// One VM's decision core.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    keys: Keys,
    units: usize,
    unit_names: Vec<String>,
    detector: Box<dyn Detector>,
    board: BoardCache,
    draw: Draw,
    pending: Pending,
    /// Gauges as last set by this VM, by stat name (a host call only on change).
    gauges: HashMap<String, u64>,
    /// Per unit: the alert gauge this VM last raised (its name carries the link), so that
    /// it is set back to 0 when the alert ends or the link is renewed.
    alert_gauges: Vec<Option<String>>,
    /// Per unit: the held gauge this VM last raised (its name carries the release link).
    held_gauges: Vec<Option<String>>,
    /// Reused buffer for the decision header text.
    scratch: String,
    /// The clock's last reading by this VM (ticks and requests that needed it), ns.
    last_now_ns: u64,
    /// This gateway's id in latch calls (Envoy's node id).
    gateway: String,
    /// Latch, clear, hold and release calls waiting for the tick.
    latch_outbox: Vec<LatchRequest>,
    /// Hold checks sent and not answered yet.
    checks: Vec<hold::Check>,
    /// Per unit: fallbacks not yet handed to the host.
    fallbacks: Vec<u64>,
    /// Per unit: the gray pods heard from in the current epoch (their `x-served-by`).
    pods: Vec<Vec<String>>,
}

impl Engine {
    /// A VM's core for a validated configuration; `config_text` keys the shared data (a
    /// changed configuration starts clean), `seed` varies per VM.
    pub fn new(cfg: Config, config_text: &[u8], seed: u64) -> Engine {
        let units = cfg.units();
        let unit_names = (0..units)
            .map(|u| match cfg.breach.scope {
                Scope::Rule => cfg.rules.get(u).map_or("?".into(), |r| r.name.clone()),
                Scope::All => "*".into(),
            })
            .collect();
        Engine {
            keys: Keys::new(config_text),
            units,
            unit_names,
            detector: detect::for_config(&cfg),
            board: BoardCache::new(units),
            draw: Draw::new(seed),
            pending: Pending::default(),
            gauges: HashMap::new(),
            alert_gauges: vec![None; units],
            held_gauges: vec![None; units],
            scratch: String::with_capacity(128),
            last_now_ns: 0,
            gateway: "gateway".into(),
            latch_outbox: Vec::new(),
            checks: Vec::new(),
            fallbacks: vec![0; units],
            pods: vec![Vec::new(); units],
            cfg,
        }
    }

    /// This gateway's id in latch calls (the glue passes Envoy's node id).
    pub fn set_gateway(&mut self, id: &str) {
        self.gateway = latching::gateway_id(id);
    }

    /// The id this gateway's latch calls carry.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Re-seeds the per-request draws (the glue seeds from the clock and context id).
    pub fn reseed(&mut self, seed: u64) {
        self.draw = Draw::new(seed);
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn units(&self) -> usize {
        self.units
    }

    /// The name of each unit, as metrics and incidents label it (a rule, or `*`).
    pub fn unit_names(&self) -> &[String] {
        &self.unit_names
    }

    /// Creates the shared board if it is missing (called once per VM at configuration).
    pub fn start(&mut self, host: &impl Host) {
        self.last_now_ns = host.now_ns();
        shared::ensure_board(host, &self.keys.board, self.units);
    }

    /// The line the VM logs once configured.
    pub fn describe(&self) -> String {
        format!(
            "grayguard configured: {} rule(s), {} breaker unit(s), {:?} detector, sync every {} ms, gateway {}",
            self.cfg.rules.len(),
            self.units,
            self.cfg.breach.detector,
            self.cfg.sync_ms,
            self.gateway
        )
    }

    /// The evidence of a unit as this VM last evaluated it.
    pub fn findings(&self, unit: usize) -> &[Finding] {
        self.detector.findings(unit)
    }

    /// The shared evidence of a unit, as stored now.
    pub fn evidence(&self, host: &impl Host, unit: usize) -> Option<UnitEvidence> {
        self.detector.evidence(&self.store(host), unit)
    }

    /// Shared data as the detector sees it.
    fn store<'a, H: Host>(&'a self, host: &'a H) -> HostStore<'a, H> {
        HostStore::new(host, &self.keys, self.units)
    }
}

#[cfg(test)]
mod tests;
