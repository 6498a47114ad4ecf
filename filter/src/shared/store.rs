//! The detectors' [`Store`] on a host: the evidence record, the worker list and the
//! workers' snapshots under one configuration's keys, through the codecs.

use crate::detect::Store;
use crate::detect::sequential::evidence::Record;
use crate::detect::snapshot::Snapshot;
use crate::host::Host;
use crate::shared::cas;
use crate::shared::codec::{decode_record, decode_snapshot, encode_record, encode_snapshot};
use crate::shared::keys::Keys;
use crate::shared::workers;

/// Shared data of one configuration on `host`, for `units` units.
pub struct HostStore<'a, H> {
    host: &'a H,
    keys: &'a Keys,
    units: usize,
}

impl<'a, H: Host> HostStore<'a, H> {
    pub fn new(host: &'a H, keys: &'a Keys, units: usize) -> HostStore<'a, H> {
        HostStore { host, keys, units }
    }
}

impl<H: Host> Store for HostStore<'_, H> {
    fn evidence(&self) -> Option<Record> {
        let bytes = self.host.get_shared(&self.keys.evidence).0?;
        decode_record(&bytes).ok()
    }

    fn update_evidence(
        &self,
        change: &mut dyn FnMut(Option<&Record>) -> Option<Record>,
    ) -> Option<Record> {
        cas::update(
            self.host,
            &self.keys.evidence,
            |bytes| bytes.and_then(|b| decode_record(&b).ok()),
            |next: &Option<Record>| next.as_ref().map(encode_record).unwrap_or_default(),
            |stored| change(stored.as_ref()).map(|next| (Some(next), ())),
        )
        .and_then(|(record, ())| record)
    }

    fn workers(&self) -> Vec<u32> {
        workers::workers(self.host, &self.keys.workers)
    }

    fn claim_worker(&self, wanted: Option<u32>, draw: &mut dyn FnMut() -> u32) -> Option<u32> {
        workers::claim_worker(self.host, &self.keys.workers, wanted, draw)
    }

    fn publish(&self, worker: u32, snapshot: &Snapshot) -> bool {
        self.host
            .set_shared(&self.keys.worker(worker), &encode_snapshot(snapshot), None)
            .is_ok()
    }

    fn snapshot(&self, worker: u32) -> Option<Snapshot> {
        let bytes = self.host.get_shared(&self.keys.worker(worker)).0?;
        decode_snapshot(&bytes, self.units).ok()
    }
}
