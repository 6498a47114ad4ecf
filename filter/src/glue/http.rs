//! The HTTP context: hands each request's headers to the core and writes back the route
//! (and, when configured, the hour); stamps the decision on the response and hands the
//! response's status and signal headers to the core.

use std::cell::RefCell;
use std::rc::Rc;

use grayguard_contract::headers::{DECISION, PROBE, TIME_OF_DAY};
use grayguard_contract::operator::PREFIX as OPERATOR_PATHS;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, Bytes, MapType};

use super::Vm;
use crate::decision::Why;
use crate::engine::Routed;
use crate::signals::Reply;

pub struct Http {
    vm: Option<Rc<RefCell<Vm>>>,
    routed: Option<Routed>,
    responded: bool,
}

impl Http {
    pub fn new(vm: Option<Rc<RefCell<Vm>>>) -> Http {
        Http {
            vm,
            routed: None,
            responded: false,
        }
    }
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

fn lookup_str<'a>(headers: &'a HeaderPairs, name: &str) -> Option<&'a str> {
    lookup(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

/// An integer property (Envoy hands them over as 8 little-endian bytes).
fn property_u16(path: &[&str]) -> Option<u16> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    u16::try_from(i64::from_le_bytes(raw)).ok()
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = &self.vm else {
            return Action::Continue;
        };
        let Ok(mut guard) = vm.try_borrow_mut() else {
            return Action::Continue;
        };
        let Vm { engine, host } = &mut *guard;
        // One host call for all request headers: cheaper than a lookup per name once the
        // strip checks, the rules and the sticky key each need one.
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        #[cfg(feature = "crash-test")]
        if lookup(&headers, "x-grayguard-test-panic").is_some() {
            panic!("grayguard crash test: a panic inside the VM on purpose");
        }
        // Operator requests never reach an upstream: answered here, or refused.
        if let Some(path) = lookup_str(&headers, ":path").filter(|p| p.starts_with(OPERATOR_PATHS))
        {
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            let port = property_u16(&["destination", "port"]);
            let operator_port = engine.config().operator.as_ref().map(|o| o.port);
            let on_operator = port.is_some() && port == operator_port;
            let by = engine
                .config()
                .operator
                .as_ref()
                .and_then(|o| o.identity_header.as_deref())
                .and_then(|h| lookup_str(&headers, h));
            let from = on_operator
                .then(|| {
                    hostcalls::get_property(vec!["source", "address"])
                        .ok()
                        .flatten()
                })
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let reply = engine.operator(host, path, query, on_operator, by, from.as_deref());
            let _ = hostcalls::send_http_response(
                u32::from(reply.status),
                vec![("content-type", "application/json")],
                Some(reply.body.as_bytes()),
            );
            return Action::Pause;
        }
        // A client must not pick its route or fake a breach: drop what it sent. Requests
        // without them (the normal case) cost no host call here.
        let cfg = engine.config();
        let spoofable = [
            cfg.route_header.clone(),
            DECISION.to_string(),
            cfg.breach.flag_header.clone(),
            PROBE.to_string(),
        ];
        for name in &spoofable {
            if lookup(&headers, name).is_some() {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
                engine.stripped();
            }
        }
        let routed = engine.decide(host, |name| lookup_str(&headers, name));
        let cfg = engine.config();
        let route = if routed.decision.gray {
            &cfg.gray
        } else {
            &cfg.stable
        };
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            &cfg.route_header,
            Some(route.as_bytes()),
        );
        if routed.decision.why == Why::Probe {
            // The gray workload answers a probe on its own merits, without any latch.
            let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, PROBE, Some(b"1"));
        }
        if cfg.time_header_upstream {
            let _ = hostcalls::set_map_value_bytes(
                MapType::HttpRequestHeaders,
                TIME_OF_DAY,
                Some(&routed.hour),
            );
        }
        self.routed = Some(routed);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.responded = true;
        let (Some(routed), Some(vm)) = (self.routed, &self.vm) else {
            return Action::Continue;
        };
        let Ok(mut guard) = vm.try_borrow_mut() else {
            return Action::Continue;
        };
        let Vm { engine, host } = &mut *guard;
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpResponseHeaders,
            DECISION,
            Some(engine.decision_text(&routed).as_bytes()),
        );
        if !engine.reads_response(&routed) {
            return Action::Continue;
        }
        // One host call for all response headers (cheaper than a lookup per signal).
        let headers = hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
        let status = lookup_str(&headers, ":status").and_then(|v| v.parse::<u16>().ok());
        let reply = engine.read(status, |name| lookup(&headers, name));
        engine.settle(host, &routed, &reply);
        Action::Continue
    }

    fn on_log(&mut self) {
        // A request that never got response headers was reset: a failure.
        if self.responded {
            return;
        }
        let (Some(routed), Some(vm)) = (self.routed, &self.vm) else {
            return;
        };
        if let Ok(mut guard) = vm.try_borrow_mut() {
            let Vm { engine, host } = &mut *guard;
            if engine.reads_response(&routed) {
                engine.settle(host, &routed, &Reply::reset());
            }
        }
    }
}
