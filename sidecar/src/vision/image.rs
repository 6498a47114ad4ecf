//! The image every vision step hands to the next: packed RGB8 pixels, row by row, in a
//! caller-owned buffer, and their [`ImageSize`]. Decoding produces it, EXIF orientation turns
//! it upright, the letterbox reads it.

/// Size of a packed RGB8 image, pixels (`width × height × 3` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}
