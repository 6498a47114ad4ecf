//! The floor of the filter benchmark: a proxy-wasm filter that reads `x-device-type` and
//! writes `x-canary-route` (`v10-gray` for crane cameras, `v9-prod` otherwise) — one header
//! read and one header write, nothing else. Whatever grayguard costs above this is its own.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Route))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Route;

impl Context for Route {}

impl HttpContext for Route {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let device = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-device-type")
            .ok()
            .flatten();
        let route: &[u8] = if device.as_deref() == Some(b"crane-camera".as_slice()) {
            b"v10-gray"
        } else {
            b"v9-prod"
        };
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            "x-canary-route",
            Some(route),
        );
        Action::Continue
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}
