//! What the soak sends: the real photos and, spread evenly among them, a share of bad inputs
//! a careless or broken client sends, each with the status the mesh must answer.

use grayguard_client::photos::Image;

/// One kind of request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A real photo: 200.
    Photo,
    /// The first half of a JPEG: 400 (`bad_image`).
    Truncated,
    /// A photo sent as `text/plain`: 415.
    WrongType,
    /// No body at all: 400 (`bad_image`).
    Empty,
    /// Bytes that are no image, sent as `image/jpeg`: 415.
    NotAnImage,
}

impl Kind {
    /// The bad inputs, in the order they take turns.
    pub const BAD: [Kind; 4] = [
        Kind::Truncated,
        Kind::WrongType,
        Kind::Empty,
        Kind::NotAnImage,
    ];

    /// The status the sidecar's error table gives this body.
    pub fn expected_status(self) -> u16 {
        match self {
            Kind::Photo => 200,
            Kind::Truncated | Kind::Empty => 400,
            Kind::WrongType | Kind::NotAnImage => 415,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Photo => "photo",
            Kind::Truncated => "truncated JPEG",
            Kind::WrongType => "wrong content type",
            Kind::Empty => "empty body",
            Kind::NotAnImage => "not an image",
        }
    }
}

/// The soak's bodies, in the order they are sent (request `i` sends body `i % len`).
#[derive(Debug, Clone)]
pub struct Bodies {
    pub images: Vec<Image>,
    pub kinds: Vec<Kind>,
}

/// Slots per cycle beyond which a bad share is not chased further: more photos per cycle
/// only repeat the same bytes.
const MAX_CYCLE: usize = 1000;

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn bad_input(kind: Kind, photo: &Image) -> Image {
    let (content_type, bytes): (&'static str, Vec<u8>) = match kind {
        Kind::Photo => (photo.content_type, photo.bytes.clone()),
        Kind::Truncated => ("image/jpeg", photo.bytes[..photo.bytes.len() / 2].to_vec()),
        Kind::WrongType => ("text/plain", photo.bytes.clone()),
        Kind::Empty => ("image/jpeg", Vec::new()),
        Kind::NotAnImage => (
            "image/jpeg",
            b"GIF89a is not what this server reads".to_vec(),
        ),
    };
    Image {
        name: kind.name().to_string(),
        content_type,
        bytes,
    }
}

/// Interleaves `photos` with bad inputs so that `bad_share` of every cycle is bad, spread
/// evenly, the bad kinds taking turns. `cohort_period` is the length of the traffic mix's
/// cohort pattern (the sum of the cohorts' weights): the cycle's length is made coprime to
/// it, so that every body, the bad ones included, reaches every cohort.
///
/// The truncated JPEG is made from the first JPEG photo (a PNG cut in half fails alike).
pub fn mix(photos: &[Image], bad_share: f64, cohort_period: usize) -> Bodies {
    let n = photos.len().max(1);
    let bad_share = bad_share.clamp(0.0, 0.5);
    // The smallest whole number of photo rounds whose bad count comes within half a point of
    // the share (and holds each bad kind at least once when there are any).
    let (mut good, mut bad) = (n, 0);
    for rounds in 1..=MAX_CYCLE / n {
        good = n * rounds;
        bad = (good as f64 * bad_share / (1.0 - bad_share)).round() as usize;
        let share = bad as f64 / (good + bad) as f64;
        if (share - bad_share).abs() <= 0.005 && (bad == 0 || bad >= Kind::BAD.len()) {
            break;
        }
    }
    // Coprime to the cohort pattern: one more photo slot at a time.
    let mut len = good + bad;
    while cohort_period > 1 && gcd(len, cohort_period) != 1 {
        len += 1;
    }
    let jpeg = photos
        .iter()
        .find(|p| p.content_type == "image/jpeg")
        .or(photos.first());
    let (mut images, mut kinds) = (Vec::with_capacity(len), Vec::with_capacity(len));
    let (mut photo, mut turn) = (0, 0);
    for slot in 0..len {
        // Slot `slot` is bad when the running bad count steps up there: evenly spread.
        let is_bad = (slot + 1) * bad / len > slot * bad / len;
        match (is_bad, jpeg) {
            (true, Some(j)) => {
                let kind = Kind::BAD[turn % Kind::BAD.len()];
                turn += 1;
                images.push(bad_input(kind, j));
                kinds.push(kind);
            }
            _ => {
                if let Some(p) = photos.get(photo % n) {
                    images.push(p.clone());
                    kinds.push(Kind::Photo);
                }
                photo += 1;
            }
        }
    }
    Bodies { images, kinds }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(name: &str) -> Image {
        Image {
            name: name.into(),
            content_type: "image/jpeg",
            bytes: vec![0xff; 100],
        }
    }

    fn photos(n: usize) -> Vec<Image> {
        (0..n).map(|i| photo(&format!("p{i}.jpg"))).collect()
    }

    #[test]
    fn the_share_holds_spread_evenly_and_every_kind_takes_turns() {
        let b = mix(&photos(7), 0.10, 2);
        let bad: Vec<usize> = (0..b.kinds.len())
            .filter(|&i| b.kinds[i] != Kind::Photo)
            .collect();
        let share = bad.len() as f64 / b.kinds.len() as f64;
        assert!((share - 0.10).abs() <= 0.01, "{share} of {}", b.kinds.len());
        for kind in Kind::BAD {
            assert!(b.kinds.contains(&kind), "{kind:?}");
        }
        // No two bad inputs in a row at 10 %.
        assert!(bad.windows(2).all(|w| w[1] - w[0] >= 5), "{bad:?}");
        assert_eq!(b.images.len(), b.kinds.len());
    }

    #[test]
    fn bad_inputs_reach_every_cohort() {
        for period in [2, 3, 4] {
            let b = mix(&photos(7), 0.10, period);
            assert_eq!(gcd(b.kinds.len(), period), 1, "{} slots", b.kinds.len());
            // Over `period` cycles, request i = cycle * len + slot goes to cohort i % period:
            // each bad slot meets every cohort.
            let len = b.kinds.len();
            for slot in (0..len).filter(|&s| b.kinds[s] != Kind::Photo) {
                let cohorts: std::collections::BTreeSet<usize> =
                    (0..period).map(|c| (c * len + slot) % period).collect();
                assert_eq!(cohorts.len(), period);
            }
        }
    }

    #[test]
    fn bad_bodies_are_what_they_claim() {
        let p = photo("p.jpg");
        assert_eq!(bad_input(Kind::Truncated, &p).bytes.len(), 50);
        assert_eq!(bad_input(Kind::WrongType, &p).content_type, "text/plain");
        assert!(bad_input(Kind::Empty, &p).bytes.is_empty());
        assert_ne!(&bad_input(Kind::NotAnImage, &p).bytes[..2], &[0xff, 0xd8]);
        let statuses: Vec<u16> = Kind::BAD.iter().map(|k| k.expected_status()).collect();
        assert_eq!(statuses, [400, 415, 400, 415]);
    }

    #[test]
    fn no_share_means_only_photos() {
        let b = mix(&photos(3), 0.0, 2);
        assert!(b.kinds.iter().all(|k| *k == Kind::Photo));
        assert_eq!(b.images.len(), 3);
    }
}
