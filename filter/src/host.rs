//! What the filter's decision core needs from its host, as a small interface: the clock,
//! shared data with compare-and-swap, the board's change mark, logs and metrics.
//!
//! Envoy implements it with proxy-wasm host calls (`crate::glue`); [`MemoryHost`]
//! implements it in memory with the same semantics, so that every transition (trip,
//! probe, settle, evaluate), races between workers and the host's own failures (shared-data
//! errors, CAS contention, a clock going backwards) are tested on the host, and the
//! detection simulator drives the very code Envoy runs.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::metrics::Counter;

/// Why a shared-data write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareError {
    /// Another writer changed the value since it was read.
    CasMismatch,
    /// Anything else the host refused.
    Failed,
}

/// Log levels the core uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The host interface of the decision core.
pub trait Host {
    /// Nanoseconds since the epoch by the proxy clock (0 if the host cannot tell).
    fn now_ns(&self) -> u64;
    /// A shared-data value and its CAS token; `(None, None)` when missing or on error.
    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes a shared-data value, only if its CAS token is still `cas` (when given).
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ShareError>;
    /// The breaker board's change mark (process-wide); `None` when the host cannot tell.
    fn board_mark(&self) -> Option<u64>;
    /// Moves the board's change mark after a write of the board.
    fn bump_board_mark(&self);
    fn log(&self, level: Level, line: &str);
    /// Adds to a process-wide counter.
    fn add_counter(&self, c: Counter, n: u64);
    /// Sets a process-wide gauge by its stat name (defined on first use).
    fn set_gauge(&self, name: &str, value: u64);
    /// Adds to a process-wide counter by its stat name (defined on first use: a counter
    /// whose name carries labels, such as a rule's).
    fn add_named_counter(&self, name: &str, n: u64);
    /// Sends an HTTP call (`:method`, `:path` and `:authority` among `headers`) to an Envoy
    /// cluster; its answer comes back through the glue ([`crate::engine::Engine::answered`])
    /// with the token returned here.
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, ShareError>;
}

/// An HTTP call [`MemoryHost`] was asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub timeout_ms: u64,
}

/// Faults [`MemoryHost`] can inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every shared-data write fails.
    pub writes_fail: bool,
    /// This many CAS writes still to fail with a mismatch, as if another worker won.
    pub cas_conflicts: u32,
    /// Every shared-data read returns nothing.
    pub reads_fail: bool,
    /// Every HTTP call is refused by the host.
    pub dispatch_fails: bool,
}

#[derive(Debug, Default)]
struct Inner {
    clock_ns: Cell<u64>,
    store: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    mark: Cell<u64>,
    logs: RefCell<Vec<(Level, String)>>,
    counters: RefCell<HashMap<Counter, u64>>,
    gauges: RefCell<HashMap<String, u64>>,
    named_counters: RefCell<HashMap<String, u64>>,
    faults: Cell<Faults>,
    calls: RefCell<Vec<Call>>,
}

/// One Envoy process in memory: clones share the clock, shared data, the change mark, the
/// logs and the metrics, as the VMs of Envoy's workers do.
#[derive(Debug, Clone, Default)]
pub struct MemoryHost {
    inner: Rc<Inner>,
}

impl MemoryHost {
    pub fn new(start_ns: u64) -> MemoryHost {
        let h = MemoryHost::default();
        h.inner.clock_ns.set(start_ns);
        h
    }

    pub fn set_now(&self, ns: u64) {
        self.inner.clock_ns.set(ns);
    }

    pub fn advance_ms(&self, ms: u64) {
        let c = &self.inner.clock_ns;
        c.set(c.get().saturating_add(ms.saturating_mul(1_000_000)));
    }

    pub fn set_faults(&self, f: Faults) {
        self.inner.faults.set(f);
    }

    /// The log lines so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.inner.logs.borrow().clone()
    }

    pub fn counter(&self, c: Counter) -> u64 {
        self.inner.counters.borrow().get(&c).copied().unwrap_or(0)
    }

    /// The HTTP calls sent so far (a call's token is its position here).
    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.borrow().clone()
    }

    /// A gauge by its stat name.
    pub fn gauge(&self, name: &str) -> Option<u64> {
        self.inner.gauges.borrow().get(name).copied()
    }

    /// A counter added to by its stat name ([`Host::add_named_counter`]; 0 if never).
    pub fn named_counter(&self, name: &str) -> u64 {
        self.inner
            .named_counters
            .borrow()
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Every gauge set so far, by stat name.
    pub fn gauges(&self) -> HashMap<String, u64> {
        self.inner.gauges.borrow().clone()
    }
}

impl Host for MemoryHost {
    fn now_ns(&self) -> u64 {
        self.inner.clock_ns.get()
    }

    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        if self.inner.faults.get().reads_fail {
            return (None, None);
        }
        match self.inner.store.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ShareError> {
        let mut f = self.inner.faults.get();
        if f.writes_fail {
            return Err(ShareError::Failed);
        }
        if cas.is_some() && f.cas_conflicts > 0 {
            f.cas_conflicts -= 1;
            self.inner.faults.set(f);
            return Err(ShareError::CasMismatch);
        }
        let mut store = self.inner.store.borrow_mut();
        // Envoy's semantics: a CAS of 0 or none always writes; otherwise it must match.
        if let (Some(want), Some((_, have))) = (cas.filter(|c| *c != 0), store.get(key))
            && want != *have
        {
            return Err(ShareError::CasMismatch);
        }
        let next = self.inner.next_cas.get().wrapping_add(1).max(1);
        self.inner.next_cas.set(next);
        store.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    fn board_mark(&self) -> Option<u64> {
        Some(self.inner.mark.get())
    }

    fn bump_board_mark(&self) {
        self.inner.mark.set(self.inner.mark.get().wrapping_add(1));
    }

    fn log(&self, level: Level, line: &str) {
        self.inner.logs.borrow_mut().push((level, line.to_string()));
    }

    fn add_counter(&self, c: Counter, n: u64) {
        *self.inner.counters.borrow_mut().entry(c).or_default() += n;
    }

    fn set_gauge(&self, name: &str, value: u64) {
        self.inner
            .gauges
            .borrow_mut()
            .insert(name.to_string(), value);
    }

    fn add_named_counter(&self, name: &str, n: u64) {
        *self
            .inner
            .named_counters
            .borrow_mut()
            .entry(name.to_string())
            .or_default() += n;
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, ShareError> {
        if self.inner.faults.get().dispatch_fails {
            return Err(ShareError::Failed);
        }
        let mut calls = self.inner.calls.borrow_mut();
        let token = u32::try_from(calls.len()).map_err(|_| ShareError::Failed)?;
        calls.push(Call {
            cluster: cluster.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
            timeout_ms,
        });
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_semantics_match_envoys() {
        let h = MemoryHost::new(0);
        assert_eq!(h.get_shared("k"), (None, None));
        h.set_shared("k", b"a", None).unwrap();
        let (v, cas) = h.get_shared("k");
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        let other = h.clone();
        other.set_shared("k", b"b", cas).unwrap();
        assert_eq!(h.set_shared("k", b"c", cas), Err(ShareError::CasMismatch));
        h.set_shared("k", b"d", None).unwrap();
        assert_eq!(h.get_shared("k").0.as_deref(), Some(&b"d"[..]));
    }

    #[test]
    fn faults_are_injected() {
        let h = MemoryHost::new(0);
        h.set_shared("k", b"a", None).unwrap();
        let cas = h.get_shared("k").1;
        h.set_faults(Faults {
            cas_conflicts: 2,
            ..Faults::default()
        });
        assert_eq!(h.set_shared("k", b"x", cas), Err(ShareError::CasMismatch));
        assert_eq!(h.set_shared("k", b"x", cas), Err(ShareError::CasMismatch));
        assert_eq!(h.set_shared("k", b"x", cas), Ok(()));
        h.set_faults(Faults {
            writes_fail: true,
            ..Faults::default()
        });
        assert_eq!(h.set_shared("k", b"y", None), Err(ShareError::Failed));
        h.set_faults(Faults {
            reads_fail: true,
            ..Faults::default()
        });
        assert_eq!(h.get_shared("k"), (None, None));
    }
}
