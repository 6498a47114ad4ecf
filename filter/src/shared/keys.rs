//! The shared-data keys of one configuration. `<cfg>` is a hash of the configuration text,
//! so a changed configuration starts from clean state and an unchanged reload keeps it:
//! - `grayguard/<cfg>/board`: the breaker board, written only on transitions (CAS);
//! - `grayguard/<cfg>/workers`: ids of the VMs publishing snapshots (unique; CAS append);
//! - `grayguard/<cfg>/w/<id>`: one VM's snapshot, written by that VM only;
//! - `grayguard/<cfg>/evidence`: the sequential detector's evidence record (CAS).

use crate::rules::sticky_hash;

/// The keys of one configuration.
#[derive(Debug, Clone)]
pub struct Keys {
    pub board: String,
    pub workers: String,
    pub evidence: String,
    prefix: String,
}

impl Keys {
    pub fn new(config_text: &[u8]) -> Keys {
        let prefix = format!("grayguard/{:016x}/", sticky_hash(config_text));
        Keys {
            board: format!("{prefix}board"),
            workers: format!("{prefix}workers"),
            evidence: format!("{prefix}evidence"),
            prefix,
        }
    }

    /// The key of worker `id`'s snapshot.
    pub fn worker(&self, id: u32) -> String {
        format!("{}w/{id:08x}", self.prefix)
    }
}
