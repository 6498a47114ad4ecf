//! Scripted HTTP upstreams on loopback: each answers every request with a status, a body
//! naming it, and signal headers (latency, box count, breach flag) that a test can change
//! while it runs; each records the request headers it received and counts requests. A front
//! Envoy with the filter in front of two of them is the filter tests' fixture.

use grayguard_contract::headers;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::envoy::{Cluster, Envoy, Filter, Options};

/// One request as the upstream saw it (header names lower-cased).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the upstream answers.
#[derive(Debug, Clone)]
struct Script {
    status: u16,
    headers: Vec<(String, String)>,
    delay: Duration,
}

/// One answer a sampler chose: the status and the headers to add to the script's.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

/// Draws the answer to the `n`-th request (0-based) from its headers.
pub type Sampler = dyn Fn(u64, &Seen) -> Answer + Send + Sync;

struct Shared {
    script: Mutex<Script>,
    sampler: Mutex<Option<Arc<Sampler>>>,
    seen: Mutex<Vec<Seen>>,
    count: AtomicU64,
    /// Requests answered by the sampler so far (its draw index).
    drawn: AtomicU64,
}

/// A front Envoy running the filter with `config` (JSON), routing to `stable` and `gray` as
/// the clusters `v9-prod` and `v10-gray` (two workers: two Wasm VMs sharing state).
pub fn front_envoy(config: &str, stable: &Upstream, gray: &Upstream) -> Envoy {
    Envoy::start(&Options::new(
        Filter::grayguard(config),
        Cluster::new("v9-prod", stable.addr),
        Cluster::new("v10-gray", gray.addr),
    ))
}

/// Most requests whose headers are kept (older ones are dropped).
const MAX_SEEN: usize = 10_000;
/// Handler threads per upstream.
const THREADS: usize = 4;

/// A scripted upstream, stopped on drop.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Upstream {
    /// Starts `name` on a free loopback port, answering 200 with body `name` and the
    /// header `x-upstream: name`.
    pub fn start(name: &str) -> Upstream {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind upstream"));
        let addr = server
            .server_addr()
            .to_ip()
            .expect("upstream listens on IP");
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                status: 200,
                headers: vec![("x-upstream".into(), name.into())],
                delay: Duration::ZERO,
            }),
            sampler: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            drawn: AtomicU64::new(0),
        });
        let threads = (0..THREADS)
            .map(|_| {
                let server = server.clone();
                let shared = shared.clone();
                let name = name.to_string();
                std::thread::spawn(move || serve(&server, &shared, &name))
            })
            .collect();
        Upstream {
            name: name.into(),
            addr,
            server,
            shared,
            threads,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The status of every following answer.
    pub fn set_status(&self, status: u16) {
        self.shared.script.lock().unwrap().status = status;
    }

    /// Sets (`Some`) or removes (`None`) a response header of every following answer.
    pub fn set_header(&self, name: &str, value: Option<&str>) {
        let mut s = self.shared.script.lock().unwrap();
        s.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            s.headers.push((name.to_ascii_lowercase(), v.into()));
        }
    }

    /// The sidecar's signal headers: `x-inference-latency-ms` and `x-box-count`.
    pub fn set_signals(&self, latency_ms: &str, boxes: &str) {
        self.set_header(headers::INFERENCE_LATENCY_MS, Some(latency_ms));
        self.set_header(headers::BOX_COUNT, Some(boxes));
    }

    /// Raises (`Some(reason)`) or clears the in-band breach flag `x-canary-breach`.
    pub fn set_flag(&self, reason: Option<&str>) {
        self.set_header(headers::BREACH, reason);
    }

    /// Answers every following request with what `sampler` draws for it (status and
    /// signal headers, e.g. from a distribution), on top of the scripted headers; `None`
    /// goes back to the script.
    pub fn set_sampler(&self, sampler: Option<Arc<Sampler>>) {
        *self.shared.sampler.lock().unwrap() = sampler;
    }

    /// Waits this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.script.lock().unwrap().delay = delay;
    }

    /// Requests answered so far.
    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// The requests seen so far (the newest `MAX_SEEN`).
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The last request seen.
    pub fn last(&self) -> Option<Seen> {
        self.shared.seen.lock().unwrap().last().cloned()
    }

    /// Forgets the requests seen (the count goes on).
    pub fn clear(&self) {
        self.shared.seen.lock().unwrap().clear();
    }
}

fn serve(server: &tiny_http::Server, shared: &Shared, name: &str) {
    while let Ok(req) = server.recv() {
        let seen = Seen {
            method: req.method().to_string(),
            path: req.url().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.field.as_str().as_str().to_ascii_lowercase(),
                        h.value.as_str().to_string(),
                    )
                })
                .collect(),
        };
        let mut script = shared.script.lock().unwrap().clone();
        let sampler = shared.sampler.lock().unwrap().clone();
        if let Some(draw) = sampler {
            let n = shared.drawn.fetch_add(1, Ordering::SeqCst);
            let answer = draw(n, &seen);
            script.status = answer.status;
            script.headers.extend(answer.headers);
        }
        {
            let mut s = shared.seen.lock().unwrap();
            if s.len() >= MAX_SEEN {
                s.remove(0);
            }
            s.push(seen);
        }
        if !script.delay.is_zero() {
            std::thread::sleep(script.delay);
        }
        let mut resp = tiny_http::Response::from_string(name).with_status_code(script.status);
        for (k, v) in &script.headers {
            if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                resp.add_header(h);
            }
        }
        shared.count.fetch_add(1, Ordering::SeqCst);
        let _ = req.respond(resp);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
