//! The HTTP context: decide and route each request, stamp the decision on the response,
//! and feed gray and stable responses to the windows, the probe judge and the flag.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, Bytes, MapType};

use crate::breach::{Observation, Trigger};
use crate::decision::{self, BreakerView, Decision, Why};
use crate::metrics::{Counter, Histogram};
use crate::root::{State, now_ns};
use crate::rules::{self, BUCKETS};
use crate::schedule;
use crate::signals;

use grayguard_contract::headers::{
    BOX_COUNT as DEFAULT_BOX_HEADER, DECISION as DECISION_HEADER,
    INFERENCE_LATENCY_MS as DEFAULT_LATENCY_HEADER, TIME_OF_DAY as TIME_HEADER,
};

pub struct Http {
    state: Option<Rc<RefCell<State>>>,
    decision: Option<Decision>,
    /// The breaker generation a probe was sent under.
    probe_generation: Option<u32>,
    responded: bool,
}

impl Http {
    pub fn new(state: Option<Rc<RefCell<State>>>) -> Http {
        Http {
            state,
            decision: None,
            probe_generation: None,
            responded: false,
        }
    }
}

fn response_header(name: &str) -> Option<Bytes> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

/// A header map as the host hands it over. Values are bytes: a header that is not UTF-8
/// (HTTP allows obs-text) reads as absent for matching and as malformed for signals, and
/// never panics the VM the way a `String` map would.
type HeaderPairs = Vec<(String, Bytes)>;

fn lookup<'a>(headers: &'a HeaderPairs, name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// A signal value as text; bytes that are not UTF-8 are a malformed signal.
fn signal_text(v: &[u8]) -> Result<&str, signals::Malformed> {
    std::str::from_utf8(v).map_err(|_| signals::Malformed)
}

fn lookup_str<'a>(headers: &'a HeaderPairs, name: &str) -> Option<&'a str> {
    lookup(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(state) = &self.state else {
            return Action::Continue;
        };
        let Ok(mut guard) = state.try_borrow_mut() else {
            return Action::Continue;
        };
        let s = &mut *guard;
        let cfg = &s.cfg;
        // One host call for all request headers: cheaper than a lookup per name once the
        // strip checks, the rules and the sticky key each need one.
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let find = |name: &str| lookup_str(&headers, name);

        // A client must not pick its route or fake a breach: drop what it sent. Requests
        // without them (the normal case) cost no host call here.
        for name in [
            cfg.route_header.as_str(),
            DECISION_HEADER,
            cfg.breach.flag_header.as_str(),
        ] {
            if lookup(&headers, name).is_some() {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
                s.metrics.count(Counter::SpoofedHeadersStripped);
            }
        }

        let now = now_ns();
        let minute = cfg
            .trust_time_header
            .then(|| find(TIME_HEADER).and_then(schedule::parse_time_header))
            .flatten()
            .unwrap_or_else(|| schedule::minute_of_day(now, cfg.utc_offset_min));

        let rule = rules::first_match(&cfg.rules, find, minute);
        let matched = rule.and_then(|i| cfg.rules.get(i).map(|r| (i, r)));
        let share_bucket = match matched {
            Some((_, r)) if r.percent_bp < BUCKETS => {
                match r.sticky_header.as_deref().and_then(find) {
                    Some(id) => rules::sticky_bucket(id.as_bytes()),
                    None => s.draw.bucket(),
                }
            }
            _ => 0,
        };
        let unit = rule.map_or(0, |i| cfg.unit_of(i));
        let (board, keys, units, draw) = (&mut s.board, &s.keys, s.units, &mut s.draw);
        let metrics = &s.metrics;
        let mut generation = 0;
        let d = decision::decide(
            matched.map(|(i, r)| (i, r.percent_bp)),
            share_bucket,
            || {
                let b = board
                    .current(&keys.board, units, metrics.board_mark())
                    .0
                    .get(unit)
                    .copied()
                    .unwrap_or_default();
                generation = b.generation;
                BreakerView {
                    phase: b.phase(now),
                    trigger: b.trigger,
                }
            },
            || draw.bucket(),
            cfg.breach.probe_bp,
            cfg.breach.dry_run,
        );

        let route = if d.gray { &cfg.gray } else { &cfg.stable };
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            &cfg.route_header,
            Some(route.as_bytes()),
        );
        let hh = [
            b'0' + (minute / 600) as u8,
            b'0' + ((minute / 60) % 10) as u8,
        ];
        let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, TIME_HEADER, Some(&hh));

        s.metrics.count(if d.gray {
            Counter::RoutedGray
        } else {
            Counter::RoutedStable
        });
        match d.why {
            Why::Shed(_) => s.metrics.count(Counter::ShedRequests),
            Why::Probe => {
                s.metrics.count(Counter::ProbeRequests);
                self.probe_generation = Some(generation);
            }
            Why::DryRun(_) => s.metrics.count(Counter::DryRunRequests),
            Why::NoRule | Why::Matched | Why::Percent => {}
        }
        self.decision = Some(d);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.responded = true;
        let (Some(d), Some(state)) = (self.decision, &self.state) else {
            return Action::Continue;
        };
        let Ok(mut guard) = state.try_borrow_mut() else {
            return Action::Continue;
        };
        let s = &mut *guard;
        let name = d
            .rule
            .and_then(|i| s.cfg.rules.get(i))
            .map_or("", |r| r.name.as_str());
        // Rendered into a buffer kept by the VM: no allocation per response.
        let mut text = std::mem::take(&mut s.scratch);
        text.clear();
        d.header(name).render_into(&mut text);
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpResponseHeaders,
            DECISION_HEADER,
            Some(text.as_bytes()),
        );
        s.scratch = text;

        let b = &s.cfg.breach;
        let box_header = b
            .box_count
            .as_ref()
            .map_or(DEFAULT_BOX_HEADER, |t| t.header.as_str());
        if !d.gray {
            if let Some(v) = response_header(box_header) {
                match signal_text(&v).and_then(signals::box_count) {
                    Ok(n) => {
                        s.metrics.record(Histogram::StableBoxCount, n);
                        if b.box_count.is_some() {
                            if let Some(bucket) =
                                s.local.stable.bucket(s.layout, now_ns() / 1_000_000)
                            {
                                bucket.add_boxes(n);
                                s.dirty = true;
                            }
                        }
                    }
                    Err(_) => s.metrics.count(Counter::MalformedSignals),
                }
            }
            return Action::Continue;
        }

        // One host call for all response headers (cheaper than four lookups).
        let headers = hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
        let find = |name: &str| lookup(&headers, name);
        let status = lookup_str(&headers, ":status")
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(0);
        let flag = find(&b.flag_header);
        let lat_header = b
            .latency
            .as_ref()
            .map_or(DEFAULT_LATENCY_HEADER, |t| t.header.as_str());
        let lat_raw = find(lat_header);
        let box_raw = find(box_header);
        let missing = (b.latency.is_some() && lat_raw.is_none())
            || (b.box_count.is_some() && box_raw.is_none());
        let mut obs = Observation {
            flagged: flag.is_some(),
            failed: status == 0 || status >= 500 || missing,
            latency_ms: None,
            boxes: None,
        };
        if let Some(v) = lat_raw {
            match signal_text(v).and_then(signals::latency_ms) {
                Ok(ms) => {
                    s.metrics.record(Histogram::GrayLatencyMs, ms);
                    obs.latency_ms = Some(ms);
                }
                Err(_) => s.metrics.count(Counter::MalformedSignals),
            }
        }
        if let Some(v) = box_raw {
            match signal_text(v).and_then(signals::box_count) {
                Ok(n) => {
                    s.metrics.record(Histogram::GrayBoxCount, n);
                    obs.boxes = Some(n);
                }
                Err(_) => s.metrics.count(Counter::MalformedSignals),
            }
        }
        let reason = flag.map(|v| signals::flag_reason(&String::from_utf8_lossy(v)));
        settle(s, d, self.probe_generation, &obs, reason.as_deref());
        Action::Continue
    }

    fn on_log(&mut self) {
        // A gray request that never got response headers was reset: a failure.
        if self.responded {
            return;
        }
        let (Some(d), Some(state)) = (self.decision, &self.state) else {
            return;
        };
        if !d.gray {
            return;
        }
        if let Ok(mut s) = state.try_borrow_mut() {
            let obs = Observation {
                failed: true,
                ..Observation::default()
            };
            settle(&mut s, d, self.probe_generation, &obs, None);
        }
    }
}

/// Books one gray response: windows, streak, then the probe verdict or the flag.
fn settle(s: &mut State, d: Decision, probe: Option<u32>, obs: &Observation, reason: Option<&str>) {
    let Some(rule) = d.rule else {
        return;
    };
    let unit = s.cfg.unit_of(rule);
    let now = now_ns();
    if obs.failed {
        s.metrics.count(Counter::GrayFailures);
    }
    if s.windowed {
        if let Some(ring) = s.local.gray.get_mut(unit) {
            if let Some(bucket) = ring.bucket(s.layout, now / 1_000_000) {
                bucket.responses += 1;
                bucket.failures += u32::from(obs.failed);
                if let Some(ms) = obs.latency_ms {
                    bucket.add_latency(ms);
                }
                if let Some(n) = obs.boxes {
                    bucket.add_boxes(n);
                }
            }
        }
        if let (Some(streak), Some(keep)) = (
            s.local.streaks.get_mut(unit),
            s.cfg.breach.consecutive_failures,
        ) {
            if obs.failed {
                streak.failure(now, keep as usize);
            } else {
                streak.success(now);
            }
        }
        s.dirty = true;
    }
    match probe {
        Some(generation) => s.probe_result(unit, generation, obs, reason),
        None if obs.flagged => s.trip(unit, Trigger::Flag, reason),
        None => {}
    }
}
