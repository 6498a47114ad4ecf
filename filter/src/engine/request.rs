//! What a request's headers ask for before it is routed: the headers a client must not
//! send are stripped, and an operator path (`/grayguard/...`) is answered by the gateway
//! on the operator listener and refused anywhere else — it never reaches an upstream. The
//! glue looks values up and writes headers; this decides.

use grayguard_contract::headers::{COMPARE, DECISION, PROBE};
use grayguard_contract::operator::PREFIX as OPERATOR_PATHS;

use crate::engine::{Engine, OperatorCall, Request};
use crate::host::Host;
use crate::metrics::Counter;

impl Engine {
    /// The request headers only grayguard may set: the route, the decision, the breach
    /// flag, the probe mark and the comparison mark (which stable serves outside its
    /// metrics: a client must not hide its requests there). A client that sends one has it
    /// removed.
    pub fn spoofable(&self) -> [&str; 5] {
        [
            self.cfg.route_header.as_str(),
            DECISION,
            self.cfg.breach.flag_header.as_str(),
            PROBE,
            COMPARE,
        ]
    }

    /// Handles a request's headers. `header` looks one up (as bytes); `port` gives the local
    /// port the request arrived on and `peer` the client's address, each asked only for an
    /// operator path (and `peer` only on the operator listener); `strip` removes a header.
    ///
    /// An operator request is answered on the listener of `operator.port` only; `by` in its
    /// record is the `operator.identity_header` an authenticating proxy sets. Any other
    /// request loses its spoofed headers and is routed ([`Engine::decide`]).
    pub fn request<'h>(
        &mut self,
        host: &impl Host,
        header: impl Fn(&str) -> Option<&'h [u8]>,
        port: impl FnOnce() -> Option<u16>,
        peer: impl FnOnce() -> Option<String>,
        mut strip: impl FnMut(&str),
    ) -> Request {
        // A header that is not UTF-8 reads as absent for everything but stripping.
        let text = |name: &str| header(name).and_then(|v| std::str::from_utf8(v).ok());
        if let Some(path) = text(":path").filter(|p| p.starts_with(OPERATOR_PATHS)) {
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            let port = port();
            let operator = self.cfg.operator.as_ref();
            let on_operator = port.is_some() && port == operator.map(|o| o.port);
            let by = operator
                .and_then(|o| o.identity_header.as_deref())
                .and_then(text);
            let from = if on_operator { peer() } else { None };
            let call = OperatorCall {
                method: text(":method").unwrap_or("GET"),
                path,
                query,
                on_operator,
                by,
                from: from.as_deref(),
            };
            return Request::Answer(self.operator(host, &call));
        }
        // A client must not pick its route or fake a breach: drop what it sent. Requests
        // without them (the normal case) cost no host call here.
        let mut stripped = 0;
        for name in self.spoofable() {
            if header(name).is_some() {
                strip(name);
                stripped += 1;
            }
        }
        self.pending.add(Counter::SpoofedHeadersStripped, stripped);
        Request::Route(self.decide(host, text))
    }
}
