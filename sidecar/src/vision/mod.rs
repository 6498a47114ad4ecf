//! Pixels and boxes, pure functions with no I/O: decoding ([`decode`]) and EXIF orientation
//! ([`orientation`]), the letterbox into the model input ([`letterbox`]), the model's output
//! layouts ([`layout`]) and non-maximum suppression ([`nms`]).

pub mod decode;
pub mod layout;
pub mod letterbox;
pub mod nms;
pub mod orientation;
