//! Background traffic for fault tests: lanes of sender threads, each lane one device cohort
//! sending the real photos in turn through one front Envoy at its own pace, every reply
//! recorded with its send and reply times (and [`Latencies`] to summarise them), while the
//! test injects a fault. Bounded: every lane stops at the test's [`Load::stop`], after its
//! `max_requests`, or after the load's `max_duration`, whichever comes first.

use grayguard_contract::{Decision, Note, Side, Trigger, headers};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http;
use crate::paths;
use crate::wait::eventually;

/// The photos every lane sends in the same order, so that cohorts see the same scenes.
pub const PHOTOS: [&str; 7] = [
    "person.jpg",
    "dog.jpg",
    "kite.jpg",
    "giraffe.jpg",
    "horses.jpg",
    "eagle.jpg",
    "scream.jpg",
];

/// One cohort's traffic.
#[derive(Debug, Clone)]
pub struct Lane {
    /// `x-device-type` of every request.
    pub device_type: String,
    /// Sender threads (each has one request in flight at most).
    pub senders: usize,
    /// Gap between two sends of one sender; a reply slower than this is followed at once.
    pub pace: Duration,
    /// Most requests of the whole lane.
    pub max_requests: usize,
    /// Index of the gateway (in [`Load::start`]'s targets) it sends through.
    pub gateway: usize,
}

impl Lane {
    /// One sender at `pace`, at most `max_requests` requests.
    pub fn new(device_type: &str, pace: Duration, max_requests: usize) -> Lane {
        Lane {
            device_type: device_type.to_string(),
            senders: 1,
            pace,
            max_requests,
            gateway: 0,
        }
    }

    /// Through gateway `i` of the load's targets instead of the first.
    pub fn via(mut self, i: usize) -> Lane {
        self.gateway = i;
        self
    }

    /// `n` senders instead of one.
    pub fn senders(mut self, n: usize) -> Lane {
        self.senders = n;
        self
    }
}

/// What one request got.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Index of the lane in [`Load::start`]'s list.
    pub lane: usize,
    /// Index of the gateway it went through.
    pub gateway: usize,
    /// When it was sent and when its reply (or transport error) came, from the load's start.
    pub sent: Duration,
    pub done: Duration,
    /// HTTP status; `None` for a transport error (connection refused, reset, client timeout).
    pub status: Option<u16>,
    pub decision: Option<String>,
    pub model_version: Option<String>,
    pub retry_after: Option<String>,
    pub breach: Option<String>,
    /// `x-envoy-attempt-count`: 2 when the shipped gray route asked stable too.
    pub attempts: Option<u32>,
    /// The body (an error's text) or the transport error.
    pub text: String,
}

impl Outcome {
    /// A 200 reply.
    pub fn ok(&self) -> bool {
        self.status == Some(200)
    }

    /// From the send to the reply.
    pub fn latency(&self) -> Duration {
        self.done.saturating_sub(self.sent)
    }

    /// The reply came from the version `x-model-version` names.
    pub fn served_by(&self, version: &str) -> bool {
        self.model_version.as_deref() == Some(version)
    }

    /// The filter's decision, parsed strictly (a header outside the grammar fails the test);
    /// `None` when the reply had none.
    pub fn parsed(&self) -> Option<Decision<'_>> {
        self.decision
            .as_deref()
            .map(|d| Decision::parse(d).unwrap_or_else(|e| panic!("decision header {d:?}: {e}")))
    }

    /// What opened the rule's breaker, if the decision says it is shed.
    pub fn shed(&self) -> Option<Trigger> {
        self.parsed().and_then(|d| d.shed())
    }

    /// A half-open probe.
    pub fn probe(&self) -> bool {
        self.parsed().is_some_and(|d| d.note == Some(Note::Probe))
    }

    /// Sent to gray, whose attempt failed, and answered by stable (the shipped gray route's
    /// fallback, booked by the filter as a gray failure).
    pub fn fallback(&self) -> bool {
        self.parsed()
            .is_some_and(|d| d.side == Side::Gray && d.note == Some(Note::Fallback))
    }

    /// Sent to gray by a rule whose breaker is closed (no note: not a probe, not shed).
    pub fn closed_gray(&self) -> bool {
        self.parsed()
            .is_some_and(|d| d.side == Side::Gray && d.rule.is_some() && d.note.is_none())
    }
}

/// Running lanes; dropping it stops them.
pub struct Load {
    start: Instant,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `lanes` against `targets` (front Envoys' `/infer` URLs; each lane sends through
    /// its [`Lane::gateway`]); nothing runs past `max_duration`.
    pub fn start(targets: &[String], lanes: &[Lane], max_duration: Duration) -> Load {
        let photos: Arc<Vec<Vec<u8>>> = Arc::new(
            PHOTOS
                .iter()
                .map(|n| std::fs::read(paths::image(n)).expect("read photo"))
                .collect(),
        );
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for (lane_index, lane) in lanes.iter().enumerate() {
            // The lane's request budget, shared by its senders.
            let budget = Arc::new(Mutex::new(lane.max_requests));
            for sender in 0..lane.senders {
                let url = targets
                    .get(lane.gateway)
                    .unwrap_or_else(|| panic!("lane {lane_index}: no gateway {}", lane.gateway))
                    .clone();
                let (lane, photos) = (lane.clone(), Arc::clone(&photos));
                let (stop, outcomes, budget) = (
                    Arc::clone(&stop),
                    Arc::clone(&outcomes),
                    Arc::clone(&budget),
                );
                threads.push(std::thread::spawn(move || {
                    let device_id = format!("{}-{sender:03}", lane.device_type);
                    let mut next = Instant::now();
                    for n in 0.. {
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        if stop.load(Ordering::Relaxed) || start.elapsed() >= max_duration {
                            return;
                        }
                        match budget.lock() {
                            Ok(mut left) if *left > 0 => *left -= 1,
                            _ => return,
                        }
                        next = Instant::now() + lane.pace;
                        let photo = &photos[(n * lane.senders + sender) % photos.len()];
                        let sent = start.elapsed();
                        let outcome = send(&url, &lane.device_type, &device_id, photo);
                        let record = Outcome {
                            lane: lane_index,
                            gateway: lane.gateway,
                            sent,
                            done: start.elapsed(),
                            ..outcome
                        };
                        if let Ok(mut all) = outcomes.lock() {
                            all.push(record);
                        }
                    }
                }));
            }
        }
        Load {
            start,
            stop,
            outcomes,
            threads,
        }
    }

    /// Time since the load started (the clock of [`Outcome::sent`]).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Every outcome so far, in the order the replies came.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Polls the outcomes until `done` holds for them, failing the test with `what` after
    /// `timeout`; returns them.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Outcome]) -> bool,
    ) -> Vec<Outcome> {
        eventually(what, timeout, || {
            let all = self.outcomes();
            if done(&all) {
                return Ok(all);
            }
            Err(format!(
                "{} replies so far, the last ones:\n{}",
                all.len(),
                describe(&all[all.len().saturating_sub(12)..])
            ))
        })
    }

    /// Waits until lane `lane` has `n` replies to requests sent after `after` (the clock of
    /// [`Load::now`]), failing the test with `what` after `timeout`; returns every outcome.
    pub fn wait_for_replies_after(
        &self,
        what: &str,
        timeout: Duration,
        lane: usize,
        after: Duration,
        n: usize,
    ) -> Vec<Outcome> {
        self.wait_until(what, timeout, |all| {
            all.iter()
                .filter(|o| o.lane == lane && o.sent > after)
                .count()
                >= n
        })
    }

    /// Stops every lane, waits for the requests in flight, and returns every outcome.
    pub fn stop(mut self) -> Vec<Outcome> {
        self.halt();
        self.outcomes()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The median, the 99th percentile (nearest rank) and the largest of some latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latencies {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latencies {
    /// Of `latencies` (at least one).
    pub fn of(latencies: impl IntoIterator<Item = Duration>) -> Latencies {
        let mut s: Vec<Duration> = latencies.into_iter().collect();
        assert!(!s.is_empty(), "no latencies to measure");
        s.sort_unstable();
        let at = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Latencies {
            n: s.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: s[s.len() - 1],
        }
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} s, p99 {:.2} s, max {:.2} s (n = {})",
            self.p50.as_secs_f64(),
            self.p99.as_secs_f64(),
            self.max.as_secs_f64(),
            self.n
        )
    }
}

/// One line per outcome, for failure messages.
pub fn describe(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .map(|o| {
            format!(
                "  lane {} gw-{} sent {:.2}s done {:.2}s status {:?} decision {:?} version {:?} attempts {} {}",
                o.lane,
                o.gateway,
                o.sent.as_secs_f64(),
                o.done.as_secs_f64(),
                o.status,
                o.decision.as_deref().unwrap_or("-"),
                o.model_version.as_deref().unwrap_or("-"),
                o.attempts.map_or("-".to_string(), |a| a.to_string()),
                o.text.chars().take(120).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn send(url: &str, device_type: &str, device_id: &str, photo: &[u8]) -> Outcome {
    let reply = http::post(
        url,
        &[
            ("content-type", "image/jpeg"),
            (headers::DEVICE_TYPE, device_type),
            (headers::DEVICE_ID, device_id),
        ],
        photo,
    );
    let blank = Outcome {
        lane: 0,
        gateway: 0,
        sent: Duration::ZERO,
        done: Duration::ZERO,
        status: None,
        decision: None,
        model_version: None,
        retry_after: None,
        breach: None,
        attempts: None,
        text: String::new(),
    };
    match reply {
        Ok(r) => {
            let header = |name: &str| r.header(name).map(str::to_string);
            Outcome {
                status: Some(r.status),
                decision: header(headers::DECISION),
                model_version: header(headers::MODEL_VERSION),
                retry_after: header("retry-after"),
                breach: header(headers::BREACH),
                attempts: r
                    .header(headers::ENVOY_ATTEMPT_COUNT)
                    .and_then(|a| a.trim().parse().ok()),
                text: if r.status == 200 {
                    String::new()
                } else {
                    r.text()
                },
                ..blank
            }
        }
        Err(e) => Outcome {
            text: e.to_string(),
            ..blank
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_summarised_by_nearest_rank() {
        let ms = Duration::from_millis;
        let l = Latencies::of((1..=200).map(ms));
        assert_eq!((l.n, l.p50, l.p99, l.max), (200, ms(100), ms(198), ms(200)));
        let one = Latencies::of([ms(7)]);
        assert_eq!((one.p50, one.p99, one.max), (ms(7), ms(7), ms(7)));
        assert_eq!(
            one.to_string(),
            "p50 0.01 s, p99 0.01 s, max 0.01 s (n = 1)"
        );
    }
}
