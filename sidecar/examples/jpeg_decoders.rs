//! Measures the JPEG decoders the sidecar could use, on the photos given as arguments:
//! libjpeg-turbo through `turbojpeg` (what the sidecar uses; the decoder inside OpenCV's
//! `imread`, so its bytes are the reference pipeline's) and zune-jpeg (pure Rust, used
//! before). Prints, per photo, milliseconds per decode (median of alternating rounds) and how
//! many bytes zune-jpeg's output differs from libjpeg-turbo's.
//!
//! `cargo run --release -p grayguard-sidecar --example jpeg_decoders -- .data/images/*.jpg`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// Alternating rounds per photo; each round decodes once with each decoder.
const ROUNDS: usize = 200;

fn turbo(bytes: &[u8], d: &mut turbojpeg::Decompressor, out: &mut Vec<u8>) {
    let h = d.read_header(bytes).unwrap();
    out.resize(3 * h.width * h.height, 0);
    let image = turbojpeg::Image {
        pixels: out.as_mut_slice(),
        width: h.width,
        pitch: 3 * h.width,
        height: h.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    d.decompress(bytes, image).unwrap();
}

fn zune(bytes: &[u8], out: &mut Vec<u8>) {
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut d = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    d.decode_headers().unwrap();
    out.resize(d.output_buffer_size().unwrap(), 0);
    d.decode_into(out).unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut d = turbojpeg::Decompressor::new().unwrap();
    println!("photo: libjpeg-turbo ms | zune-jpeg ms | zune bytes != libjpeg-turbo (max diff)");
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut ta, mut tb) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let t = Instant::now();
            turbo(&bytes, &mut d, &mut a);
            ta.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            zune(&bytes, &mut b);
            tb.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        let max = a
            .iter()
            .zip(&b)
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap_or(0);
        println!(
            "{path}: {:.2} | {:.2} | {:.1} % ({max})",
            median(ta),
            median(tb),
            100.0 * differ as f64 / a.len() as f64
        );
    }
}
