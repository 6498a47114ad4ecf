//! Proxy shared data: the keys one configuration uses and the reads and compare-and-swap
//! writes on them. Shared data is per Envoy process and VM id, visible to every worker's VM.
//!
//! Keys (`<cfg>` is a hash of the configuration text, so a changed configuration starts
//! from clean state and an unchanged reload keeps it):
//! - `grayguard/<cfg>/board`: the breaker board, written only on transitions (CAS);
//! - `grayguard/<cfg>/workers`: ids of the VMs publishing windows (CAS append);
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
    get(key)
        .0
        .map(|b| {
            b.chunks_exact(4)
                .filter_map(|c| c.try_into().ok().map(u32::from_le_bytes))
                .collect()
        })
        .unwrap_or_default()
}

/// Adds `id` to the worker list; verified by reading back, because the first write of a
/// missing key cannot be guarded by a CAS.
pub fn register_worker(key: &str, id: u32) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = get(key);
        let mut ids: Vec<u32> = bytes
            .map(|b| {
                b.chunks_exact(4)
                    .filter_map(|c| c.try_into().ok().map(u32::from_le_bytes))
                    .collect()
            })
            .unwrap_or_default();
        if ids.contains(&id) {
            return true;
        }
        ids.push(id);
        if ids.len() > MAX_WORKERS {
            ids.remove(0);
        }
        let out: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        match hostcalls::set_shared_data(key, Some(&out), cas) {
            Ok(()) | Err(Status::CasMismatch) => {}
            Err(_) => return false,
        }
    }
    workers(key).contains(&id)
}
