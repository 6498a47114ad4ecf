//! The proxy-wasm glue: Envoy's side of [`Host`] and the root and HTTP contexts, which only
//! move headers, time, shared data and metrics between Envoy and the decision core
//! ([`crate::engine::Engine`]). Nothing here decides anything.

mod http;
mod root;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::engine::Engine;
use crate::host::{Host, Level, ShareError};
use crate::metrics::Counter;

pub use root::Root;

/// Envoy as the core's host: host calls, and the ids of the metrics this VM defined.
pub struct EnvoyHost {
    counters: Vec<Option<u32>>,
    /// Gauges by stat name, defined on first use (a per-alert gauge's name carries its link).
    gauges: RefCell<HashMap<String, Option<u32>>>,
    /// Counters whose names carry labels, by stat name, defined on first use.
    named_counters: RefCell<HashMap<String, Option<u32>>>,
    board_writes: Option<u32>,
}

impl EnvoyHost {
    /// Defines the counters (a metric that cannot be defined is skipped, never fatal).
    pub fn define() -> EnvoyHost {
        let def = |t, name: &str| hostcalls::define_metric(t, name).ok();
        EnvoyHost {
            counters: Counter::all()
                .into_iter()
                .map(|c| def(MetricType::Counter, &c.name()))
                .collect(),
            gauges: RefCell::new(HashMap::new()),
            named_counters: RefCell::new(HashMap::new()),
            board_writes: def(
                MetricType::Gauge,
                grayguard_contract::metrics::filter::BOARD_WRITES,
            ),
        }
    }
}

impl Host for EnvoyHost {
    fn now_ns(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ShareError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|s| match s {
            Status::CasMismatch => ShareError::CasMismatch,
            _ => ShareError::Failed,
        })
    }

    fn board_mark(&self) -> Option<u64> {
        self.board_writes
            .and_then(|id| hostcalls::get_metric(id).ok())
    }

    fn bump_board_mark(&self) {
        if let Some(id) = self.board_writes {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn log(&self, level: Level, line: &str) {
        match level {
            Level::Info => info!("{line}"),
            Level::Warn => warn!("{line}"),
            Level::Error => error!("{line}"),
        }
    }

    fn add_counter(&self, c: Counter, n: u64) {
        if let Some(Some(id)) = self.counters.get(c.index()) {
            let _ = hostcalls::increment_metric(*id, n.min(i64::MAX as u64) as i64);
        }
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, ShareError> {
        hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            Some(body),
            Vec::new(),
            std::time::Duration::from_millis(timeout_ms),
        )
        .map_err(|_| ShareError::Failed)
    }

    fn add_named_counter(&self, name: &str, n: u64) {
        let mut counters = self.named_counters.borrow_mut();
        let id = *counters
            .entry(name.to_string())
            .or_insert_with(|| hostcalls::define_metric(MetricType::Counter, name).ok());
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, n.min(i64::MAX as u64) as i64);
        }
    }

    fn set_gauge(&self, name: &str, value: u64) {
        let mut gauges = self.gauges.borrow_mut();
        let id = *gauges
            .entry(name.to_string())
            .or_insert_with(|| hostcalls::define_metric(MetricType::Gauge, name).ok());
        if let Some(id) = id {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// One VM: its core and its host.
pub struct Vm {
    pub engine: Engine,
    pub host: EnvoyHost,
}
