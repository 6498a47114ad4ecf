//! EXIF orientation: cameras store the sensor's pixels and a tag saying how to turn them
//! upright. OpenCV's `imread` (and so the reference pipeline) applies the tag before anything
//! else; so does the sidecar, so a phone photo taken in portrait is detected upright and its
//! boxes come back in the upright image's pixels.

use std::io::Cursor;

use super::image::ImageSize;

/// The EXIF `Orientation` tag (0x0112): how the stored pixels map onto the upright image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// 1: stored upright (also: no tag, an unreadable tag, a value outside 1..=8).
    Upright,
    /// 2: mirrored left-right.
    FlipHorizontal,
    /// 3: upside down.
    Rotate180,
    /// 4: mirrored top-bottom.
    FlipVertical,
    /// 5: mirrored along the main diagonal.
    Transpose,
    /// 6: turn 90° clockwise to view (a phone held upright).
    Rotate90,
    /// 7: mirrored along the anti-diagonal.
    Transverse,
    /// 8: turn 90° counter-clockwise to view.
    Rotate270,
}

impl Orientation {
    /// From the tag's value; anything outside 1..=8 is treated as upright, as OpenCV does.
    pub fn from_tag(value: u32) -> Orientation {
        match value {
            2 => Orientation::FlipHorizontal,
            3 => Orientation::Rotate180,
            4 => Orientation::FlipVertical,
            5 => Orientation::Transpose,
            6 => Orientation::Rotate90,
            7 => Orientation::Transverse,
            8 => Orientation::Rotate270,
            _ => Orientation::Upright,
        }
    }

    /// The orientation a JPEG's EXIF block declares (upright when there is none or it cannot
    /// be read: a damaged EXIF block must not fail an otherwise good photo).
    pub fn of_jpeg(jpeg: &[u8]) -> Orientation {
        let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(jpeg)) else {
            return Orientation::Upright;
        };
        exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
            .and_then(|f| f.value.get_uint(0))
            .map_or(Orientation::Upright, Orientation::from_tag)
    }

    /// Whether width and height trade places.
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            Orientation::Transpose
                | Orientation::Rotate90
                | Orientation::Transverse
                | Orientation::Rotate270
        )
    }

    /// Turns the packed RGB8 image in `rgb` (`size`) upright; `spare` is scratch that ends up
    /// holding the old pixels (both buffers keep their capacity). Returns the upright size.
    pub fn apply(self, rgb: &mut Vec<u8>, spare: &mut Vec<u8>, size: ImageSize) -> ImageSize {
        if self == Orientation::Upright {
            return size;
        }
        let (w, h) = (size.width as usize, size.height as usize);
        let (ow, oh) = if self.swaps_axes() { (h, w) } else { (w, h) };
        spare.clear();
        spare.resize(rgb.len(), 0);
        for y in 0..oh {
            let row = &mut spare[y * ow * 3..(y + 1) * ow * 3];
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                // Source pixel of upright pixel (x, y), per tag (OpenCV: flips and transposes).
                let (sx, sy) = match self {
                    Orientation::Upright => (x, y),
                    Orientation::FlipHorizontal => (w - 1 - x, y),
                    Orientation::Rotate180 => (w - 1 - x, h - 1 - y),
                    Orientation::FlipVertical => (x, h - 1 - y),
                    Orientation::Transpose => (y, x),
                    Orientation::Rotate90 => (y, h - 1 - x),
                    Orientation::Transverse => (w - 1 - y, h - 1 - x),
                    Orientation::Rotate270 => (w - 1 - y, x),
                };
                let i = (sy * w + sx) * 3;
                px.copy_from_slice(&rgb[i..i + 3]);
            }
        }
        std::mem::swap(rgb, spare);
        ImageSize {
            width: ow as u32,
            height: oh as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 image whose pixels are numbered 1..=6 (R = number, G = B = 0), row by row.
    fn numbered() -> Vec<u8> {
        (1..=6u8).flat_map(|v| [v, 0, 0]).collect()
    }

    fn turned(o: Orientation) -> (Vec<u8>, ImageSize) {
        let mut rgb = numbered();
        let size = o.apply(
            &mut rgb,
            &mut Vec::new(),
            ImageSize {
                width: 3,
                height: 2,
            },
        );
        (rgb.chunks_exact(3).map(|p| p[0]).collect(), size)
    }

    #[test]
    fn every_tag_turns_the_image_as_opencv_does() {
        // Stored:  1 2 3     The upright images below are what cv2.imread returns for the
        //          4 5 6     same pixels with each tag (flip / transpose / rotate).
        let cases: [(u32, &[u8], (u32, u32)); 8] = [
            (1, &[1, 2, 3, 4, 5, 6], (3, 2)),
            (2, &[3, 2, 1, 6, 5, 4], (3, 2)),
            (3, &[6, 5, 4, 3, 2, 1], (3, 2)),
            (4, &[4, 5, 6, 1, 2, 3], (3, 2)),
            (5, &[1, 4, 2, 5, 3, 6], (2, 3)),
            (6, &[4, 1, 5, 2, 6, 3], (2, 3)),
            (7, &[6, 3, 5, 2, 4, 1], (2, 3)),
            (8, &[3, 6, 2, 5, 1, 4], (2, 3)),
        ];
        for (tag, want, (w, h)) in cases {
            let (got, size) = turned(Orientation::from_tag(tag));
            assert_eq!(got, want, "tag {tag}");
            assert_eq!((size.width, size.height), (w, h), "tag {tag}");
        }
        assert_eq!(Orientation::from_tag(0), Orientation::Upright);
        assert_eq!(Orientation::from_tag(9), Orientation::Upright);
    }

    /// `FF D8` + an APP1 Exif segment (big-endian TIFF, IFD0 with one Orientation entry).
    fn jpeg_with_orientation(tag: u16) -> Vec<u8> {
        let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]); // SHORT x1
        tiff.extend_from_slice(&tag.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // padding, no next IFD
        let mut app1 = b"Exif\x00\x00".to_vec();
        app1.extend_from_slice(&tiff);
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend_from_slice(&(app1.len() as u16 + 2).to_be_bytes());
        jpeg.extend_from_slice(&app1);
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        jpeg
    }

    #[test]
    fn the_tag_is_read_from_the_exif_segment() {
        assert_eq!(
            Orientation::of_jpeg(&jpeg_with_orientation(6)),
            Orientation::Rotate90
        );
        assert_eq!(
            Orientation::of_jpeg(&jpeg_with_orientation(3)),
            Orientation::Rotate180
        );
        // No EXIF, broken EXIF: upright, never an error.
        assert_eq!(
            Orientation::of_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9]),
            Orientation::Upright
        );
        let mut broken = jpeg_with_orientation(6);
        broken[12] = b'X'; // the TIFF byte order mark
        assert_eq!(Orientation::of_jpeg(&broken), Orientation::Upright);
    }
}
