//! Scripted upstreams that answer like a model server drawn from the filter's simulator
//! (`grayguard_filter::simulate`): the sequential detector's and the promotion verdict's
//! tests through real Envoys.

use grayguard_contract::headers;
use grayguard_e2e::upstream::Answer;
use grayguard_filter::simulate::{Rng, Side};

/// An answer drawn from `side` with `seed`, `plus_ms` slower: status 200 with the latency and
/// box-count headers, or a 503 without them.
pub fn draw(side: Side, seed: u64, plus_ms: f64) -> Answer {
    let o = side.draw(&mut Rng::new(seed));
    if o.failed {
        return Answer {
            status: 503,
            headers: Vec::new(),
        };
    }
    Answer {
        status: 200,
        headers: vec![
            (
                headers::INFERENCE_LATENCY_MS.into(),
                format!("{:.3}", o.latency_ms.unwrap_or_default() + plus_ms),
            ),
            (
                headers::BOX_COUNT.into(),
                format!("{}", o.boxes.unwrap_or_default()),
            ),
        ],
    }
}
