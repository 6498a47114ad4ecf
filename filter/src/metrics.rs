//! The filter's metrics as the decision core sees them: typed counters and gauges with
//! their Envoy stat names. The core sums counters per VM and hands them to the host on
//! the tick, so the request path makes no metric host call; gauges are set on the tick.
//!
//! Per-rule gauges carry their labels in the stat name (`grayguard_contract::tags`).

use grayguard_contract::Trigger;
use grayguard_contract::metrics::filter as names;
use grayguard_contract::promotion::{Bound, Effect};
use grayguard_contract::tags::{Label, tagged};

/// Counters (process-wide sums over workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    RoutedGray,
    RoutedStable,
    ShedRequests,
    ProbeRequests,
    DryRunRequests,
    Breaches(Trigger),
    MalformedSignals,
    SpoofedHeadersStripped,
    GrayFailures,
    /// Responses observed from gray / stable.
    GrayResponses,
    StableResponses,
    /// Sum of the latency signal, µs, and the number of values summed.
    GrayLatencyUs,
    GrayLatencySamples,
    StableLatencyUs,
    StableLatencySamples,
    /// Sum of box counts and the number of values summed.
    GrayBoxes,
    GrayBoxSamples,
    StableBoxes,
    StableBoxSamples,
    /// Sum of gray agreement values, thousandths, and the number of values summed.
    GrayAgreementMilli,
    GrayAgreementSamples,
    /// Confirm mode: alerts raised, sheds confirmed, operator requests refused.
    Alerts,
    Confirmations,
    OperatorRefused,
    /// Latch calls sent to the gray workload, and those that failed.
    LatchCalls,
    LatchFailures,
}

impl Counter {
    /// Every counter, in the order of [`Counter::index`].
    pub fn all() -> Vec<Counter> {
        let mut v = vec![
            Counter::RoutedGray,
            Counter::RoutedStable,
            Counter::ShedRequests,
            Counter::ProbeRequests,
            Counter::DryRunRequests,
        ];
        v.extend(Trigger::ALL.map(Counter::Breaches));
        v.extend([
            Counter::MalformedSignals,
            Counter::SpoofedHeadersStripped,
            Counter::GrayFailures,
            Counter::GrayResponses,
            Counter::StableResponses,
            Counter::GrayLatencyUs,
            Counter::GrayLatencySamples,
            Counter::StableLatencyUs,
            Counter::StableLatencySamples,
            Counter::GrayBoxes,
            Counter::GrayBoxSamples,
            Counter::StableBoxes,
            Counter::StableBoxSamples,
            Counter::GrayAgreementMilli,
            Counter::GrayAgreementSamples,
            Counter::Alerts,
            Counter::Confirmations,
            Counter::OperatorRefused,
            Counter::LatchCalls,
            Counter::LatchFailures,
        ]);
        v
    }

    /// Position in [`Counter::all`].
    pub fn index(self) -> usize {
        let breach = |t: Trigger| Trigger::ALL.iter().position(|x| *x == t).unwrap_or(0);
        match self {
            Counter::RoutedGray => 0,
            Counter::RoutedStable => 1,
            Counter::ShedRequests => 2,
            Counter::ProbeRequests => 3,
            Counter::DryRunRequests => 4,
            Counter::Breaches(t) => 5 + breach(t),
            c => {
                let base = 5 + Trigger::ALL.len();
                base + match c {
                    Counter::MalformedSignals => 0,
                    Counter::SpoofedHeadersStripped => 1,
                    Counter::GrayFailures => 2,
                    Counter::GrayResponses => 3,
                    Counter::StableResponses => 4,
                    Counter::GrayLatencyUs => 5,
                    Counter::GrayLatencySamples => 6,
                    Counter::StableLatencyUs => 7,
                    Counter::StableLatencySamples => 8,
                    Counter::GrayBoxes => 9,
                    Counter::GrayBoxSamples => 10,
                    Counter::StableBoxes => 11,
                    Counter::StableBoxSamples => 12,
                    Counter::GrayAgreementMilli => 13,
                    Counter::GrayAgreementSamples => 14,
                    Counter::Alerts => 15,
                    Counter::Confirmations => 16,
                    Counter::OperatorRefused => 17,
                    Counter::LatchCalls => 18,
                    _ => 19,
                }
            }
        }
    }

    pub fn name(self) -> String {
        match self {
            Counter::RoutedGray => names::ROUTED_GRAY.into(),
            Counter::RoutedStable => names::ROUTED_STABLE.into(),
            Counter::ShedRequests => names::SHED_REQUESTS.into(),
            Counter::ProbeRequests => names::PROBE_REQUESTS.into(),
            Counter::DryRunRequests => names::DRY_RUN_REQUESTS.into(),
            Counter::Breaches(t) => names::breaches(t),
            Counter::MalformedSignals => names::MALFORMED_SIGNALS.into(),
            Counter::SpoofedHeadersStripped => names::SPOOFED_HEADERS_STRIPPED.into(),
            Counter::GrayFailures => names::GRAY_FAILURES.into(),
            Counter::GrayResponses => names::GRAY_RESPONSES.into(),
            Counter::StableResponses => names::STABLE_RESPONSES.into(),
            Counter::GrayLatencyUs => names::GRAY_LATENCY_US.into(),
            Counter::GrayLatencySamples => names::GRAY_LATENCY_SAMPLES.into(),
            Counter::StableLatencyUs => names::STABLE_LATENCY_US.into(),
            Counter::StableLatencySamples => names::STABLE_LATENCY_SAMPLES.into(),
            Counter::GrayBoxes => names::GRAY_BOXES.into(),
            Counter::GrayBoxSamples => names::GRAY_BOX_SAMPLES.into(),
            Counter::StableBoxes => names::STABLE_BOXES.into(),
            Counter::StableBoxSamples => names::STABLE_BOX_SAMPLES.into(),
            Counter::GrayAgreementMilli => names::GRAY_AGREEMENT_MILLI.into(),
            Counter::GrayAgreementSamples => names::GRAY_AGREEMENT_SAMPLES.into(),
            Counter::Alerts => names::ALERTS.into(),
            Counter::Confirmations => names::CONFIRMATIONS.into(),
            Counter::OperatorRefused => names::OPERATOR_REFUSED.into(),
            Counter::LatchCalls => names::LATCH_CALLS.into(),
            Counter::LatchFailures => names::LATCH_FAILURES.into(),
        }
    }
}

/// Gauges (process-wide; the last worker to set one wins, and all compute the same value
/// from the same shared state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gauge {
    /// Worst breaker over units: 0 closed, 1 open, 2 half-open.
    BreakerState,
    /// Units shedding (open or half-open).
    BreakersOpen,
    /// One unit's breaker: 0 closed, 1 open, 2 half-open.
    UnitState(usize),
    /// How close a unit's trigger is to shedding, percent (100 sheds): the largest
    /// `ln M / ln(1/alpha)` over the trigger's sequential tests, 0 below even odds.
    Evidence(usize, Trigger),
    /// Confirm mode: 1 while the unit alerts on the trigger, labelled with the signed link
    /// (`confirm`, the link's query string, which the engine supplies).
    Alert(usize, Trigger),
    /// 1 while a person's hold on the trigger keeps the unit shed, labelled with the signed
    /// release link (`release`, its query string, which the engine supplies).
    Held(usize, Trigger),
    /// A unit's promotion verdict: 0 pending, 1 proven, 2 refuted.
    PromotionState(usize),
    /// How far one end of an effect's interval reaches into its budget, percent.
    PromotionBound(usize, Effect, Bound),
}

/// The stat name of a unit's fallback counter (`grayguard_fallbacks_total{rule}`).
pub fn fallbacks_name(unit_name: &str) -> String {
    tagged(&[(Label::Rule, unit_name)], names::FALLBACKS)
}

/// Names of a configuration's gauges (`units[u]` names unit `u`: a rule, or `*`; `link`
/// is the query of the alert's link for [`Gauge::Alert`], of the release link for
/// [`Gauge::Held`]).
pub fn gauge_name(g: Gauge, units: &[String], link: &str) -> String {
    let unit = |u: usize| units.get(u).map_or("?", String::as_str);
    match g {
        Gauge::Alert(u, t) => tagged(
            &[
                (Label::Rule, unit(u)),
                (Label::Trigger, t.as_str()),
                (Label::Confirm, link),
            ],
            names::ALERT,
        ),
        Gauge::Held(u, t) => tagged(
            &[
                (Label::Rule, unit(u)),
                (Label::Trigger, t.as_str()),
                (Label::Release, link),
            ],
            names::HELD,
        ),
        Gauge::BreakerState => names::BREAKER_STATE.into(),
        Gauge::BreakersOpen => names::BREAKERS_OPEN.into(),
        Gauge::UnitState(u) => tagged(&[(Label::Rule, unit(u))], names::RULE_BREAKER_STATE),
        Gauge::Evidence(u, t) => tagged(
            &[(Label::Rule, unit(u)), (Label::Trigger, t.as_str())],
            names::EVIDENCE_PCT,
        ),
        Gauge::PromotionState(u) => tagged(&[(Label::Rule, unit(u))], names::PROMOTION_STATE),
        Gauge::PromotionBound(u, e, b) => tagged(
            &[
                (Label::Rule, unit(u)),
                (Label::Effect, e.as_str()),
                (Label::Bound, b.as_str()),
            ],
            names::PROMOTION_BUDGET_PCT,
        ),
    }
}

/// Counter deltas a VM has not handed to the host yet.
#[derive(Debug, Clone)]
pub struct Pending(Vec<u64>);

impl Default for Pending {
    fn default() -> Pending {
        Pending(vec![0; Counter::all().len()])
    }
}

impl Pending {
    pub fn add(&mut self, c: Counter, n: u64) {
        if let Some(p) = self.0.get_mut(c.index()) {
            *p = p.saturating_add(n);
        }
    }

    pub fn count(&mut self, c: Counter) {
        self.add(c, 1);
    }

    /// The non-zero deltas, emptied.
    pub fn drain(&mut self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::all()
            .into_iter()
            .zip(self.0.iter_mut())
            .filter(|(_, p)| **p > 0)
            .map(|(c, p)| (c, std::mem::take(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_index_their_own_position_and_have_distinct_names() {
        let all = Counter::all();
        for (i, c) in all.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
        let mut n: Vec<String> = all.iter().map(|c| c.name()).collect();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), all.len());
    }

    #[test]
    fn every_metric_is_published_in_the_contract() {
        let published = names::all();
        for c in Counter::all() {
            assert!(published.contains(&c.name()), "{}", c.name());
        }
        let units = vec!["r".to_string()];
        for g in [
            Gauge::BreakerState,
            Gauge::BreakersOpen,
            Gauge::UnitState(0),
            Gauge::Evidence(0, Trigger::Latency),
            Gauge::Alert(0, Trigger::Latency),
            Gauge::Held(0, Trigger::Operator),
        ] {
            let name = gauge_name(g, &units, "q");
            let bare = name.rsplit(";.;").next().unwrap_or_default().to_string();
            assert!(published.contains(&bare), "{name}");
        }
    }

    #[test]
    fn pending_counters_drain_once() {
        let mut p = Pending::default();
        p.count(Counter::RoutedGray);
        p.add(Counter::Breaches(Trigger::BoxCount), 2);
        let got: Vec<_> = p.drain().collect();
        assert_eq!(
            got,
            vec![
                (Counter::RoutedGray, 1),
                (Counter::Breaches(Trigger::BoxCount), 2)
            ]
        );
        assert_eq!(p.drain().count(), 0);
    }

    #[test]
    fn tagged_gauge_names() {
        let units = vec!["crane-cameras".to_string()];
        assert_eq!(
            gauge_name(Gauge::Evidence(0, Trigger::BoxCount), &units, ""),
            "rule=.=crane-cameras;.;trigger=.=box_count;.;grayguard_evidence_pct"
        );
        assert_eq!(
            gauge_name(Gauge::UnitState(0), &units, ""),
            "rule=.=crane-cameras;.;grayguard_rule_breaker_state"
        );
    }
}
