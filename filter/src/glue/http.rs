//! The HTTP context: hands each request's headers (and, when the core asks, the listener's
//! port and the peer) to the core, then removes the headers it names and writes the ones
//! it returns, or sends its answer; stamps the decision on the response and hands the
//! response's headers to the core.

use std::cell::RefCell;
use std::rc::Rc;

use grayguard_contract::headers::DECISION;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, Bytes, MapType};

use super::Vm;
use crate::decision::Routed;
use crate::engine::Request;

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
        let request = engine.request(
            host,
            |name| lookup(&headers, name),
            || property_u16(&["destination", "port"]),
            || {
                hostcalls::get_property(vec!["source", "address"])
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            },
            |name| {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
            },
        );
        match request {
            Request::Answer(reply) => {
                let _ = hostcalls::send_http_response(
                    u32::from(reply.status),
                    vec![("content-type", "application/json")],
                    Some(reply.body.as_bytes()),
                );
                Action::Pause
            }
            Request::Route(routed) => {
                for (name, value) in engine.upstream_headers(&routed) {
                    let _ = hostcalls::set_map_value_bytes(
                        MapType::HttpRequestHeaders,
                        name,
                        Some(value),
                    );
                }
                self.routed = Some(routed);
                Action::Continue
            }
        }
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
        let mut fallback = false;
        if engine.reads_response(&routed) {
            // One host call for all response headers (cheaper than a lookup per signal).
            let headers =
                hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
            fallback = engine.on_response(host, &routed, |name| lookup(&headers, name));
        }
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpResponseHeaders,
            DECISION,
            Some(engine.decision_text(&routed, fallback).as_bytes()),
        );
        Action::Continue
    }

    fn on_log(&mut self) {
        // A request that never got response headers was reset.
        if self.responded {
            return;
        }
        let (Some(routed), Some(vm)) = (self.routed, &self.vm) else {
            return;
        };
        if let Ok(mut guard) = vm.try_borrow_mut() {
            let Vm { engine, host } = &mut *guard;
            engine.on_reset(host, &routed);
        }
    }
}
