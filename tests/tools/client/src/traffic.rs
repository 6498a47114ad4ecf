//! Steady image traffic through the front Envoys (the demo's and the soak's): a scheduler
//! that releases requests on a fixed clock, a bounded pool of senders, and a poller of each
//! gateway's admin, all feeding the timeline that the live view prints.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use crate::breaker::Breaker;
use crate::cohort::Mix;
use crate::fetch::{self, Client};
use crate::photos::Image;
use crate::reply::{self, Headers};
use crate::sample::{Outcome, Sample};
use crate::timeline::Timeline;
use grayguard_contract::headers;

/// Highest request rate, requests per second.
pub const MAX_RATE: f64 = 200.0;
/// Most requests in flight at once.
pub const MAX_CONCURRENCY: usize = 64;
/// Largest reply body read, bytes (a reply with thousands of boxes stays far below).
pub const MAX_REPLY_BYTES: u64 = 4 * 1024 * 1024;
/// How long one poll of a gateway's admin may take.
const ADMIN_POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// One front Envoy the traffic goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// `gw-i`.
    pub name: String,
    pub target: String,
    pub admin_metrics: String,
}

/// A validated run plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The gateways, in order; request `i` goes to gateway `i mod len`.
    pub gateways: Vec<Gateway>,
    /// Gap between two scheduled requests.
    pub interval: Duration,
    pub requests: u64,
    pub concurrency: usize,
    pub mix: Mix,
    pub timeout: Duration,
    pub admin_poll: Duration,
    pub gray_version: String,
    pub stable_version: String,
    /// Print one line per second of the run (the live view).
    pub live: bool,
}
/// A second is printed this long after it ends, so replies that complete at its very end
/// are in it.
const PRINT_GRACE: Duration = Duration::from_millis(200);

/// Everything a run produced.
#[derive(Debug)]
pub struct RunResult {
    pub samples: Vec<Sample>,
    /// The worst breaker over the gateways, at each admin reading.
    pub breaker: Vec<(Duration, Breaker)>,
    /// Each gateway's readings: `(at, gateway, state)`, in time order.
    pub readings: Vec<(Duration, usize, Breaker)>,
    pub timeline: Timeline,
    /// Scheduled requests not sent because every sender was busy.
    pub skipped: u64,
    /// The last admin `/stats/prometheus` text read from each gateway, if any.
    pub last_admin: Vec<Option<String>>,
    /// Each gateway's latest breaker reading.
    latest: Vec<Breaker>,
}

impl RunResult {
    /// Files one gateway's reading: its own, and the worst over the gateways' latest.
    fn reading(&mut self, at: Duration, gateway: usize, state: Breaker, text: String) {
        self.readings.push((at, gateway, state));
        if let Some(slot) = self.latest.get_mut(gateway) {
            *slot = state;
        }
        let worst = self
            .latest
            .iter()
            .copied()
            .max_by_key(|s| s.severity())
            .unwrap_or(Breaker::Closed);
        self.timeline.record_breaker(at, worst);
        self.breaker.push((at, worst));
        if let Some(slot) = self.last_admin.get_mut(gateway) {
            *slot = Some(text);
        }
    }
}

/// Round-robin over the gateways *within each cohort*: every gateway gets its share of every
/// cohort, so each one sees gray traffic and its stable control (a plain round-robin over
/// alternating cohorts would send one cohort only to the even gateways, the other only to the
/// odd ones, with an even number of gateways).
struct Spread {
    gateways: usize,
    sent: Vec<usize>,
}

impl Spread {
    fn new(gateways: usize, cohorts: usize) -> Spread {
        Spread {
            gateways: gateways.max(1),
            sent: vec![0; cohorts],
        }
    }

    /// The gateway of the cohort's next request.
    fn next(&mut self, cohort: usize) -> usize {
        let Some(n) = self.sent.get_mut(cohort) else {
            return 0;
        };
        let g = *n % self.gateways;
        *n += 1;
        g
    }
}

struct Job {
    cohort: usize,
    device_id: String,
    image: usize,
    gateway: usize,
}

/// Sends the plan's traffic and prints one line per second through `bar`.
pub fn run(plan: &Plan, images: Arc<Vec<Image>>, bar: &ProgressBar) -> RunResult {
    let start = Instant::now();
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(plan.concurrency);
    let job_rx = Arc::new(std::sync::Mutex::new(job_rx));
    let (sample_tx, sample_rx) = mpsc::channel::<Sample>();
    let (admin_tx, admin_rx) = mpsc::channel::<(Duration, usize, Breaker, String)>();
    let skipped = Arc::new(AtomicU64::new(0));
    let stop_admin = Arc::new(AtomicBool::new(false));

    let agent = ureq::AgentBuilder::new()
        .timeout(plan.timeout)
        .redirects(0)
        .max_idle_connections_per_host(plan.concurrency)
        .build();

    let mut senders = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        let rx = Arc::clone(&job_rx);
        let tx = sample_tx.clone();
        let agent = agent.clone();
        let images = Arc::clone(&images);
        let plan = plan.clone();
        senders.push(thread::spawn(move || {
            loop {
                // The lock is held only while waiting for the next job.
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                let sent = start.elapsed();
                let gateway = &plan.gateways[job.gateway % plan.gateways.len()];
                let outcome = send(&agent, &plan, gateway, &images[job.image], &job);
                let sample = Sample {
                    sent,
                    done: start.elapsed(),
                    cohort: job.cohort,
                    image: job.image,
                    gateway: job.gateway,
                    outcome,
                };
                if tx.send(sample).is_err() {
                    return;
                }
            }
        }));
    }
    drop(sample_tx);

    let scheduler = {
        let mut mix = plan.mix.clone();
        let skipped = Arc::clone(&skipped);
        let (requests, interval, n_images) = (plan.requests, plan.interval, images.len());
        let mut spread = Spread::new(plan.gateways.len(), plan.mix.cohorts().len());
        thread::spawn(move || {
            for i in 0..requests {
                let due = start + interval.mul_f64(i as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                let (cohort, device_id) = mix.next_device();
                let image = usize::try_from(i).unwrap_or(0) % n_images;
                match job_tx.try_send(Job {
                    cohort,
                    device_id,
                    image,
                    gateway: spread.next(cohort),
                }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        })
    };

    // One poller per gateway.
    let pollers: Vec<_> = plan
        .gateways
        .iter()
        .enumerate()
        .map(|(g, gateway)| {
            let stop = Arc::clone(&stop_admin);
            let url = gateway.admin_metrics.clone();
            let every = plan.admin_poll;
            let tx = admin_tx.clone();
            let admin = Client::new(ADMIN_POLL_TIMEOUT, fetch::MAX_METRICS_BYTES);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(text) = admin.get(&url, &[]) {
                        let state = Breaker::read(&text).unwrap_or(Breaker::Closed);
                        if tx.send((start.elapsed(), g, state, text)).is_err() {
                            return;
                        }
                    }
                    thread::sleep(every);
                }
            })
        })
        .collect();
    drop(admin_tx);

    let mut result = RunResult {
        samples: Vec::new(),
        breaker: Vec::new(),
        readings: Vec::new(),
        timeline: Timeline::default(),
        skipped: 0,
        last_admin: vec![None; plan.gateways.len()],
        latest: vec![Breaker::Closed; plan.gateways.len()],
    };
    let mut printed = 0usize;
    let mut admin_warned = false;
    loop {
        let finished = match sample_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(s) => {
                result.timeline.record(&s);
                result.samples.push(s);
                bar.inc(1);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        for (at, g, state, text) in admin_rx.try_iter() {
            result.reading(at, g, state, text);
        }
        let now = start.elapsed();
        if !admin_warned && now > Duration::from_secs(3) {
            for (g, gateway) in plan.gateways.iter().enumerate() {
                if result.last_admin.get(g).is_some_and(Option::is_none) {
                    admin_warned = true;
                    bar.suspend(|| {
                        eprintln!(
                            "warning: no answer from {}; its breaker state is unknown",
                            gateway.admin_metrics
                        )
                    });
                }
            }
        }
        result.timeline.extend_to(now);
        let complete = usize::try_from(now.saturating_sub(PRINT_GRACE).as_secs()).unwrap_or(0);
        while plan.live && printed < complete.min(result.timeline.seconds().len()) {
            let line = result.timeline.seconds()[printed].describe(printed);
            bar.suspend(|| println!("{line}"));
            printed += 1;
        }
        bar.set_message(format!(
            "skipped {} (all senders busy)",
            skipped.load(Ordering::Relaxed)
        ));
        if finished {
            break;
        }
    }
    let _ = scheduler.join();
    for s in senders {
        let _ = s.join();
    }
    stop_admin.store(true, Ordering::Relaxed);
    for p in pollers {
        let _ = p.join();
    }
    for (at, g, state, text) in admin_rx.try_iter() {
        result.reading(at, g, state, text);
    }
    // One last reading once every reply is in, so the final counters cover the whole run.
    let admin = Client::new(plan.timeout, fetch::MAX_METRICS_BYTES);
    for (g, gateway) in plan.gateways.iter().enumerate() {
        if let (Ok(text), Some(slot)) = (
            admin.get(&gateway.admin_metrics, &[]),
            result.last_admin.get_mut(g),
        ) {
            *slot = Some(text);
        }
    }
    let seconds = if plan.live {
        result.timeline.seconds().len()
    } else {
        printed
    };
    for i in printed..seconds {
        let line = result.timeline.seconds()[i].describe(i);
        bar.suspend(|| println!("{line}"));
    }
    result.skipped = skipped.load(Ordering::Relaxed);
    result
}

fn send(agent: &ureq::Agent, plan: &Plan, gateway: &Gateway, image: &Image, job: &Job) -> Outcome {
    let resp = agent
        .post(&gateway.target)
        .set("content-type", image.content_type)
        .set(
            headers::DEVICE_TYPE,
            &plan.mix.cohorts()[job.cohort].device_type,
        )
        .set(headers::DEVICE_ID, &job.device_id)
        .send_bytes(&image.bytes);
    let resp = match resp {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Outcome::Transport(t.to_string()),
    };
    let status = resp.status();
    let owned = |name: &str| resp.header(name).map(str::to_string);
    let (decision, version, boxes, breach) = (
        owned(headers::DECISION),
        owned(headers::MODEL_VERSION),
        owned(headers::BOX_COUNT),
        owned(headers::BREACH),
    );
    let mut body = Vec::new();
    if let Err(e) = resp
        .into_reader()
        .take(MAX_REPLY_BYTES)
        .read_to_end(&mut body)
    {
        return Outcome::Transport(format!("reading the reply: {e}"));
    }
    Outcome::Reply(reply::interpret(
        status,
        Headers {
            decision: decision.as_deref(),
            model_version: version.as_deref(),
            box_count: boxes.as_deref(),
            breach: breach.as_deref(),
        },
        &body,
        &plan.gray_version,
        &plan.stable_version,
    ))
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn every_gateway_gets_every_cohort_with_an_even_number_of_gateways() {
        let mut s = Spread::new(2, 2);
        // The cohorts alternate, as the demo's default mix does.
        let got: Vec<(usize, usize)> = (0..8).map(|i| (i % 2, s.next(i % 2))).collect();
        for cohort in 0..2 {
            for gateway in 0..2 {
                let n = got.iter().filter(|&&c| c == (cohort, gateway)).count();
                assert_eq!(n, 2, "cohort {cohort} on gateway {gateway}: {got:?}");
            }
        }
    }

    #[test]
    fn one_gateway_and_unknown_cohorts_go_to_gateway_zero() {
        let mut s = Spread::new(1, 2);
        assert!((0..5).all(|i| s.next(i % 2) == 0));
        assert_eq!(Spread::new(3, 1).next(7), 0);
    }
}
