//! The window detector: fixed thresholds on sliding windows of gray replies.
//!
//! - `windows`: time buckets, their sums and one worker's ring of them;
//! - `breach`: which trigger fires for a merged window, and the box-count baseline;
//! - `detector`: the [`crate::detect::Detector`] on top of them.

pub mod breach;
pub mod detector;
pub mod windows;
