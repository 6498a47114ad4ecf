//! The breaker as the filter publishes it in the `grayguard_breaker_state` gauge (the worst
//! over its rules; `grayguard_rule_breaker_state{rule}` per rule): 0 closed, 1 open
//! (shedding), 2 half-open (probing).

use grayguard_contract::metrics::filter::BREAKER_STATE;

use crate::exposition;

/// One breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    Closed,
    Open,
    HalfOpen,
}

impl Breaker {
    /// Maps the gauge value (0 closed, 1 open, 2 half-open).
    pub fn from_gauge(v: f64) -> Option<Breaker> {
        match v {
            0.0 => Some(Breaker::Closed),
            1.0 => Some(Breaker::Open),
            2.0 => Some(Breaker::HalfOpen),
            _ => None,
        }
    }

    pub fn gauge(self) -> u8 {
        match self {
            Breaker::Closed => 0,
            Breaker::Open => 1,
            Breaker::HalfOpen => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Breaker::Closed => "closed",
            Breaker::Open => "OPEN",
            Breaker::HalfOpen => "half-open",
        }
    }

    /// How far from closed: closed < half-open < open (the worst of several gateways).
    pub fn severity(self) -> u8 {
        match self {
            Breaker::Closed => 0,
            Breaker::HalfOpen => 1,
            Breaker::Open => 2,
        }
    }

    /// The gateway's breaker in its admin `/stats/prometheus` text, if the gauge is there
    /// with a known value.
    pub fn read(admin_text: &str) -> Option<Breaker> {
        exposition::value(admin_text, BREAKER_STATE).and_then(Breaker::from_gauge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_gauge_mapping() {
        assert_eq!(Breaker::from_gauge(0.0), Some(Breaker::Closed));
        assert_eq!(Breaker::from_gauge(1.0), Some(Breaker::Open));
        assert_eq!(Breaker::from_gauge(2.0), Some(Breaker::HalfOpen));
        assert_eq!(Breaker::from_gauge(3.0), None);
        assert_eq!(Breaker::HalfOpen.gauge(), 2);
    }

    #[test]
    fn reads_the_gauge_from_an_admin_page_and_orders_by_severity() {
        assert_eq!(
            Breaker::read("# TYPE grayguard_breaker_state gauge\ngrayguard_breaker_state 2\n"),
            Some(Breaker::HalfOpen)
        );
        assert_eq!(Breaker::read("grayguard_breaker_state 7\n"), None);
        assert_eq!(Breaker::read(""), None);
        let worst = [Breaker::HalfOpen, Breaker::Open, Breaker::Closed]
            .into_iter()
            .max_by_key(|b| b.severity());
        assert_eq!(worst, Some(Breaker::Open));
    }
}
