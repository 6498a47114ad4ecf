//! JPEG / PNG decoding into packed RGB8, with the pixel limit checked from the header before
//! any pixel buffer is allocated (a few hundred bytes can declare a gigapixel image).
//!
//! JPEG goes through libjpeg-turbo (accurate integer IDCT, fancy chroma upsampling: the
//! decoder and settings inside OpenCV's `imread`, so the pixels are the reference's, bit for
//! bit), and the EXIF orientation tag is applied as `imread` applies it.

use std::io::Cursor;

use super::image::ImageSize;
use super::orientation::Orientation;

/// Container formats the sidecar accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

/// Why an image could not be decoded. Each variant maps to one HTTP status in `error.rs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is empty.
    #[error("empty image body")]
    Empty,
    /// Neither a JPEG nor a PNG signature.
    #[error("unsupported image format (expected JPEG or PNG)")]
    Unsupported,
    /// The header declares more pixels than `--max-pixels` allows.
    #[error("image is {width}x{height} = {} pixels, more than the limit of {max}", u64::from(*width) * u64::from(*height))]
    TooManyPixels { width: u32, height: u32, max: u64 },
    /// Corrupt or truncated data, or a zero-sized image.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
}

/// Recognises the format from the file signature (the Content-Type is not trusted).
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else {
        None
    }
}

fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!(
            "image declares a size of {width}x{height}"
        )));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    Ok(())
}

/// Decodes `bytes` into `out` as packed RGB8, upright (`out` is resized; its capacity is
/// reused across calls; `spare` is scratch for re-orienting EXIF-rotated photos). Images with
/// more than `max_pixels` pixels are rejected from the header alone.
pub fn decode_rgb(
    bytes: &[u8],
    max_pixels: u64,
    out: &mut Vec<u8>,
    spare: &mut Vec<u8>,
) -> Result<ImageSize, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    match sniff(bytes) {
        Some(ImageFormat::Jpeg) => {
            let size = decode_jpeg(bytes, max_pixels, out)?;
            let orientation = Orientation::of_jpeg(bytes);
            Ok(orientation.apply(out, spare, size))
        }
        Some(ImageFormat::Png) => decode_png(bytes, max_pixels, out),
        None => Err(DecodeError::Unsupported),
    }
}

fn decode_jpeg(bytes: &[u8], max_pixels: u64, out: &mut Vec<u8>) -> Result<ImageSize, DecodeError> {
    let corrupt =
        |what: &str, e: turbojpeg::Error| DecodeError::Corrupt(format!("JPEG {what}: {e}"));
    let mut decoder = turbojpeg::Decompressor::new().map_err(|e| corrupt("decoder", e))?;
    let header = decoder
        .read_header(bytes)
        .map_err(|e| corrupt("header", e))?;
    let width = u32::try_from(header.width).unwrap_or(u32::MAX);
    let height = u32::try_from(header.height).unwrap_or(u32::MAX);
    check_pixels(width, height, max_pixels)?;
    let pitch = 3 * header.width;
    out.resize(pitch * header.height, 0);
    // libjpeg-turbo's defaults are OpenCV's: ISLOW IDCT and fancy upsampling. A warning
    // (truncated scan, bad Huffman code) fails the decode instead of grey-filling the image.
    let image = turbojpeg::Image {
        pixels: out.as_mut_slice(),
        width: header.width,
        pitch,
        height: header.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    decoder
        .decompress(bytes, image)
        .map_err(|e| corrupt("data", e))?;
    Ok(ImageSize { width, height })
}

fn decode_png(bytes: &[u8], max_pixels: u64, out: &mut Vec<u8>) -> Result<ImageSize, DecodeError> {
    // The byte limit bounds every allocation the decoder makes (text chunks, ICC, frames).
    let limits = png::Limits {
        bytes: usize::try_from(max_pixels.saturating_mul(8)).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    let header = decoder
        .read_header_info()
        .map_err(|e| DecodeError::Corrupt(format!("PNG header: {e}")))?;
    let (width, height) = (header.width, header.height);
    check_pixels(width, height, max_pixels)?;
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| DecodeError::Corrupt(format!("PNG: {e}")))?;
    let (color, _) = reader.output_color_type();
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| DecodeError::Corrupt("PNG size overflows".into()))?;
    let pixels = width as usize * height as usize;
    if color == png::ColorType::Rgb {
        out.resize(size, 0);
        let info = reader
            .next_frame(out)
            .map_err(|e| DecodeError::Corrupt(format!("PNG data: {e}")))?;
        out.truncate(info.buffer_size());
    } else {
        let mut raw = vec![0u8; size];
        let info = reader
            .next_frame(&mut raw)
            .map_err(|e| DecodeError::Corrupt(format!("PNG data: {e}")))?;
        raw.truncate(info.buffer_size());
        out.clear();
        out.reserve(pixels * 3);
        match color {
            png::ColorType::Grayscale => out.extend(raw.iter().flat_map(|&v| [v, v, v])),
            png::ColorType::GrayscaleAlpha => {
                out.extend(raw.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]))
            }
            // Alpha is dropped, as OpenCV's imread does in the reference pipeline.
            png::ColorType::Rgba => {
                out.extend(raw.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]))
            }
            png::ColorType::Rgb | png::ColorType::Indexed => {
                return Err(DecodeError::Corrupt(format!(
                    "unexpected PNG colour type {color:?} after expansion"
                )));
            }
        }
    }
    if out.len() != pixels * 3 {
        return Err(DecodeError::Corrupt(format!(
            "PNG decoded to {} bytes, expected {}",
            out.len(),
            pixels * 3
        )));
    }
    Ok(ImageSize { width, height })
}

/// Encodes packed RGB8 as PNG (the built-in synthetic self-check image, and tests).
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(rgb).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [x as u8, y as u8, 7]))
            .collect()
    }

    #[test]
    fn png_round_trip() {
        let rgb = gradient(17, 9);
        let png = encode_png(&rgb, 17, 9).unwrap();
        assert_eq!(sniff(&png), Some(ImageFormat::Png));
        let mut out = Vec::new();
        let size = decode_rgb(&png, 1000, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(
            size,
            ImageSize {
                width: 17,
                height: 9
            }
        );
        assert_eq!(out, rgb);
    }

    #[test]
    fn pixel_limit_is_enforced_from_the_header() {
        let png = encode_png(&gradient(20, 10), 20, 10).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            decode_rgb(&png, 199, &mut out, &mut Vec::new()),
            Err(DecodeError::TooManyPixels {
                width: 20,
                height: 10,
                max: 199
            })
        );
        assert!(out.capacity() == 0, "nothing was allocated");
    }

    #[test]
    fn png_bomb_header_is_rejected_without_decoding() {
        // A valid IHDR declaring 100000x100000, then nothing.
        let mut png = encode_png(&gradient(1, 1), 1, 1).unwrap();
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let mut out = Vec::new();
        let err = decode_rgb(&png, 40_000_000, &mut out, &mut Vec::new()).unwrap_err();
        // Either the CRC check or the pixel limit stops it; never an allocation.
        assert!(matches!(
            err,
            DecodeError::TooManyPixels { .. } | DecodeError::Corrupt(_)
        ));
        assert!(out.capacity() == 0);
    }

    #[test]
    fn garbage_empty_and_truncated_inputs_are_errors() {
        let mut out = Vec::new();
        assert_eq!(
            decode_rgb(b"", 100, &mut out, &mut Vec::new()),
            Err(DecodeError::Empty)
        );
        assert_eq!(
            decode_rgb(b"GIF89a....", 100, &mut out, &mut Vec::new()),
            Err(DecodeError::Unsupported)
        );
        assert!(matches!(
            decode_rgb(
                &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10],
                100,
                &mut out,
                &mut Vec::new()
            ),
            Err(DecodeError::Corrupt(_))
        ));
        let png = encode_png(&gradient(8, 8), 8, 8).unwrap();
        assert!(matches!(
            decode_rgb(&png[..png.len() - 20], 100, &mut out, &mut Vec::new()),
            Err(DecodeError::Corrupt(_))
        ));
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let rgb = gradient(w, h);
        let image = turbojpeg::Image {
            pixels: rgb.as_slice(),
            width: w as usize,
            pitch: 3 * w as usize,
            height: h as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        turbojpeg::compress(image, 95, turbojpeg::Subsamp::Sub2x2)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn jpeg_decodes_close_to_its_source_and_checks_the_limit_first() {
        let (w, h) = (48, 40);
        let bytes = jpeg(w, h);
        assert_eq!(sniff(&bytes), Some(ImageFormat::Jpeg));
        let mut out = Vec::new();
        let size = decode_rgb(&bytes, 10_000, &mut out, &mut Vec::new()).unwrap();
        assert_eq!((size.width, size.height), (w, h));
        let worst = out
            .iter()
            .zip(gradient(w, h))
            .map(|(a, b)| a.abs_diff(b))
            .max()
            .unwrap();
        assert!(worst <= 12, "lossy, but close: {worst}");
        let mut fresh = Vec::new();
        assert_eq!(
            decode_rgb(&bytes, 1000, &mut fresh, &mut Vec::new()),
            Err(DecodeError::TooManyPixels {
                width: w,
                height: h,
                max: 1000
            })
        );
        assert_eq!(fresh.capacity(), 0, "nothing was allocated");
    }

    #[test]
    fn truncated_jpeg_is_an_error_not_a_grey_image() {
        let bytes = jpeg(64, 64);
        let mut out = Vec::new();
        let cut = &bytes[..bytes.len() * 2 / 3];
        assert!(matches!(
            decode_rgb(cut, 10_000, &mut out, &mut Vec::new()),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
