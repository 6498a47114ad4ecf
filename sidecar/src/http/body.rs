//! Reading request bodies: what the Content-Type announces, and bounded reading — in size
//! (with the over-limit drain that lets a client still sending see its 413) and in time (a
//! body that trickles in gets 408).

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::HeaderValue;
use tokio::time::Instant;

use super::multipart;
use crate::error::{ApiError, ErrorKind};

/// Which kind of body the Content-Type announces.
pub(super) enum Payload {
    Raw,
    Multipart(String),
}

pub(super) fn payload_kind(content_type: Option<&HeaderValue>) -> Result<Payload, ApiError> {
    let Some(ct) = content_type else {
        return Ok(Payload::Raw); // sniffed from the bytes
    };
    let ct = ct
        .to_str()
        .map_err(|_| ApiError::new(ErrorKind::UnsupportedMediaType, "Content-Type is not ASCII"))?;
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "image/jpeg" | "image/jpg" | "image/png" | "application/octet-stream" => Ok(Payload::Raw),
        "multipart/form-data" => multipart::boundary(ct)
            .map(|b| Payload::Multipart(b.to_string()))
            .ok_or_else(|| ApiError::from(multipart::MultipartError::NoBoundary)),
        _ => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "Content-Type {media:?} is not supported; send image/jpeg, image/png, application/octet-stream or multipart/form-data with a field \"image\""
            ),
        )),
    }
}

/// Reads at most `max` bytes of `body`; `Ok(None)` when it is longer (the excess is drained up
/// to `drain_cap` bytes in all). The whole body must arrive by `deadline`.
pub(super) async fn read_body<B>(
    mut body: B,
    max: usize,
    drain_cap: usize,
    declared: Option<u64>,
    deadline: Instant,
) -> Result<Option<Bytes>, ApiError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n.min(max as u64) as usize));
    let mut total = 0usize;
    loop {
        let Ok(frame) = tokio::time::timeout_at(deadline, body.frame()).await else {
            return Err(ApiError::new(
                ErrorKind::BodyTimeout,
                format!(
                    "the request body did not arrive in time (--body-read-timeout-s); {total} bytes received"
                ),
            ));
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            ApiError::new(
                ErrorKind::BadImage,
                format!("cannot read the request body: {}", e.into()),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > max {
            buf = BytesMut::new();
            if total > drain_cap {
                break;
            }
        } else if buf.is_empty() && data.len() == total && declared == Some(total as u64) {
            // The whole body in one frame: keep it without copying.
            return Ok(Some(data));
        } else {
            buf.extend_from_slice(&data);
        }
    }
    Ok((total <= max).then(|| buf.freeze()))
}
