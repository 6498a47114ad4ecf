//! Property tests of what a client's bytes reach inside the sidecar: the multipart reader
//! (any body, any boundary: a part or an error, never a panic, and linear in the body
//! whatever boundary the client picks — the bytes its searches pass over are counted) and
//! image decoding through the letterbox (truncated and mutated real JPEG and PNG photos: an
//! image or a 4xx error, never a panic, memory bounded by `--max-pixels`). The HTTP layer is fuzzed against the real binary in
//! `tests/tests/sidecar_hostile.rs` (a module of the e2e binary).
//!
//! `make test` runs each property over a bounded number of cases (`PROPTEST_CASES`,
//! default 256); `make fuzz` runs them much longer.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use crate::error::ApiError;
use crate::http::multipart::{MultipartError, boundary, extract_field, scanned};
use crate::vision::decode::{decode_rgb, encode_png};
use crate::vision::letterbox::{Letterbox, fill_tensor};

/// `PROPTEST_CASES` cases (256 by default), nothing persisted: `make fuzz` raises the count.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- multipart

/// A boundary as RFC 2046 allows (1–70 characters of its set), or anything printable.
fn boundary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]",
        "[ -~]{1,70}",
        Just("-".repeat(70)),
    ]
}

/// One part of a form: its name, and content that may hold near-misses of the boundary.
fn part() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        prop::sample::select(vec!["image", "camera", "meta", "Image", ""]),
        prop::collection::vec(
            prop_oneof![
                any::<u8>().prop_map(|b| vec![b]),
                Just(b"\r\n".to_vec()),
                Just(b"\r\n--".to_vec()),
                Just(b"--".to_vec()),
            ],
            0..24,
        ),
    )
        .prop_map(|(name, chunks)| (name.to_string(), chunks.concat()))
}

fn form(boundary: &str, parts: &[(String, Vec<u8>)], close: bool) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, data) in parts {
        b.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        b.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    if close {
        b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    b
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_any_body_and_boundary_is_a_slice_of_the_body_or_an_error(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        b in boundary_text(),
    ) {
        let body = Bytes::from(body);
        match extract_field(&body, &b, "image") {
            Ok(part) => {
                // Zero-copy: the part is a window of the body itself.
                let start = part.as_ptr() as usize - body.as_ptr() as usize;
                prop_assert!(part.is_empty() || start + part.len() <= body.len());
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                prop_assert_eq!(ApiError::from(e).kind.status().as_u16(), 400);
            }
        }
    }

    #[test]
    fn fuzz_well_formed_forms_give_back_the_first_image_part(
        b in boundary_text().prop_filter("a usable boundary", |b| !b.is_empty()),
        parts in prop::collection::vec(part(), 0..6),
        close in any::<bool>(),
    ) {
        let delimiter = format!("\r\n--{b}");
        // Content that holds the delimiter, or ends in the start of it, ends its part early,
        // as it must; such forms are not well formed.
        prop_assume!(parts.iter().all(|(_, d)| {
            let mut probe = b"\r\n".to_vec();
            probe.extend_from_slice(d);
            probe.extend_from_slice(delimiter.as_bytes());
            memchr::memmem::find(&probe, delimiter.as_bytes()) == Some(probe.len() - delimiter.len())
        }));
        let body = Bytes::from(form(&b, &parts, close));
        let want = parts.iter().find(|(n, _)| n == "image").map(|(_, d)| d.clone());
        match extract_field(&body, &b, "image") {
            Ok(got) => prop_assert_eq!(Some(&got[..]), want.as_deref()),
            Err(MultipartError::MissingField(f)) => {
                prop_assert!(want.is_none() && close, "missing {}", f);
            }
            Err(MultipartError::Malformed(why)) => prop_assert!(!close, "{}", why),
            Err(MultipartError::NoBoundary) => prop_assert!(false, "a boundary was given"),
        }
    }

    #[test]
    fn fuzz_any_content_type_parses_or_has_no_boundary(ct in "[ -~]{0,200}") {
        if let Some(b) = boundary(&ct) {
            prop_assert!(!b.is_empty() && b.len() <= 70);
        }
    }
}

/// Bodies of `size` bytes with the boundary each is read with: a benign upload (a random
/// boundary, pseudo-random content) and three made to be slow.
fn multipart_bodies(size: usize) -> Vec<(&'static str, Bytes, String)> {
    // RFC 2046's longest boundary, 70 characters, all dashes but the last: where a naive
    // search compares the whole boundary at every offset of a run of dashes.
    let dashes_boundary = format!("{}x", "-".repeat(69));
    let headers = "Content-Disposition: form-data; name=\"image\"\r\n\r\n";
    let cycle = |head: Vec<u8>, unit: &[u8]| -> Bytes {
        let mut b = head;
        b.extend(
            unit.iter()
                .copied()
                .cycle()
                .take(size.saturating_sub(b.len())),
        );
        Bytes::from(b)
    };
    // Benign: a random boundary of the same length and a part of pseudo-random bytes.
    let benign_boundary: String = (0..70u32)
        .map(|i| char::from(b'a' + ((i.wrapping_mul(2_654_435_761) >> 7) % 26) as u8))
        .collect();
    let mut benign = format!("--{benign_boundary}\r\n{headers}").into_bytes();
    let mut x = 0x9E37_79B9u32;
    while benign.len() < size - 80 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        benign.push(x as u8);
    }
    benign.extend_from_slice(format!("\r\n--{benign_boundary}--").as_bytes());
    let opening = format!("--{dashes_boundary}\r\n{headers}").into_bytes();
    vec![
        ("benign", Bytes::from(benign), benign_boundary),
        // No opening boundary in a body of dashes: searched end to end.
        ("dashes", cycle(Vec::new(), b"-"), dashes_boundary.clone()),
        // The image part's content: one near-miss of the closing delimiter after another.
        (
            "near-miss lines",
            cycle(opening, format!("\r\n{}", "-".repeat(71)).as_bytes()),
            dashes_boundary,
        ),
        // As many parts as fit, none of them the image: the most turns of the reading loop.
        (
            "tiny parts",
            cycle(
                Vec::new(),
                b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n",
            ),
            "b".to_string(),
        ),
    ]
}

#[test]
fn fuzz_boundary_search_stays_linear_on_adversarial_bodies() {
    // Every search starts where the last one ended, so the bytes all searches pass over
    // stay within a small multiple of the body whatever its shape; `memchr::memmem` (Two-Way)
    // is linear in what it passes over. A reader that searched from the start again, or
    // from each part's headers to the end, would pass over the body once per part.
    for size in [4 * 1024, 512 * 1024] {
        for (what, body, b) in multipart_bodies(size) {
            let mut result = None;
            let scanned = scanned::during(|| result = Some(extract_field(&body, &b, "image")));
            let result = result.expect("ran");
            assert_eq!(result.is_ok(), what == "benign", "{what}: {result:?}");
            assert!(
                scanned <= 2 * body.len() + 256,
                "{what}: the searches passed over {scanned} bytes of a {}-byte body",
                body.len()
            );
        }
    }
}

// ---------------------------------------------------------------- image decoding

/// The real photos (`make setup` puts them in `.data/images`).
fn photo(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("GRAYGUARD_IMAGES").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.data/images")),
        PathBuf::from,
    );
    let path = dir.join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make setup` first)", path.display()))
}

/// Real photos to mutate: two JPEGs (baseline, progressive) and a PNG made from a crop of
/// one of them (small, so that the unoptimised test build decodes it quickly).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let person = photo("person.jpg");
        let (mut rgb, mut spare) = (Vec::new(), Vec::new());
        let size = decode_rgb(&person, u64::MAX, &mut rgb, &mut spare).expect("person.jpg");
        let (w, h) = (160usize, 120usize);
        let crop: Vec<u8> = (0..h)
            .flat_map(|y| {
                let row = (y + 100) * size.width as usize * 3 + 200 * 3;
                rgb[row..row + w * 3].to_vec()
            })
            .collect();
        let png = encode_png(&crop, w as u32, h as u32).expect("encode PNG");
        vec![person, photo("giraffe.jpg"), png]
    })
}

/// One change to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Keep this fraction of the file.
    Truncate(f64),
    /// XOR a byte (positions biased to the headers, where sizes and tables live).
    Flip {
        at: prop::sample::Index,
        header: bool,
        xor: u8,
    },
    /// Overwrite a run with one value.
    Fill {
        at: prop::sample::Index,
        len: u16,
        value: u8,
    },
    /// Repeat a run in place.
    Duplicate { at: prop::sample::Index, len: u16 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0.0..1.0f64).prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), any::<bool>(), 1..=255u8)
            .prop_map(|(at, header, xor)| Mutation::Flip { at, header, xor }),
        (any::<prop::sample::Index>(), 1..512u16, any::<u8>())
            .prop_map(|(at, len, value)| Mutation::Fill { at, len, value }),
        (any::<prop::sample::Index>(), 1..256u16)
            .prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match *m {
            Mutation::Truncate(keep) => bytes.truncate((n as f64 * keep) as usize),
            Mutation::Flip { at, header, xor } => {
                let i = if header {
                    at.index(n.min(1024))
                } else {
                    at.index(n)
                };
                bytes[i] ^= xor;
            }
            Mutation::Fill { at, len, value } => {
                let i = at.index(n);
                let end = (i + usize::from(len)).min(n);
                bytes[i..end].fill(value);
            }
            Mutation::Duplicate { at, len } => {
                let i = at.index(n);
                let end = (i + usize::from(len)).min(n);
                let run = bytes[i..end].to_vec();
                bytes.splice(i..i, run);
            }
        }
    }
    bytes
}

/// Decodes and letterboxes like a model worker: an image or a client error, with every
/// allocation bounded by `max_pixels`.
fn decode_like_a_worker(bytes: &[u8], max_pixels: u64) -> Result<(), String> {
    let (mut rgb, mut spare) = (Vec::new(), Vec::new());
    let t = Instant::now();
    let decoded = decode_rgb(bytes, max_pixels, &mut rgb, &mut spare);
    // A hang guard, not a speed check: these images decode in milliseconds.
    if t.elapsed() > Duration::from_secs(5) {
        return Err(format!("decoding took {:?}", t.elapsed()));
    }
    match decoded {
        Ok(size) => {
            let pixels = u64::from(size.width) * u64::from(size.height);
            if pixels > max_pixels || rgb.len() as u64 != 3 * pixels {
                return Err(format!("{size:?} with {} bytes", rgb.len()));
            }
            // A decoded image must fill the model input: a failure here would be a 500.
            let lb = Letterbox::new(size.width, size.height, 96, 96);
            let mut tensor = vec![0f32; lb.tensor_len()];
            fill_tensor(&rgb, &lb, &mut tensor).map_err(|e| e.to_string())
        }
        Err(e) => {
            let status = ApiError::from(e.clone()).kind.status();
            if status.is_client_error() {
                Ok(())
            } else {
                Err(format!("{e} is a {status}"))
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_mutated_photos_decode_or_are_client_errors(
        seed in prop::sample::select(vec![0usize, 1, 2]),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let bytes = mutate(seeds()[seed].clone(), &mutations);
        // Four times the largest photo: a mutated header may grow the image, within limits.
        let result = decode_like_a_worker(&bytes, 4 * 500 * 500);
        prop_assert!(result.is_ok(), "{:?}", result);
    }

    #[test]
    fn fuzz_declared_sizes_never_allocate_beyond_the_pixel_limit(
        width in any::<u16>(),
        height in any::<u16>(),
        png in any::<bool>(),
    ) {
        let mut bytes = seeds()[if png { 2 } else { 0 }].clone();
        if png {
            // IHDR: width and height are the first 8 bytes of its data (CRC left stale).
            bytes[16..20].copy_from_slice(&u32::from(width).to_be_bytes());
            bytes[20..24].copy_from_slice(&u32::from(height).to_be_bytes());
        } else {
            let sof = memchr::memmem::find(&bytes, &[0xFF, 0xC0]).expect("baseline SOF0");
            bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
            bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        }
        let result = decode_like_a_worker(&bytes, 640 * 480);
        prop_assert!(result.is_ok(), "{:?}", result);
    }
}
