//! Routing a request: the rule, the decision text, what the client may not send, and
//! operator paths on either listener, what the request path costs in host calls.

use super::*;
use crate::host::Host;

#[test]
fn routes_by_rule_and_renders_the_decision() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, SEQ, 1);
    let g = ask(&mut e, &h, "crane");
    assert!(g.decision.gray);
    assert_eq!(text(&mut e, &g), "gray; rule=cranes");
    let s = ask(&mut e, &h, "dock");
    assert_eq!(text(&mut e, &s), "stable; no-rule");
    e.tick(&h);
    assert_eq!(h.counter(Counter::RoutedGray), 1);
    assert_eq!(h.counter(Counter::RoutedStable), 1);
}

/// A request as the glue sees it: its headers, the listener's port, the peer; what the
/// core asked for and stripped.
struct Seen {
    headers: Vec<(&'static str, Vec<u8>)>,
    port: Option<u16>,
    asked_port: bool,
    asked_peer: bool,
    stripped: Vec<String>,
}

impl Seen {
    fn new(headers: &[(&'static str, &[u8])], port: Option<u16>) -> Seen {
        Seen {
            headers: headers.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
            port,
            asked_port: false,
            asked_peer: false,
            stripped: Vec::new(),
        }
    }

    fn send(&mut self, e: &mut Engine, h: &MemoryHost) -> Request {
        let headers = &self.headers;
        let (asked_port, asked_peer, stripped) = (
            &mut self.asked_port,
            &mut self.asked_peer,
            &mut self.stripped,
        );
        let port = self.port;
        e.request(
            h,
            |name| {
                headers
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.as_slice())
            },
            || {
                *asked_port = true;
                port
            },
            || {
                *asked_peer = true;
                Some("10.0.0.7:5123".into())
            },
            |name| stripped.push(name.to_string()),
        )
    }
}

#[test]
fn a_client_cannot_pick_its_route_or_fake_a_breach_or_a_probe() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, SEQ, 1);
    let mut clean = Seen::new(&[("x-device-type", b"crane")], None);
    let Request::Route(r) = clean.send(&mut e, &h) else {
        panic!("routed");
    };
    assert!(r.decision.gray);
    assert!(clean.stripped.is_empty() && !clean.asked_port && !clean.asked_peer);
    let mut forged = Seen::new(
        &[
            ("x-device-type", b"dock"),
            ("x-canary-route", b"v10"),
            ("x-canary-decision", b"gray; rule=cranes"),
            ("x-canary-breach", b"\xff"),
            ("x-canary-probe", b"1"),
            ("x-canary-compare", b"1"),
        ],
        None,
    );
    let Request::Route(r) = forged.send(&mut e, &h) else {
        panic!("routed");
    };
    assert!(!r.decision.gray);
    assert_eq!(
        forged.stripped,
        [
            "x-canary-route",
            "x-canary-decision",
            "x-canary-breach",
            "x-canary-probe",
            "x-canary-compare"
        ]
    );
    e.tick(&h);
    assert_eq!(h.counter(Counter::SpoofedHeadersStripped), 5);
}

#[test]
fn operator_paths_are_answered_on_the_operator_listener_only() {
    let h = MemoryHost::new(T0);
    let mut e = engine(&h, &confirm_config(), 1);
    let path: &[u8] = b"/grayguard/confirm?rule=cranes&trigger=box_count&exp=1&sig=00";
    // The public listener: refused, and the peer is never looked up.
    let mut public = Seen::new(&[(":path", path), ("x-user", b"ana")], Some(10000));
    let Request::Answer(a) = public.send(&mut e, &h) else {
        panic!("answered");
    };
    assert_eq!(a.status, 403, "{a:?}");
    assert!(public.asked_port && !public.asked_peer);
    // The operator listener: the link itself is judged (this one is malformed).
    let mut operator = Seen::new(&[(":path", path), ("x-user", b"ana")], Some(10100));
    let Request::Answer(a) = operator.send(&mut e, &h) else {
        panic!("answered");
    };
    assert_eq!(a.status, 400, "{a:?}");
    assert!(operator.asked_peer);
    // Without an operator listener configured, every port refuses.
    let mut none = engine(&h, SEQ, 2);
    let Request::Answer(a) = Seen::new(&[(":path", path)], Some(10100)).send(&mut none, &h) else {
        panic!("answered");
    };
    assert_eq!(a.status, 403);
    e.tick(&h);
    none.tick(&h);
    assert_eq!(h.counter(Counter::OperatorRefused), 3);
}

#[test]
fn upstream_headers_carry_the_route_the_probe_mark_and_the_hour() {
    let headers = |e: &Engine, r: &Routed| -> Vec<(String, String)> {
        e.upstream_headers(r)
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let h = MemoryHost::new(T0);
    let stamped = SEQ.replace(
        "\"sync_ms\":100,",
        "\"sync_ms\":100,\"time_header_upstream\":true,",
    );
    let mut e = engine(&h, &stamped, 1);
    let g = ask(&mut e, &h, "crane");
    assert_eq!(
        headers(&e, &g),
        [pair("x-canary-route", "v10"), pair("x-time-of-day", "22")]
    );
    // Tripped, then half-open: a probe is marked.
    let mut e = engine(&h, SEQ, 1);
    let r = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &r, 10.0, 3, Some("box_count"));
    let s = ask(&mut e, &h, "crane");
    assert_eq!(headers(&e, &s), [pair("x-canary-route", "v9")]);
    h.advance_ms(10_000);
    let p = ask(&mut e, &h, "crane");
    assert_eq!(
        headers(&e, &p),
        [pair("x-canary-route", "v10"), pair("x-canary-probe", "1")]
    );
}

/// A host that counts the core's calls into it.
struct Counting<'a> {
    inner: &'a MemoryHost,
    calls: std::cell::RefCell<Vec<&'static str>>,
}

impl Counting<'_> {
    fn note(&self, call: &'static str) {
        self.calls.borrow_mut().push(call);
    }

    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut self.calls.borrow_mut())
    }
}

impl Host for Counting<'_> {
    fn now_ns(&self) -> u64 {
        self.note("now_ns");
        self.inner.now_ns()
    }
    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.note("get_shared");
        self.inner.get_shared(key)
    }
    fn set_shared(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), crate::host::ShareError> {
        self.note("set_shared");
        self.inner.set_shared(key, value, cas)
    }
    fn board_mark(&self) -> Option<u64> {
        self.note("board_mark");
        self.inner.board_mark()
    }
    fn bump_board_mark(&self) {
        self.note("bump_board_mark");
        self.inner.bump_board_mark();
    }
    fn log(&self, level: crate::host::Level, line: &str) {
        self.note("log");
        self.inner.log(level, line);
    }
    fn add_counter(&self, c: Counter, n: u64) {
        self.note("add_counter");
        self.inner.add_counter(c, n);
    }
    fn set_gauge(&self, name: &str, value: u64) {
        self.note("set_gauge");
        self.inner.set_gauge(name, value);
    }
    fn add_named_counter(&self, name: &str, n: u64) {
        self.note("add_named_counter");
        self.inner.add_named_counter(name, n);
    }
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, crate::host::ShareError> {
        self.note("dispatch");
        self.inner.dispatch(cluster, headers, body, timeout_ms)
    }
}

/// The request path stays cheap: once the board is known, a gray request and its reply cost
/// the core one host call (the board's change mark), a stable one none.
#[test]
fn a_request_and_its_reply_cost_the_core_one_host_call_at_most() {
    let h = MemoryHost::new(T0);
    let counting = Counting {
        inner: &h,
        calls: std::cell::RefCell::new(Vec::new()),
    };
    let mut e = engine(&h, SEQ, 1);
    let first = ask(&mut e, &h, "crane");
    answer(&mut e, &h, &first, 100.0, 5, None);
    e.tick(&h);
    for _ in 0..3 {
        let g = e.decide(&counting, |n| (n == "x-device-type").then_some("crane"));
        let reply = e.read(true, Some(200), |n| match n {
            "x-inference-latency-ms" => Some(&b"100"[..]),
            "x-box-count" => Some(&b"5"[..]),
            _ => None,
        });
        e.settle(&counting, &g, &reply);
        assert_eq!(counting.take(), ["board_mark"]);
        let s = e.decide(&counting, |n| (n == "x-device-type").then_some("dock"));
        e.settle(&counting, &s, &reply);
        assert!(counting.take().is_empty());
    }
}
