//! A small `multipart/form-data` reader for one already-buffered body: finds the part named
//! `image` and returns it without copying.
//!
//! The client picks the boundary, so the search for it must not degrade on a boundary and
//! body made to look alike: `memchr::memmem` (Two-Way with a SIMD prefilter) finds it in
//! time linear in the body whatever the boundary, and every search starts where the last
//! one ended, so the whole body is read a bounded number of times.

use bytes::Bytes;
use memchr::memmem::Finder;

use crate::error::{ApiError, ErrorKind};

/// Why the form could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartError {
    NoBoundary,
    Malformed(&'static str),
    MissingField(String),
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MultipartError::NoBoundary => f.write_str("multipart/form-data without a boundary"),
            MultipartError::Malformed(why) => write!(f, "malformed multipart body: {why}"),
            MultipartError::MissingField(name) => {
                write!(f, "multipart body has no field named {name:?}")
            }
        }
    }
}

/// A form that cannot be read is a bad image request (400 `bad_image`).
impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> ApiError {
        ApiError::new(ErrorKind::BadImage, e.to_string())
    }
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty() && v.len() <= 70).then_some(v)
    })
}

/// The first `finder` match in `hay` at or after `from`.
fn find(finder: &Finder<'_>, hay: &[u8], from: usize) -> Option<usize> {
    let rest = hay.get(from..)?;
    let found = finder.find(rest);
    #[cfg(test)]
    scanned::add(found.map_or(rest.len(), |p| p + finder.needle().len()));
    found.map(|p| p + from)
}

/// How many bytes this thread's searches have passed over: what the fuzz tests hold to a
/// small multiple of the body, whatever the boundary.
#[cfg(test)]
pub(crate) mod scanned {
    use std::cell::Cell;

    thread_local!(static SCANNED: Cell<usize> = const { Cell::new(0) });

    pub(super) fn add(n: usize) {
        SCANNED.with(|s| s.set(s.get() + n));
    }

    /// The bytes `f`'s searches passed over.
    pub(crate) fn during(f: impl FnOnce()) -> usize {
        let before = SCANNED.with(Cell::get);
        f();
        SCANNED.with(Cell::get) - before
    }
}

/// The `name` of a part, from its `Content-Disposition: form-data; name="..."` header.
fn part_name(headers: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(headers).ok()?;
    text.split("\r\n")
        .find(|line| {
            line.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
        })
        .and_then(|line| {
            line.split(';').skip(1).find_map(|param| {
                let (k, v) = param.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("name")
                    .then(|| v.trim().trim_matches('"').to_string())
            })
        })
}

/// Returns the content of the part named `field` (a zero-copy slice of `body`).
pub fn extract_field(body: &Bytes, boundary: &str, field: &str) -> Result<Bytes, MultipartError> {
    if boundary.is_empty() {
        return Err(MultipartError::NoBoundary);
    }
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut pos = find(&Finder::new(&delimiter), body, 0)
        .ok_or(MultipartError::Malformed("no opening boundary"))?
        + delimiter.len();
    let next = Finder::new(&next_delimiter);
    let blank_line = Finder::new(b"\r\n\r\n");
    loop {
        if body[pos..].starts_with(b"--") {
            return Err(MultipartError::MissingField(field.to_string()));
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(MultipartError::Malformed("boundary not followed by CRLF"));
        }
        let headers_start = pos + 2;
        let headers_end = find(&blank_line, body, headers_start)
            .ok_or(MultipartError::Malformed("part headers not terminated"))?;
        let content_start = headers_end + 4;
        let content_end = find(&next, body, content_start).ok_or(MultipartError::Malformed(
            "part not terminated by a boundary",
        ))?;
        if part_name(&body[headers_start..headers_end]).as_deref() == Some(field) {
            return Ok(body.slice(content_start..content_end));
        }
        pos = content_end + next_delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, &[u8])]) -> Bytes {
        let mut b = Vec::new();
        for (name, data) in parts {
            b.extend_from_slice(b"--XyZ\r\n");
            b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n")
                    .as_bytes(),
            );
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        Bytes::from(b)
    }

    #[test]
    fn boundary_parameter_is_found_quoted_or_not() {
        assert_eq!(boundary("multipart/form-data; boundary=XyZ"), Some("XyZ"));
        assert_eq!(
            boundary("multipart/form-data; charset=x; Boundary=\"a b\""),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
    }

    #[test]
    fn extracts_the_named_field_among_others() {
        let body = form(&[("meta", b"{}"), ("image", b"\xFF\xD8\xFF\r\n--XY binary")]);
        assert_eq!(
            &extract_field(&body, "XyZ", "image").unwrap()[..],
            b"\xFF\xD8\xFF\r\n--XY binary"
        );
    }

    #[test]
    fn missing_field_and_malformed_bodies_are_errors() {
        let body = form(&[("other", b"1")]);
        assert_eq!(
            extract_field(&body, "XyZ", "image"),
            Err(MultipartError::MissingField("image".into()))
        );
        assert!(matches!(
            extract_field(&Bytes::from_static(b"garbage"), "XyZ", "image"),
            Err(MultipartError::Malformed(_))
        ));
        let truncated = form(&[("image", b"abc")]).slice(..40);
        assert!(matches!(
            extract_field(&truncated, "XyZ", "image"),
            Err(MultipartError::Malformed(_))
        ));
    }
}
