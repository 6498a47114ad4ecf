//! The worker list in shared data: the ids of the VMs that publish snapshots, each taken
//! by exactly one VM.

use crate::host::{Host, ShareError};
use crate::shared::cas::CAS_ATTEMPTS;
use crate::shared::codec::{decode_workers, encode_workers};

/// Most VMs remembered in the worker list (older ids are dropped first).
pub const MAX_WORKERS: usize = 256;

/// Worker ids in the list (none when missing or unreadable).
pub fn workers(host: &impl Host, key: &str) -> Vec<u32> {
    decode_ids(host.get_shared(key).0)
}

fn decode_ids(bytes: Option<Vec<u8>>) -> Vec<u32> {
    bytes
        .and_then(|b| decode_workers(&b).ok())
        .unwrap_or_default()
}

/// Claims a worker id for this VM and appends it to the list: `wanted` (the VM's earlier id,
/// when a concurrent write lost its entry) if it is still free, else a fresh one from `draw`.
/// Returns the id, or `None` after [`CAS_ATTEMPTS`] conflicts or a host error.
///
/// Ids must be unique by construction, not by chance: VMs started at the same instant can
/// seed identical random draws, and two VMs under one id overwrite each other's snapshot,
/// so one's windows are never merged. So the id is only ever taken from those absent from
/// the list and appended with a CAS (a VM that loses the race re-reads and draws again),
/// and the one unguarded write — creating a missing list — writes an empty list, never an id.
pub fn claim_worker(
    host: &impl Host,
    key: &str,
    wanted: Option<u32>,
    mut draw: impl FnMut() -> u32,
) -> Option<u32> {
    let mut id = wanted;
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = host.get_shared(key);
        let Some(cas) = cas else {
            host.set_shared(key, &encode_workers(&[]), None).ok()?;
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
        match host.set_shared(key, &encode_workers(&ids), Some(cas)) {
            Ok(()) => return Some(pick),
            Err(ShareError::CasMismatch) => {}
            Err(ShareError::Failed) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemoryHost;

    fn claim(h: &MemoryHost, wanted: Option<u32>, draws: &[u32]) -> Option<u32> {
        let mut d = draws.iter().copied().cycle();
        claim_worker(h, "w", wanted, || d.next().unwrap_or(0))
    }

    fn ids(h: &MemoryHost) -> Vec<u32> {
        workers(h, "w")
    }

    #[test]
    fn vms_with_identical_draws_get_distinct_ids() {
        let h = MemoryHost::new(0);
        let draws = [7, 9, 11];
        let got: Vec<_> = (0..3).map(|_| claim(&h, None, &draws)).collect();
        assert_eq!(got, vec![Some(7), Some(9), Some(11)]);
        assert_eq!(ids(&h), vec![7, 9, 11]);
    }

    /// A host whose first read lets another VM append in between (the race).
    struct Racing<'a> {
        inner: &'a MemoryHost,
        raced: std::cell::Cell<bool>,
    }

    impl Host for Racing<'_> {
        fn now_ns(&self) -> u64 {
            self.inner.now_ns()
        }
        fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            let read = self.inner.get_shared(key);
            if !self.raced.replace(true) {
                assert_eq!(claim(self.inner, None, &[5, 6]), Some(5));
            }
            read
        }
        fn set_shared(&self, k: &str, v: &[u8], cas: Option<u32>) -> Result<(), ShareError> {
            self.inner.set_shared(k, v, cas)
        }
        fn board_mark(&self) -> Option<u64> {
            None
        }
        fn bump_board_mark(&self) {}
        fn log(&self, _: crate::host::Level, _: &str) {}
        fn add_counter(&self, _: crate::metrics::Counter, _: u64) {}
        fn set_gauge(&self, _: &str, _: u64) {}
        fn add_named_counter(&self, _: &str, _: u64) {}
        fn dispatch(
            &self,
            _: &str,
            _: &[(&str, &str)],
            _: &[u8],
            _: u64,
        ) -> Result<u32, ShareError> {
            Ok(0)
        }
    }

    #[test]
    fn a_vm_losing_the_race_rereads_and_draws_again() {
        let h = MemoryHost::new(0);
        h.set_shared("w", &encode_workers(&[]), None).unwrap();
        // Both VMs draw 5 first; the other VM's append lands between this one's read and write.
        let racing = Racing {
            inner: &h,
            raced: std::cell::Cell::new(false),
        };
        let mut d = [5, 6].into_iter().cycle();
        let got = claim_worker(&racing, "w", None, || d.next().unwrap_or(0));
        assert_eq!(got, Some(6));
        assert_eq!(ids(&h), vec![5, 6]);
        // Nothing but taken ids to draw: no id rather than a shared one.
        assert_eq!(claim(&h, None, &[5, 6]), None);
    }

    #[test]
    fn a_lost_entry_is_taken_back_only_while_free() {
        let h = MemoryHost::new(0);
        assert_eq!(claim(&h, None, &[3]), Some(3));
        // A late creation of the list wipes the entry.
        h.set_shared("w", &encode_workers(&[]), None).unwrap();
        assert_eq!(claim(&h, Some(3), &[8]), Some(3));
        h.set_shared("w", &encode_workers(&[]), None).unwrap();
        // Another VM took 3 meanwhile: the old owner moves to a fresh id.
        assert_eq!(claim(&h, None, &[3]), Some(3));
        assert_eq!(claim(&h, Some(3), &[3, 8]), Some(8));
        assert_eq!(ids(&h), vec![3, 8]);
    }

    #[test]
    fn a_missing_list_is_created_empty_first() {
        let h = MemoryHost::new(0);
        assert_eq!(claim(&h, None, &[1]), Some(1));
        assert_eq!(ids(&h), vec![1]);
    }

    #[test]
    fn a_claim_gives_up_on_host_errors() {
        let h = MemoryHost::new(0);
        h.set_faults(crate::host::Faults {
            writes_fail: true,
            ..Default::default()
        });
        assert_eq!(claim(&h, None, &[1]), None);
    }
}
