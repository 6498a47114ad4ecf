//! Hostile clients against the real sidecar, over raw TCP: a request head sent a header at a
//! time (slowloris), a keep-alive connection left idle, a body that trickles in, more
//! connections than `--max-connections`, oversized headers; and random request lines,
//! headers and bodies (proptest), after which the process still serves. Each limit is set
//! small here so that each test takes seconds; the defaults are in sidecar/README.md.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use grayguard_contract::headers;
use proptest::prelude::*;

use grayguard_client::exposition;
use grayguard_e2e::http;
use grayguard_e2e::sidecar::{Sidecar, SidecarBuilder};
use grayguard_e2e::wait::eventually;

/// The limits of the test process.
const HEADER_READ_S: f64 = 1.0;
const IDLE_S: f64 = 5.0;
const BODY_READ_S: f64 = 1.0;
const MAX_CONNECTIONS: usize = 6;
const MAX_HEADER_BYTES: usize = 4096;

fn connect(sc: &Sidecar) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", sc.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// A response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Reads one response (head, then `content-length` bytes), or `None` if the server closed
/// the connection (or reset it) before a whole head arrived.
fn read_response(s: &mut TcpStream) -> Option<Raw> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.get(9..12)?.parse().ok()?;
    let mut raw = Raw {
        status,
        head,
        body: buf[head_end..].to_vec(),
    };
    let len: usize = raw
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while raw.body.len() < len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(raw)
}

/// Whether the server has closed (or reset) `s`, reading whatever it still sends.
fn closed(s: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Sends `GET path` (keep-alive) and reads its response.
fn get(s: &mut TcpStream, path: &str) -> Option<Raw> {
    write!(s, "GET {path} HTTP/1.1\r\nHost: sidecar\r\n\r\n").ok()?;
    read_response(s)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn start() -> Sidecar {
    SidecarBuilder::new("v-hostile")
        .flag("--header-read-timeout-s", &HEADER_READ_S.to_string())
        .flag("--idle-timeout-s", &IDLE_S.to_string())
        .flag("--body-read-timeout-s", &BODY_READ_S.to_string())
        .flag("--max-connections", &MAX_CONNECTIONS.to_string())
        .flag("--max-header-bytes", &MAX_HEADER_BYTES.to_string())
        .flag("--watchdog-latency-budget-ms", "60000")
        .start()
}

fn dropped(text: &str, reason: &str) -> f64 {
    let series = format!("grayguard_sidecar_connections_dropped_total{{reason=\"{reason}\"}}");
    exposition::value(text, &series).unwrap_or_else(|| panic!("no {series}"))
}

/// The `/metrics` text, once a slot is free for the scrape's own connection.
fn scrape(sc: &Sidecar) -> String {
    eventually(
        "/metrics answers",
        Duration::from_secs(10),
        || match http::get(&sc.url("/metrics")) {
            Ok(r) if r.status == 200 => Ok(r.text()),
            Ok(r) => Err(format!("{} {}", r.status, r.text())),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// After the hostile clients: the sidecar counted the connections it cut for `reason`, still
/// serves, and nothing panicked.
fn assert_cut_and_unharmed(sc: &Sidecar, reason: &str) {
    let text = scrape(sc);
    assert!(dropped(&text, reason) >= 1.0, "{text}");
    assert_unharmed(sc);
}

/// After the hostile clients: the sidecar still serves, and nothing panicked.
fn assert_unharmed(sc: &Sidecar) {
    assert_eq!(sc.infer_file("person.jpg").status, 200);
    assert!(!sc.proc.log().contains("panicked"), "{}", sc.proc.log());
}

#[test]
fn a_head_sent_a_header_at_a_time_is_cut_at_the_header_limit() {
    let sc = start();
    let mut s = connect(&sc);
    let t0 = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n")
        .unwrap();
    let mut cut = false;
    for i in 0..40 {
        // The slow client under test: a header every 300 ms.
        std::thread::sleep(Duration::from_millis(300));
        if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .is_err()
        {
            cut = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        if closed(&mut s) {
            cut = true;
            break;
        }
    }
    let took = t0.elapsed();
    assert!(cut, "a head trickling for 12 s was not cut");
    assert!(
        took >= secs(HEADER_READ_S) && took < secs(HEADER_READ_S + 10.0),
        "cut after {took:?}"
    );
    assert_cut_and_unharmed(&sc, "header_timeout");
}

#[test]
fn an_idle_keep_alive_connection_lives_past_the_header_limit_up_to_the_idle_one() {
    let sc = start();
    let mut s = connect(&sc);
    assert_eq!(get(&mut s, "/healthz").map(|r| r.status), Some(200));
    // The idle client under test: longer than the header limit, shorter than the idle one.
    std::thread::sleep(secs(HEADER_READ_S * 1.5));
    let again = get(&mut s, "/healthz");
    assert_eq!(
        again.map(|r| r.status),
        Some(200),
        "idle is not a slow head"
    );
    let t0 = Instant::now();
    s.set_read_timeout(Some(secs(IDLE_S + 20.0))).unwrap();
    assert!(closed(&mut s), "an idle connection was never closed");
    let idle = t0.elapsed();
    // Measured from when this side read the reply, a little after the server's clock
    // started: the lower bound is loose, and still far above the header limit.
    assert!(
        idle >= secs(IDLE_S / 2.0) && idle < secs(IDLE_S + 15.0),
        "idle connection closed after {idle:?}"
    );
    assert_cut_and_unharmed(&sc, "idle_timeout");
}

#[test]
fn a_body_that_trickles_in_gets_408_and_the_connection_closes() {
    let sc = start();
    let mut s = connect(&sc);
    s.write_all(
        b"POST /infer HTTP/1.1\r\nHost: sidecar\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n\xFF\xD8\xFF",
    )
    .unwrap();
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..100 {
                // The slow client under test: ten bytes every 100 ms.
                std::thread::sleep(Duration::from_millis(100));
                if w.write_all(&[0u8; 10]).is_err() {
                    break;
                }
            }
        })
    };
    let t0 = Instant::now();
    let r = read_response(&mut s).expect("a 408, not a silent close");
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.json()["kind"], "body_timeout");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header(headers::BOX_COUNT), Some("0"));
    assert!(
        t0.elapsed() < secs(BODY_READ_S + 10.0),
        "{:?}",
        t0.elapsed()
    );
    assert!(closed(&mut s));
    drop(s);
    writer.join().unwrap();
    let text = scrape(&sc);
    assert_eq!(
        exposition::value(
            &text,
            "grayguard_sidecar_errors_total{kind=\"body_timeout\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_unharmed(&sc);
}

#[test]
fn the_connection_over_the_cap_gets_503_at_once_and_a_newcomer_gets_a_freed_place() {
    let sc = start();
    let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut c = connect(&sc);
            assert_eq!(get(&mut c, "/healthz").map(|r| r.status), Some(200));
            c
        })
        .collect();
    let mut over = connect(&sc);
    let r = read_response(&mut over).expect("refused with a reply");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["kind"], "too_many_connections");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header(headers::MODEL_VERSION), Some("v-hostile"));
    assert!(closed(&mut over));
    // One leaves; a newcomer gets its place (once the server has seen the close).
    drop(held.pop());
    eventually(
        "a newcomer gets the freed place",
        Duration::from_secs(10),
        || {
            let mut c = connect(&sc);
            match get(&mut c, "/healthz") {
                Some(r) if r.status == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    drop(held);
    // Every close is seen: the scrape's own connection is the one left open.
    eventually(
        "the server sees every close",
        Duration::from_secs(10),
        || {
            let open = http::get(&sc.url("/metrics"))
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| exposition::value(&r.text(), "grayguard_sidecar_open_connections"));
            open.filter(|&n| n <= 1.0)
                .ok_or(format!("connections open: {open:?}"))
        },
    );
    let text = scrape(&sc);
    assert!(dropped(&text, "max_connections") >= 1.0, "{text}");
    assert!(
        exposition::value(&text, "grayguard_sidecar_open_connections").is_some_and(|n| n >= 1.0)
    );
    assert_unharmed(&sc);
}

#[test]
fn oversized_headers_get_431_and_headers_within_the_limit_are_served() {
    let sc = start();
    let mut s = connect(&sc);
    let big = "x".repeat(MAX_HEADER_BYTES);
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Big: {big}\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut s).expect("431");
    assert_eq!(r.status, 431, "{r:?}");
    let mut s = connect(&sc);
    let fits = "x".repeat(MAX_HEADER_BYTES / 2);
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Fits: {fits}\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut s).map(|r| r.status), Some(200));
    drop(s);
    assert_unharmed(&sc);
}

// ---------------------------------------------------------------- the HTTP layer, fuzzed

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PRI"])
            .prop_map(String::from),
        1 => "[A-Za-z]{0,10}",
        1 => "[ -~]{0,12}",
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "/infer",
            "/healthz",
            "/ready",
            "/metrics",
            "/info",
            "/grayguard/latch",
            "*",
            "http://sidecar/infer",
            "/infer?x=1#f",
        ])
        .prop_map(String::from),
        1 => "/[!-~]{0,40}",
        1 => "[^\r\n]{0,40}",
    ]
}

fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => (0..40_000_000u64).prop_map(|n| format!("Content-Length: {n}")),
        1 => "Content-Length: [ -~]{0,12}".prop_map(String::from),
        1 => Just("Transfer-Encoding: chunked".to_string()),
        6 => prop::sample::select(vec![
            "Content-Type: image/jpeg",
            "Content-Type: image/png",
            "Content-Type: multipart/form-data; boundary=b",
            "Content-Type: multipart/form-data",
            "Content-Type: text/plain",
            "Content-Type: application/x-www-form-urlencoded",
            "Expect: 100-continue",
            "Connection: close",
            "Connection: keep-alive",
            "x-canary-probe: 1",
            "authorization: Bearer 0123456789abcdef",
        ])
        .prop_map(String::from),
        2 => "[!-9;-~]{1,20}: [ -~]{0,60}",
        1 => "[ -~]{0,80}",
    ]
}

/// A body: the start of a JPEG or PNG, a multipart form, a latch form, or anything.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let tail = || prop::collection::vec(any::<u8>(), 0..400);
    prop_oneof![
        tail().prop_map(|t| [b"\xFF\xD8\xFF\xE0".as_slice(), &t].concat()),
        tail().prop_map(|t| [b"\x89PNG\r\n\x1a\n".as_slice(), &t].concat()),
        tail().prop_map(|t| {
            [
                b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n".as_slice(),
                &t,
                b"\r\n--b--\r\n",
            ]
            .concat()
        }),
        Just(b"action=latch&rule=r&trigger=flag&for_ms=60000&gateway=g".to_vec()),
        tail(),
    ]
}

/// One client's bytes: a request made of plausible and random pieces (usually with a
/// `Content-Length` that matches its body), or pure noise.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let structured = (
        method(),
        target(),
        prop_oneof![
            8 => Just("HTTP/1.1"),
            2 => prop::sample::select(vec!["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", "", "http/1.1", "HTTP/9"]),
        ],
        prop::collection::vec(header(), 0..6),
        body(),
        any::<bool>(),
        prop_oneof![8 => Just("\r\n"), 1 => Just("\n"), 1 => Just("\r")],
    )
        .prop_map(|(m, t, v, hs, body, matching, eol)| {
            let mut b = format!("{m} {t} {v}{eol}Host: sidecar{eol}").into_bytes();
            if matching {
                b.extend_from_slice(format!("Content-Length: {}{eol}", body.len()).as_bytes());
            }
            for h in hs {
                b.extend_from_slice(h.as_bytes());
                b.extend_from_slice(eol.as_bytes());
            }
            b.extend_from_slice(eol.as_bytes());
            b.extend_from_slice(&body);
            b
        });
    prop_oneof![
        9 => structured,
        1 => prop::collection::vec(any::<u8>(), 0..400),
    ]
}

/// Sends `bytes`, shuts the sending side and reads everything the server says, until it
/// closes the connection.
fn exchange(sc: &Sidecar, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = connect(sc);
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // The server may answer and close before the whole request is sent (an early 413, 431
    // or 400): a failed write is a close, not a failure.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "no answer and no close within 15 s ({} bytes read)",
                    out.len()
                ));
            }
            // A reset after (or instead of) the reply is a close.
            Err(_) => return Ok(out),
        }
    }
}

#[test]
fn fuzz_random_requests_get_an_answer_or_a_close_and_never_a_crash() {
    let mut sc = start();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(&request(), |bytes| {
        let out = exchange(&sc, &bytes).map_err(TestCaseError::fail)?;
        if !out.is_empty() {
            // Whatever arrived is one or more HTTP/1.1 replies with a valid status line.
            let text = String::from_utf8_lossy(&out);
            prop_assert!(
                text.starts_with("HTTP/1.1 ") || text.starts_with("HTTP/1.0 "),
                "{:?}",
                text
            );
            let status: u16 = text[9..12]
                .parse()
                .map_err(|_| TestCaseError::fail(format!("{text:?}")))?;
            prop_assert!((100..600).contains(&status), "{}", status);
            *statuses.borrow_mut().entry(status).or_default() += 1;
        }
        Ok(())
    });
    if let Some(status) = sc.proc.exited() {
        panic!("the sidecar died ({status}):\n{}", sc.proc.log());
    }
    result.unwrap_or_else(|e| panic!("{e}"));
    let statuses = statuses.into_inner();
    let answered: u32 = statuses.values().sum();
    eprintln!("{cases} random requests: {answered} answered {statuses:?}, the rest closed");
    assert!(answered > 0, "nothing was ever answered");
    assert_eq!(http::get(&sc.url("/healthz")).unwrap().status, 200);
    assert_eq!(sc.infer_file("person.jpg").status, 200, "still serving");
    assert!(!sc.proc.log().contains("panicked"), "{}", sc.proc.log());
}
