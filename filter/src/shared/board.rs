//! The breaker board in shared data: created once, changed only by compare-and-swap on a
//! transition (so only one worker wins it), and this VM's copy of it, re-read by a request
//! only when the board's change mark moved.

use crate::breaker::Board;
use crate::host::Host;
use crate::shared::cas;
use crate::shared::codec::{decode_board, encode_board};

/// The stored board, or a fresh all-closed one when it is missing or unreadable.
fn decode_or_fresh(bytes: Option<Vec<u8>>, units: usize) -> Board {
    bytes
        .and_then(|b| decode_board(&b, units).ok())
        .unwrap_or_else(|| Board::new(units))
}

/// [`cas::update`] on the breaker board.
pub fn update_board<T>(
    host: &impl Host,
    key: &str,
    units: usize,
    change: impl FnMut(&Board) -> Option<(Board, T)>,
) -> Option<(Board, T)> {
    cas::update(
        host,
        key,
        |bytes| decode_or_fresh(bytes, units),
        encode_board,
        change,
    )
}

/// Creates the board if it does not exist yet (so later writes always carry a CAS).
pub fn ensure_board(host: &impl Host, key: &str, units: usize) {
    if host.get_shared(key).0.is_none() {
        let _ = host.set_shared(key, &encode_board(&Board::new(units)), None);
    }
}

/// This VM's copy of the shared board.
#[derive(Debug, Clone)]
pub struct BoardCache {
    board: Board,
    cas: Option<u32>,
    /// The board's change mark when it was last read.
    mark: Option<u64>,
}

impl BoardCache {
    pub fn new(units: usize) -> BoardCache {
        BoardCache {
            board: Board::new(units),
            cas: None,
            mark: None,
        }
    }

    /// The board as last read or written by this VM.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// The current board for a request: re-read only when the change mark moved (or is
    /// unknown). The mark is taken before the read, so a write that lands in between
    /// moves it again and the next request reads once more.
    pub fn current(&mut self, host: &impl Host, key: &str, units: usize) -> &Board {
        let mark = host.board_mark();
        if mark.is_none() || mark != self.mark {
            self.refresh(host, key, units);
            self.mark = mark;
        }
        &self.board
    }

    /// The current board: one shared-data read; decoded only when its CAS changed.
    pub fn refresh(&mut self, host: &impl Host, key: &str, units: usize) -> &Board {
        let (bytes, cas) = host.get_shared(key);
        if cas.is_none() || cas != self.cas {
            self.board = decode_or_fresh(bytes, units);
            self.cas = cas;
        }
        &self.board
    }

    /// Keeps a board this VM just wrote and moves the change mark for every worker.
    pub fn wrote(&mut self, host: &impl Host, board: Board) {
        *self = BoardCache {
            board,
            cas: None,
            mark: None,
        };
        host.bump_board_mark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Faults, MemoryHost};

    #[test]
    fn updates_retry_on_contention_and_give_up_on_host_errors() {
        let h = MemoryHost::new(0);
        ensure_board(&h, "b", 1);
        h.set_faults(Faults {
            cas_conflicts: 3,
            ..Default::default()
        });
        let done = update_board(&h, "b", 1, |b| Some((b.clone(), ())));
        assert!(done.is_some(), "three conflicts are retried");
        h.set_faults(Faults {
            cas_conflicts: 1_000,
            ..Default::default()
        });
        assert!(update_board(&h, "b", 1, |b| Some((b.clone(), ()))).is_none());
        h.set_faults(Faults {
            writes_fail: true,
            ..Default::default()
        });
        assert!(update_board(&h, "b", 1, |b| Some((b.clone(), ()))).is_none());
    }

    #[test]
    fn the_cache_rereads_only_when_the_mark_moved() {
        let h = MemoryHost::new(0);
        ensure_board(&h, "b", 1);
        let mut cache = BoardCache::new(1);
        assert!(!cache.current(&h, "b", 1).0[0].tripped);
        // Another worker trips the breaker without moving the mark: not seen yet.
        let tripped = |b: &Board| {
            let mut next = b.clone();
            next.0[0] = next.0[0].trip(1, grayguard_contract::Trigger::Flag, 10);
            Some((next, ()))
        };
        update_board(&h, "b", 1, tripped).unwrap();
        assert!(!cache.current(&h, "b", 1).0[0].tripped);
        h.bump_board_mark();
        assert!(cache.current(&h, "b", 1).0[0].tripped);
        // A corrupt board reads as a fresh one.
        h.set_shared("b", b"garbage", None).unwrap();
        h.bump_board_mark();
        assert!(!cache.current(&h, "b", 1).0[0].tripped);
    }
}
