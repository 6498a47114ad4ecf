//! Headless Chromium (Debian's `chromium`) for tests that must see a page as a person
//! would: a screenshot, and the DOM after the page has loaded. A fresh profile each time, no
//! network of its own (the pages under test are self-contained files), killed after a
//! bounded wait.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::wait::Wait;

/// How long one Chromium run may take on a busy 2-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// The browser: `GRAYGUARD_CHROMIUM`, else `chromium` on the PATH.
pub fn chromium() -> PathBuf {
    std::env::var_os("GRAYGUARD_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromium"))
}

fn run(args: &[String]) -> Output {
    let profile = tempfile::tempdir().expect("temp dir for the profile");
    // Output to files, not pipes: a dumped DOM outgrows a pipe's buffer, and nobody reads
    // the pipe until Chromium exits.
    let out_path = profile.path().join("stdout");
    let err_path = profile.path().join("stderr");
    let file = |p: &Path| std::fs::File::create(p).expect("create an output file");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(file(&out_path))
        .stderr(file(&err_path))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (make setup installs chromium): {e}",
                chromium().display()
            )
        });
    let finished = Wait::new("chromium finishes", TIMEOUT)
        .every(Duration::from_millis(100))
        .poll(|| child.try_wait().expect("wait for chromium"));
    let status = finished.unwrap_or_else(|t| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{t}:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        )
    });
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

fn file_url(page: &Path) -> String {
    format!(
        "file://{}",
        page.canonicalize().expect("the page exists").display()
    )
}

/// Renders `page` in a `width` × `height` window to the PNG `png`.
pub fn screenshot(page: &Path, png: &Path, width: u32, height: u32) {
    let out = run(&[
        format!("--window-size={width},{height}"),
        format!("--screenshot={}", png.display()),
        file_url(page),
    ]);
    assert!(
        out.status.success() && png.exists(),
        "chromium did not write {}:\n{}",
        png.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The document as Chromium built it from `page`.
pub fn dom(page: &Path) -> String {
    let out = run(&["--dump-dom".to_string(), file_url(page)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Width and height of a PNG, from its header, or `None` if it is not a PNG.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_of_a_png() {
        let mut header = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        header.extend_from_slice(&1100u32.to_be_bytes());
        header.extend_from_slice(&1400u32.to_be_bytes());
        assert_eq!(png_size(&header), Some((1100, 1400)));
        assert_eq!(png_size(b"GIF89a"), None);
    }
}
