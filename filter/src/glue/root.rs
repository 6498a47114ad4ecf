//! The root context of each VM (one per Envoy worker, plus the main thread): reads the
//! configuration, builds the VM's core, and runs its tick.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use log::{error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use super::{EnvoyHost, Vm};
use crate::config;
use crate::engine::{Engine, MAX_LISTING_BYTES};
use crate::host::Host;
use crate::signals;

/// Most bytes of plugin configuration read.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The root context.
pub struct Root {
    context_id: u32,
    vm: Option<Rc<RefCell<Vm>>>,
}

impl Root {
    pub fn new(context_id: u32) -> Root {
        Root {
            context_id,
            vm: None,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| signals::status(&s));
        if let Some(vm) = &self.vm
            && let Ok(mut vm) = vm.try_borrow_mut()
        {
            let Vm { engine, host } = &mut *vm;
            // Only a hold check's answer is read (a latch call's status says all); a body
            // longer than a listing can be is not one, and is not read.
            let body = (engine.awaits_listing(token) && body_size <= MAX_LISTING_BYTES)
                .then(|| {
                    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                        .ok()
                        .flatten()
                })
                .flatten();
            engine.answered(host, token, status, body.as_deref());
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, MAX_CONFIG_BYTES)
            .ok()
            .flatten()
            .unwrap_or_default();
        let cfg = match config::parse(&text).and_then(|mut c| {
            c.resolve_secret(|name| std::env::var(name).ok())?;
            Ok(c)
        }) {
            Ok(cfg) => cfg,
            Err(e) => {
                error!("{e}");
                return false;
            }
        };
        let sync = Duration::from_millis(cfg.sync_ms);
        let mut engine = Engine::new(cfg, &text, 0);
        let host = EnvoyHost::define();
        // Seeds differ between VMs and starts; worker ids do not depend on them.
        engine.reseed(host.now_ns() ^ (u64::from(self.context_id) << 32));
        // The gateway's name in latch calls: Envoy's node id (`--service-node`; Istio sets
        // it to the pod's identity). Envoy names the attribute `xds.node`; older proxies
        // named it `node`.
        if let Some(id) = [vec!["xds", "node", "id"], vec!["node", "id"]]
            .into_iter()
            .find_map(|path| {
                hostcalls::get_property(path)
                    .ok()
                    .flatten()
                    .filter(|b| !b.is_empty())
            })
        {
            engine.set_gateway(&String::from_utf8_lossy(&id));
        }
        engine.start(&host);
        info!("{}", engine.describe());
        self.vm = Some(Rc::new(RefCell::new(Vm { engine, host })));
        let _ = hostcalls::set_tick_period(sync);
        true
    }

    fn on_tick(&mut self) {
        if let Some(vm) = &self.vm
            && let Ok(mut vm) = vm.try_borrow_mut()
        {
            let Vm { engine, host } = &mut *vm;
            engine.tick(host);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(super::http::Http::new(self.vm.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
