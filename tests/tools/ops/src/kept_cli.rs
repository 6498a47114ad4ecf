//! The flags of the kept reports (`grayguard-report --serve --reports-dir DIR`): where they
//! go and how many of them, and how much, are kept. Every error names its flag.

use std::path::PathBuf;

use clap::Args;

use crate::kept::{Limits, MAX_REPORTS_LIMIT};

/// Default most kept reports: a thousand incidents, at about 150 KB each.
pub const DEFAULT_MAX_REPORTS: usize = 1000;
/// Default most bytes of kept reports (1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Args)]
pub struct KeptArgs {
    /// With --serve: keep each incident's report in this directory, written when its shed
    /// alert fires and again when it resolves (Alertmanager's webhook: POST /alertmanager);
    /// served at /reports/ (an index, newest first) and /reports/FILE, and the alerts' link
    /// /reports/incident?rule=R&at=T leads to it.
    #[arg(long)]
    pub reports_dir: Option<PathBuf>,
    /// Most reports kept in --reports-dir (1..=1000000); the oldest incidents' go first.
    #[arg(long, default_value_t = DEFAULT_MAX_REPORTS)]
    pub max_kept_reports: usize,
    /// Most bytes of reports kept in --reports-dir; the oldest incidents' go first (the
    /// report just written always stays).
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES)]
    pub max_kept_bytes: u64,
}

impl KeptArgs {
    /// The limits, checked.
    pub fn limits(&self) -> Result<Limits, String> {
        if self.max_kept_reports == 0 || self.max_kept_reports > MAX_REPORTS_LIMIT {
            return Err(format!(
                "--max-kept-reports: must be 1..={MAX_REPORTS_LIMIT}"
            ));
        }
        if self.max_kept_bytes == 0 {
            return Err("--max-kept-bytes: must be above 0".into());
        }
        Ok(Limits {
            max_reports: self.max_kept_reports,
            max_bytes: self.max_kept_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        kept: KeptArgs,
    }

    fn kept(extra: &[&str]) -> KeptArgs {
        Cli::try_parse_from([&["x"], extra].concat()).unwrap().kept
    }

    #[test]
    fn limits_are_checked_and_name_their_flag() {
        let k = kept(&[]);
        assert_eq!(k.reports_dir, None);
        assert_eq!(
            k.limits().unwrap(),
            Limits {
                max_reports: 1000,
                max_bytes: 1 << 30
            }
        );
        let k = kept(&["--reports-dir", ".run/reports", "--max-kept-reports", "5"]);
        assert_eq!(k.reports_dir, Some(PathBuf::from(".run/reports")));
        assert_eq!(k.limits().unwrap().max_reports, 5);
        assert!(
            kept(&["--max-kept-reports", "0"])
                .limits()
                .unwrap_err()
                .starts_with("--max-kept-reports:")
        );
        assert!(
            kept(&["--max-kept-bytes", "0"])
                .limits()
                .unwrap_err()
                .starts_with("--max-kept-bytes:")
        );
    }
}
