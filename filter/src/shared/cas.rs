//! Compare-and-swap on one shared-data value, over any [`Host`]: read, change, write only
//! if nobody wrote in between, and retry a bounded number of times.

use crate::host::{Host, ShareError};

/// Attempts of a compare-and-swap loop before giving up until the next event or tick.
pub const CAS_ATTEMPTS: usize = 16;

/// Applies `change` to a shared value with compare-and-swap, retrying on conflicts.
/// `decode` reads the stored bytes (`None` when missing or undecodable: start afresh);
/// `change` returns `None` when there is nothing to do (e.g. another worker already made
/// the transition). Returns the written value and what `change` said.
pub fn update<V, T>(
    host: &impl Host,
    key: &str,
    decode: impl Fn(Option<Vec<u8>>) -> V,
    encode: impl Fn(&V) -> Vec<u8>,
    mut change: impl FnMut(&V) -> Option<(V, T)>,
) -> Option<(V, T)> {
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = host.get_shared(key);
        let current = decode(bytes);
        let (next, out) = change(&current)?;
        match host.set_shared(key, &encode(&next), cas) {
            Ok(()) => return Some((next, out)),
            Err(ShareError::CasMismatch) => continue,
            Err(ShareError::Failed) => return None,
        }
    }
    None
}
