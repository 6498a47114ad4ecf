//! The kept reports on disk: one self-contained HTML file per incident in the reports
//! directory, named by rule, trigger and start (`crane-cameras.box_count.20261130T150405Z.html`),
//! written atomically (a temporary file in the same directory, flushed, then renamed over the
//! old one), rewritten under the same name as the incident goes on, and the oldest removed
//! once there are more than a count or a size of them. Nothing else in the directory is
//! touched but its `index.html` (written by the caller) and this module's own temporary
//! files.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::incident::Incident;

/// The index page's file name in the reports directory.
pub const INDEX: &str = "index.html";
/// Every kept report's file name ends so.
const SUFFIX: &str = ".html";
/// Temporary files of a write in progress: `.keeping-XXXXXX.tmp`.
const TMP_PREFIX: &str = ".keeping-";
const TMP_SUFFIX: &str = ".tmp";
/// The trigger part of a name when the incident names none (found from a gauge, without
/// records).
pub const NO_TRIGGER: &str = "shed";
/// What stays as is in a name's rule and trigger: letters, digits, `-`, `_`. Anything else
/// (`.` included, which separates the parts) is percent-encoded.
const NAME_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Most kept reports any limit may allow.
pub const MAX_REPORTS_LIMIT: usize = 1_000_000;

/// Which incident a kept report is about, as its file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub rule: String,
    pub trigger: String,
    /// The incident's start, whole seconds.
    pub start: Timestamp,
}

impl Name {
    /// The name of `incident`'s report: its rule, first trigger and start.
    pub fn of(incident: &Incident) -> Name {
        Name {
            rule: incident.rule.clone(),
            trigger: incident.trigger().unwrap_or(NO_TRIGGER).to_string(),
            start: Timestamp::from_second(incident.start.as_second()).unwrap_or(incident.start),
        }
    }

    /// `RULE.TRIGGER.YYYYMMDDTHHMMSSZ.html`, rule and trigger percent-encoded.
    pub fn file(&self) -> String {
        format!(
            "{}.{}.{}{SUFFIX}",
            utf8_percent_encode(&self.rule, NAME_PART),
            utf8_percent_encode(&self.trigger, NAME_PART),
            self.start.strftime("%Y%m%dT%H%M%SZ")
        )
    }

    /// The name `file` stands for, if it is a kept report's file name as [`Name::file`]
    /// writes it (exactly: one spelling per incident, no path, nothing else).
    pub fn parse(file: &str) -> Option<Name> {
        let stem = file.strip_suffix(SUFFIX)?;
        let mut parts = stem.split('.');
        let (rule, trigger, start) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |s: &str| -> Option<String> {
            let text = percent_decode_str(s).decode_utf8().ok()?.into_owned();
            (!text.is_empty()).then_some(text)
        };
        let name = Name {
            rule: decode(rule)?,
            trigger: decode(trigger)?,
            start: parse_start(start)?,
        };
        (name.file() == file).then_some(name)
    }
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn parse_start(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() != 16 || !digits(0..8) || b[8] != b'T' || !digits(9..15) || b[15] != b'Z' {
        return None;
    }
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    )
    .parse()
    .ok()
}

/// How much is kept (`--max-kept-reports`, `--max-kept-bytes`): past either, the oldest
/// reports (by incident start) are removed, never the one just written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_reports: usize,
    pub max_bytes: u64,
}

/// One kept report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub name: Name,
    pub file: String,
    pub bytes: u64,
    /// When it was last written.
    pub written: Option<Timestamp>,
}

/// What one write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub kept: Kept,
    /// Whether an earlier report of the same incident was replaced.
    pub replaced: bool,
    /// Files removed to stay within the limits, oldest first.
    pub removed: Vec<String>,
}

/// The reports directory.
#[derive(Debug, Clone)]
pub struct Shelf {
    dir: PathBuf,
    limits: Limits,
}

impl Shelf {
    /// The directory `dir` (created if missing), with the temporary files of writes that
    /// never finished (a crash mid-write) removed: they are incomplete copies, and the
    /// report they were replacing, if any, is still there whole.
    pub fn open(dir: &Path, limits: Limits) -> Result<Shelf, String> {
        if limits.max_reports == 0 || limits.max_reports > MAX_REPORTS_LIMIT {
            return Err(format!(
                "at most 1..={MAX_REPORTS_LIMIT} kept reports, not {}",
                limits.max_reports
            ));
        }
        if limits.max_bytes == 0 {
            return Err("the kept reports' size limit must be above 0 bytes".into());
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the reports directory {}: {e}", dir.display()))?;
        let shelf = Shelf {
            dir: dir.to_path_buf(),
            limits,
        };
        for entry in shelf.entries()? {
            if entry.starts_with(TMP_PREFIX) && entry.ends_with(TMP_SUFFIX) {
                let _ = std::fs::remove_file(dir.join(&entry));
            }
        }
        Ok(shelf)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether the report of `name` is kept.
    pub fn has(&self, name: &Name) -> bool {
        self.dir.join(name.file()).is_file()
    }

    /// The bytes of the kept report `file` (a kept report's file name, or [`INDEX`]); `None`
    /// for anything else or a file that is not there.
    pub fn read(&self, file: &str) -> Option<Vec<u8>> {
        if file != INDEX && Name::parse(file).is_none() {
            return None;
        }
        std::fs::read(self.dir.join(file)).ok()
    }

    /// Keeps `page` as the report of `name` (replacing an earlier one of the same incident),
    /// then removes the oldest reports beyond the limits. Atomic: a reader sees the old report
    /// or the new one, never a part; on any failure nothing kept before is lost.
    pub fn keep(&self, name: &Name, page: &[u8]) -> Result<Written, String> {
        let file = name.file();
        let path = self.dir.join(&file);
        let replaced = path.is_file();
        self.write_atomically(&file, page)?;
        let kept = self
            .list()?
            .into_iter()
            .find(|k| k.file == file)
            .ok_or_else(|| format!("{} vanished right after it was written", path.display()))?;
        let removed = self.prune(&file)?;
        Ok(Written {
            kept,
            replaced,
            removed,
        })
    }

    /// Writes the index page.
    pub fn write_index(&self, page: &[u8]) -> Result<(), String> {
        self.write_atomically(INDEX, page)
    }

    /// Every kept report, newest incident first.
    pub fn list(&self) -> Result<Vec<Kept>, String> {
        let mut out = Vec::new();
        for file in self.entries()? {
            let Some(name) = Name::parse(&file) else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(self.dir.join(&file)) else {
                continue; // removed meanwhile
            };
            if !meta.is_file() {
                continue;
            }
            let written = meta
                .modified()
                .ok()
                .and_then(|t| Timestamp::try_from(t).ok());
            out.push(Kept {
                name,
                file,
                bytes: meta.len(),
                written,
            });
        }
        out.sort_by(|a, b| (b.name.start, &b.file).cmp(&(a.name.start, &a.file)));
        Ok(out)
    }

    /// Removes the oldest reports (never `keep`) while there are more than `max_reports` or
    /// they take more than `max_bytes`; the files removed, oldest first.
    fn prune(&self, keep: &str) -> Result<Vec<String>, String> {
        let mut all = self.list()?;
        let mut count = all.len();
        let mut bytes: u64 = all.iter().map(|k| k.bytes).sum();
        let mut removed = Vec::new();
        // Oldest first.
        all.reverse();
        for k in all {
            if count <= self.limits.max_reports && bytes <= self.limits.max_bytes {
                break;
            }
            if k.file == keep {
                continue;
            }
            let path = self.dir.join(&k.file);
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {} (over the limits): {e}", path.display()))?;
            count -= 1;
            bytes = bytes.saturating_sub(k.bytes);
            removed.push(k.file);
        }
        Ok(removed)
    }

    /// The directory's entry names (those that are UTF-8).
    fn entries(&self) -> Result<Vec<String>, String> {
        let read = std::fs::read_dir(&self.dir).map_err(|e| {
            format!(
                "cannot read the reports directory {}: {e}",
                self.dir.display()
            )
        })?;
        Ok(read
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect())
    }

    /// `bytes` to `file` in the directory through a temporary file there: written, flushed
    /// to disk, made readable like any file written here, then renamed over `file`.
    fn write_atomically(&self, file: &str, bytes: &[u8]) -> Result<(), String> {
        let path = self.dir.join(file);
        let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
        let mut tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .suffix(TMP_SUFFIX)
            .tempfile_in(&self.dir)
            .map_err(|e| fail("write", e))?;
        tmp.write_all(bytes).map_err(|e| fail("write", e))?;
        tmp.as_file().sync_all().map_err(|e| fail("write", e))?;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| fail("write", e))?;
        // On failure the temporary file is removed (dropped) and `file` is as it was.
        tmp.persist(&path).map_err(|e| fail("replace", e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn name(rule: &str, trigger: &str, start: &str) -> Name {
        Name {
            rule: rule.into(),
            trigger: trigger.into(),
            start: t(start),
        }
    }

    fn shelf(dir: &Path, max_reports: usize, max_bytes: u64) -> Shelf {
        Shelf::open(
            dir,
            Limits {
                max_reports,
                max_bytes,
            },
        )
        .unwrap()
    }

    #[test]
    fn names_say_rule_trigger_and_start_and_read_back() {
        let n = name("crane-cameras", "box_count", "2026-11-30T15:04:05Z");
        assert_eq!(n.file(), "crane-cameras.box_count.20261130T150405Z.html");
        assert_eq!(Name::parse(&n.file()), Some(n));
        // Any rule name makes one file name, and reads back.
        let odd = name("a.b/c d", "latency", "2026-01-01T00:00:00Z");
        assert_eq!(odd.file(), "a%2Eb%2Fc%20d.latency.20260101T000000Z.html");
        assert_eq!(Name::parse(&odd.file()), Some(odd));
        for not in [
            "index.html",
            "report.html",
            "r.t.20261130T150405Z.htm",
            "r.t.20261130T150405Z.x.html",
            ".t.20261130T150405Z.html",
            "r.t.2026-11-30T15:04:05Z.html",
            "r.t.20261332T150405Z.html",
            "a%2eb.t.20261130T150405Z.html",
            "../x.t.20261130T150405Z.html",
            ".keeping-abc.tmp",
        ] {
            assert_eq!(Name::parse(not), None, "{not}");
        }
    }

    #[test]
    fn an_incident_is_named_by_its_first_trigger_and_whole_second() {
        let line = r#"{"grayguard":"incident","event":"shed_start","rule":"r","trigger":"latency","at":"2026-11-30T15:04:05.678Z"}"#;
        let r = crate::record::parse_line("x", line).unwrap().unwrap();
        let i = &crate::incident::group(&[r])[0];
        assert_eq!(Name::of(i).file(), "r.latency.20261130T150405Z.html");
        let gauge = crate::incident::from_gauge("r", &[(t("2026-11-30T15:00:00Z"), 1.0)]).unwrap();
        assert_eq!(Name::of(&gauge).trigger, NO_TRIGGER);
    }

    #[test]
    fn a_report_is_replaced_whole_and_listed_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = shelf(dir.path(), 10, 1 << 20);
        let old = name("r", "box_count", "2026-11-30T15:00:00Z");
        let new = name("r", "latency", "2026-11-30T16:00:00Z");
        let w = s.keep(&old, b"first").unwrap();
        assert!(!w.replaced);
        assert_eq!(w.kept.bytes, 5);
        s.keep(&new, b"other").unwrap();
        let w = s.keep(&old, b"first, now ended").unwrap();
        assert!(w.replaced);
        assert!(w.removed.is_empty());
        assert_eq!(s.read(&old.file()).unwrap(), b"first, now ended");
        let files: Vec<String> = s.list().unwrap().into_iter().map(|k| k.file).collect();
        assert_eq!(files, vec![new.file(), old.file()]);
        // Only kept reports and the index can be read through the shelf.
        s.write_index(b"<html>").unwrap();
        assert_eq!(s.read(INDEX).unwrap(), b"<html>");
        std::fs::write(dir.path().join("secret.txt"), "x").unwrap();
        assert_eq!(s.read("secret.txt"), None);
        assert_eq!(s.read("../secret.txt"), None);
        // No temporary file is left behind, and every report is readable by others.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(TMP_PREFIX)),
            "{names:?}"
        );
        let mode = std::fs::metadata(dir.path().join(old.file()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn the_oldest_go_beyond_the_count_or_the_size_never_the_one_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = shelf(dir.path(), 3, 1 << 20);
        let at = |h: u8| name("r", "box_count", &format!("2026-11-30T{h:02}:00:00Z"));
        for h in 1..=3 {
            s.keep(&at(h), b"12345").unwrap();
        }
        let w = s.keep(&at(4), b"12345").unwrap();
        assert_eq!(w.removed, vec![at(1).file()]);
        // A report of an older incident than every kept one is written and kept all the
        // same; the oldest of the others make room.
        let w = s.keep(&at(0), b"12345").unwrap();
        assert_eq!(w.removed, vec![at(2).file()]);
        assert!(s.has(&at(0)));
        // By size: 12 bytes allow two 5-byte reports.
        let small = shelf(dir.path(), 100, 12);
        let w = small.keep(&at(5), b"12345").unwrap();
        assert_eq!(w.removed, vec![at(0).file(), at(3).file()]);
        let left: Vec<String> = small.list().unwrap().into_iter().map(|k| k.file).collect();
        assert_eq!(left, vec![at(5).file(), at(4).file()]);
        // One report larger than the limit is still kept: it is the one just written.
        let w = small.keep(&at(6), &[b'x'; 40]).unwrap();
        assert_eq!(w.removed, vec![at(4).file(), at(5).file()]);
        assert_eq!(small.list().unwrap().len(), 1);
    }

    #[test]
    fn unfinished_writes_are_cleared_and_other_files_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".keeping-x1.tmp"), "half").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let s = shelf(dir.path(), 1, 1 << 20);
        assert!(!dir.path().join(".keeping-x1.tmp").exists());
        s.keep(&name("r", "t", "2026-11-30T15:00:00Z"), b"a")
            .unwrap();
        s.keep(&name("r", "t", "2026-11-30T16:00:00Z"), b"b")
            .unwrap();
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let limits = Limits {
            max_reports: 1,
            max_bytes: 1,
        };
        let e = Shelf::open(&file.join("reports"), limits).unwrap_err();
        assert!(e.contains("a-file/reports"), "{e}");
        let bad = Limits {
            max_reports: 0,
            max_bytes: 1,
        };
        assert!(Shelf::open(dir.path(), bad).is_err());
    }
}
