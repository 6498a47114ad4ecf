//! Pixels and boxes, pure functions with no I/O: the packed RGB8 image they pass along
//! ([`image`]), decoding ([`decode`]) and EXIF orientation ([`orientation`]), the letterbox
//! into the model input ([`letterbox`]), the model's output layouts ([`layout`]) and
//! non-maximum suppression ([`nms`]). Nothing here imports another layer.

pub mod decode;
pub mod image;
pub mod layout;
pub mod letterbox;
pub mod nms;
pub mod orientation;
