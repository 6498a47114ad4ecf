//! Proxy shared data: the keys one configuration uses and the reads and compare-and-swap
//! writes on them. Shared data is per Envoy process and VM id, visible to every worker's VM.
//!
//! Keys (`<cfg>` is a hash of the configuration text, so a changed configuration starts
//! from clean state and an unchanged reload keeps it):
//! - `grayguard/<cfg>/board`: the breaker board, written only on transitions (CAS);
//! - `grayguard/<cfg>/workers`: ids of the VMs publishing windows (unique; CAS append);
//! - `grayguard/<cfg>/w/<id>`: one VM's window snapshot, written by that VM only.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Bytes, Status};

use crate::breaker::Board;
use crate::rules::sticky_hash;

/// Most VMs remembered in the worker list (older ids are dropped first).
pub const MAX_WORKERS: usize = 256;
/// Attempts of a compare-and-swap loop before giving up until the next event or tick.
const CAS_ATTEMPTS: usize = 16;

/// The keys of one configuration.
#[derive(Debug, Clone)]
pub struct Keys {
    pub board: String,
    pub workers: String,
    prefix: String,
}

impl Keys {
    pub fn new(config_text: &[u8]) -> Keys {
        let prefix = format!("grayguard/{:016x}/", sticky_hash(config_text));
        Keys {
            board: format!("{prefix}board"),
            workers: format!("{prefix}workers"),
            prefix,
        }
    }

    pub fn worker(&self, id: u32) -> String {
        format!("{}w/{id:08x}", self.prefix)
    }
}

/// Reads a key: `(value, cas)`; a missing key or a host error read as `(None, None)`.
pub fn get(key: &str) -> (Option<Bytes>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Writes a key without a CAS (keys with a single writer).
pub fn put(key: &str, value: &[u8]) -> bool {
    hostcalls::set_shared_data(key, Some(value), None).is_ok()
}

/// The board as stored, with its CAS, or a fresh all-closed board.
pub fn read_board(key: &str, units: usize) -> (Board, Option<u32>) {
    let (bytes, cas) = get(key);
    let board = bytes
        .and_then(|b| Board::decode(&b, units).ok())
        .unwrap_or_else(|| Board::new(units));
    (board, cas)
}

/// Applies `change` to the shared board with compare-and-swap, retrying on conflicts.
/// `change` returns `None` when there is nothing to do (e.g. another worker already made
/// the transition). Returns the written board and what `change` said.
pub fn update_board<T>(
    key: &str,
    units: usize,
    mut change: impl FnMut(&Board) -> Option<(Board, T)>,
) -> Option<(Board, T)> {
    for _ in 0..CAS_ATTEMPTS {
        let (board, cas) = read_board(key, units);
        let (next, out) = change(&board)?;
        match hostcalls::set_shared_data(key, Some(&next.encode()), cas) {
            Ok(()) => return Some((next, out)),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Creates the board if it does not exist yet (so later writes always carry a CAS).
pub fn ensure_board(key: &str, units: usize) {
    if get(key).0.is_none() {
        let _ = hostcalls::set_shared_data(key, Some(&Board::new(units).encode()), None);
    }
}

/// Worker ids in the list.
pub fn workers(key: &str) -> Vec<u32> {
    decode_ids(get(key).0)
}

fn decode_ids(bytes: Option<Bytes>) -> Vec<u32> {
    bytes
        .map(|b| {
            b.chunks_exact(4)
                .filter_map(|c| c.try_into().ok().map(u32::from_le_bytes))
                .collect()
        })
        .unwrap_or_default()
}

/// Claims a worker id for this VM and appends it to the list: `wanted` (the VM's earlier id,
/// when a concurrent write lost its entry) if it is still free, else a fresh one from `draw`.
/// Returns the id, or `None` after [`CAS_ATTEMPTS`] conflicts or a host error.
pub fn claim_worker(key: &str, wanted: Option<u32>, draw: impl FnMut() -> u32) -> Option<u32> {
    claim_worker_in(
        get,
        |k, v, cas| hostcalls::set_shared_data(k, Some(v), cas),
        key,
        wanted,
        draw,
    )
}

/// [`claim_worker`] over any shared-data store with compare-and-swap.
///
/// Ids must be unique by construction, not by chance: VMs started at the same instant can
/// seed identical random draws, and two VMs under one id overwrite each other's snapshot,
/// so one's windows are never merged. So the id is only ever taken from those absent from
/// the list and appended with a CAS (a VM that loses the race re-reads and draws again),
/// and the one unguarded write — creating a missing list — writes an empty list, never an id.
fn claim_worker_in(
    mut get: impl FnMut(&str) -> (Option<Bytes>, Option<u32>),
    mut set: impl FnMut(&str, &[u8], Option<u32>) -> Result<(), Status>,
    key: &str,
    wanted: Option<u32>,
    mut draw: impl FnMut() -> u32,
) -> Option<u32> {
    let mut id = wanted;
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = get(key);
        let Some(cas) = cas else {
            set(key, &[], None).ok()?;
            continue;
        };
        let mut ids = decode_ids(bytes);
        let pick = match id {
            Some(i) if !ids.contains(&i) => i,
            _ => (0..CAS_ATTEMPTS)
                .map(|_| draw())
                .find(|i| !ids.contains(i))?,
        };
        id = Some(pick);
        ids.push(pick);
        if ids.len() > MAX_WORKERS {
            ids.remove(0);
        }
        let out: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        match set(key, &out, Some(cas)) {
            Ok(()) => return Some(pick),
            Err(Status::CasMismatch) => {}
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// An in-memory store with the host's CAS semantics (a write without a CAS always wins).
    #[derive(Default)]
    struct Store {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: RefCell<u32>,
    }

    impl Store {
        fn get(&self, key: &str) -> (Option<Bytes>, Option<u32>) {
            match self.map.borrow().get(key) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            }
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
            let mut map = self.map.borrow_mut();
            if let (Some(want), Some((_, have))) = (cas, map.get(key)) {
                if want != *have {
                    return Err(Status::CasMismatch);
                }
            }
            let mut next = self.next_cas.borrow_mut();
            *next += 1;
            map.insert(key.to_string(), (value.to_vec(), *next));
            Ok(())
        }

        fn claim(&self, wanted: Option<u32>, draws: &[u32]) -> Option<u32> {
            let mut d = draws.iter().copied().cycle();
            claim_worker_in(
                |k| self.get(k),
                |k, v, c| self.set(k, v, c),
                "w",
                wanted,
                || d.next().unwrap_or(0),
            )
        }

        fn ids(&self) -> Vec<u32> {
            decode_ids(self.get("w").0)
        }
    }

    #[test]
    fn vms_with_identical_draws_get_distinct_ids() {
        let store = Store::default();
        let draws = [7, 9, 11];
        let ids: Vec<_> = (0..3).map(|_| store.claim(None, &draws)).collect();
        assert_eq!(ids, vec![Some(7), Some(9), Some(11)]);
        assert_eq!(store.ids(), vec![7, 9, 11]);
    }

    #[test]
    fn a_vm_losing_the_race_rereads_and_draws_again() {
        let store = Store::default();
        store.set("w", &[], None).unwrap();
        // Both VMs draw 5 first; the other VM's append lands between this one's read and write.
        let mut raced = false;
        let mut d = [5, 6].into_iter().cycle();
        let got = claim_worker_in(
            |k| {
                let read = store.get(k);
                if !std::mem::replace(&mut raced, true) {
                    assert_eq!(store.claim(None, &[5, 6]), Some(5));
                }
                read
            },
            |k, v, c| store.set(k, v, c),
            "w",
            None,
            || d.next().unwrap_or(0),
        );
        assert_eq!(got, Some(6));
        assert_eq!(store.ids(), vec![5, 6]);
        // Nothing but taken ids to draw: no id rather than a shared one.
        assert_eq!(store.claim(None, &[5, 6]), None);
    }

    #[test]
    fn a_lost_entry_is_taken_back_only_while_free() {
        let store = Store::default();
        assert_eq!(store.claim(None, &[3]), Some(3));
        // A late creation of the list wipes the entry.
        store.set("w", &[], None).unwrap();
        assert_eq!(store.claim(Some(3), &[8]), Some(3));
        store.set("w", &[], None).unwrap();
        // Another VM took 3 meanwhile: the old owner moves to a fresh id.
        assert_eq!(store.claim(None, &[3]), Some(3));
        assert_eq!(store.claim(Some(3), &[3, 8]), Some(8));
        assert_eq!(store.ids(), vec![3, 8]);
    }

    #[test]
    fn a_missing_list_is_created_empty_first() {
        let store = Store::default();
        assert_eq!(store.claim(None, &[1]), Some(1));
        assert_eq!(store.ids(), vec![1]);
    }
}
