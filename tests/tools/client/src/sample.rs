//! One request of a run ([`Sample`]): when it was sent and answered, its cohort, body and
//! gateway, and what came back ([`Outcome`]: a reply, or no reply at all).

use std::time::Duration;

use crate::decision::Decision;
use crate::reply::Reply;

/// What came back for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An HTTP reply, whatever its status.
    Reply(Reply),
    /// Connection refused/reset, timeout: the client got no HTTP reply at all.
    Transport(String),
}

/// One request of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When it was sent, from the start of the run.
    pub sent: Duration,
    /// When its reply (or failure) arrived, from the start of the run.
    pub done: Duration,
    /// Index of its cohort in the mix.
    pub cohort: usize,
    /// Index of the body it sent in the run's image list.
    pub image: usize,
    /// Index of the gateway it went through.
    pub gateway: usize,
    pub outcome: Outcome,
}

impl Sample {
    /// A 200 reply that `decision` sent to the side that served it, with `boxes` boxes: the
    /// first request (cohort, body and gateway 0) of a run as a test builds one.
    pub fn served(sent: Duration, done: Duration, decision: Decision, boxes: u32) -> Sample {
        Sample {
            sent,
            done,
            cohort: 0,
            image: 0,
            gateway: 0,
            outcome: Outcome::Reply(Reply {
                status: 200,
                served_by: Some(decision.side),
                decision: Some(Ok(decision)),
                box_count: Some(boxes),
                breach: None,
            }),
        }
    }

    pub fn reply(&self) -> Option<&Reply> {
        match &self.outcome {
            Outcome::Reply(r) => Some(r),
            Outcome::Transport(_) => None,
        }
    }

    /// A client-visible error: a transport failure or a non-2xx status.
    pub fn is_error(&self) -> bool {
        self.reply().is_none_or(|r| !r.ok())
    }

    /// A short name of the error, for counting (`HTTP 503`, `transport`), `None` if none.
    pub fn error_kind(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Transport(_) => Some("transport".to_string()),
            Outcome::Reply(r) if !r.ok() => Some(format!("HTTP {}", r.status)),
            Outcome::Reply(_) => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A successful reply with a decision header, served by its route.
    pub(crate) fn sample(sent_ms: u64, done_ms: u64, decision: &str, boxes: u32) -> Sample {
        let ms = Duration::from_millis;
        let d = crate::decision::parse(decision).unwrap();
        Sample::served(ms(sent_ms), ms(done_ms), d, boxes)
    }

    #[test]
    fn errors_are_transport_failures_and_non_2xx_replies() {
        let ok = sample(0, 10, "gray; rule=r", 3);
        assert!(!ok.is_error() && ok.error_kind().is_none());
        let lost = Sample {
            outcome: Outcome::Transport("connection refused".into()),
            ..ok.clone()
        };
        assert!(lost.is_error() && lost.reply().is_none());
        assert_eq!(lost.error_kind().as_deref(), Some("transport"));
    }
}
