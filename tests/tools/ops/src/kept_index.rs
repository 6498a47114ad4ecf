//! The index of the kept reports: one self-contained page listing them newest first (the
//! incident's start, rule and trigger, when its report was last written, its size), each a
//! relative link, so the same page works served at `/reports/` and opened from the reports
//! directory as `index.html`.

use jiff::Timestamp;
use maud::{DOCTYPE, html};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::html::{CSS, when};
use crate::info::bytes;
use crate::kept::{Kept, Limits};

/// A link to a kept report from a page beside it: the file name with anything but letters,
/// digits, `-`, `_` and `.` percent-encoded (a name's own `%` included).
pub fn href(file: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');
    utf8_percent_encode(file, KEEP).to_string()
}

/// The page for `kept` (newest first, as [`crate::kept::Shelf::list`] gives them).
pub fn render(kept: &[Kept], limits: Limits, now: Timestamp) -> String {
    let total: u64 = kept.iter().map(|k| k.bytes).sum();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "grayguard incident reports" }
                style { (maud::PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "grayguard incident reports" }
                    p { (kept.len()) " kept, newest first · updated " (when(now)) }
                }
                main { section {
                    @if kept.is_empty() {
                        p { "No report kept yet. A report is kept when a shed alert fires and again when it resolves." }
                    } @else {
                        table {
                            tr { th { "incident start" } th { "rule" } th { "trigger" } th { "last written" } th { "size" } }
                            @for k in kept {
                                tr {
                                    td { a href=(href(&k.file)) { (when(k.name.start)) } }
                                    td { (k.name.rule) }
                                    td { (k.name.trigger) }
                                    td { @match k.written { Some(w) => (when(w)), None => "" } }
                                    td.num { (bytes(k.bytes)) }
                                }
                            }
                        }
                    }
                    p.note {
                        "One report per incident, written when a shed alert fires and rewritten, whole, when it resolves. "
                        "At most " (limits.max_reports) " reports and " (bytes(limits.max_bytes)) " are kept (now " (bytes(total)) "); beyond that the oldest incidents' reports are removed."
                    }
                } }
            }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kept::Name;

    fn kept(rule: &str, start: &str) -> Kept {
        let name = Name {
            rule: rule.into(),
            trigger: "box_count".into(),
            start: start.parse().unwrap(),
        };
        Kept {
            file: name.file(),
            name,
            bytes: 150 * 1024,
            written: Some("2026-11-30T15:10:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn lists_every_report_with_a_relative_link() {
        let limits = Limits {
            max_reports: 1000,
            max_bytes: 1 << 30,
        };
        let page = render(
            &[
                kept("crane-cameras", "2026-11-30T16:00:00Z"),
                kept("a<b", "2026-11-30T15:00:00Z"),
            ],
            limits,
            "2026-11-30T16:05:00Z".parse().unwrap(),
        );
        assert!(page.contains(
            "<a href=\"crane-cameras.box_count.20261130T160000Z.html\">2026-11-30 16:00:00 UTC</a>"
        ));
        // The file's own `%` is encoded in the link; the rule is escaped in the text.
        assert!(
            page.contains("href=\"a%253Cb.box_count.20261130T150000Z.html\""),
            "{page}"
        );
        assert!(page.contains("<td>a&lt;b</td>"));
        assert!(page.find("16:00:00 UTC").unwrap() < page.find("15:00:00 UTC").unwrap());
        assert!(page.contains("At most 1000 reports and 1.0 GiB"));
        assert!(!page.contains("<script"));
        let empty = render(&[], limits, "2026-11-30T16:05:00Z".parse().unwrap());
        assert!(empty.contains("No report kept yet"));
    }
}
