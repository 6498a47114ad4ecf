//! Every way a request can fail, and the one table that maps each to its HTTP status, its
//! `errors_total{kind}` label and its JSON body `{"error": "...", "kind": "..."}`; and every
//! way the sidecar drops a connection (`connections_dropped_total{reason}`). Failures of the
//! layers below map into the table here ([`DecodeError`]); the HTTP layer maps its own (a
//! malformed form) where it detects them.

use hyper::StatusCode;

use crate::vision::decode::DecodeError;

/// A failure class. The table in [`ErrorKind::status`] and [`ErrorKind::as_str`] is the
/// public contract (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Corrupt, truncated or empty image; malformed multipart body.
    BadImage,
    /// Content-Type or image format other than JPEG / PNG / multipart.
    UnsupportedMediaType,
    /// Body larger than `--max-body-bytes`.
    BodyTooLarge,
    /// Body not received within `--body-read-timeout-s`.
    BodyTimeout,
    /// Image header declares more than `--max-pixels` pixels.
    TooManyPixels,
    MethodNotAllowed,
    NotFound,
    /// More than `--max-queue` requests waiting for the model.
    QueueFull,
    /// `--max-connections` connections already open (answered at accept, then closed).
    TooManyConnections,
    /// Warm-up not finished (or shutting down).
    NotReady,
    /// ONNX Runtime failed to run the model.
    Inference,
    /// Anything else (a bug): the request fails, the process does not.
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::BadImage,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::BodyTooLarge,
        ErrorKind::BodyTimeout,
        ErrorKind::TooManyPixels,
        ErrorKind::MethodNotAllowed,
        ErrorKind::NotFound,
        ErrorKind::QueueFull,
        ErrorKind::TooManyConnections,
        ErrorKind::NotReady,
        ErrorKind::Inference,
        ErrorKind::Internal,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadImage => StatusCode::BAD_REQUEST,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::TooManyPixels => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Inference => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `kind` in the JSON body and in `grayguard_sidecar_errors_total{kind}`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadImage => "bad_image",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::BodyTimeout => "body_timeout",
            ErrorKind::TooManyPixels => "too_many_pixels",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::NotFound => "not_found",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::TooManyConnections => "too_many_connections",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::Inference => "inference",
            ErrorKind::Internal => "internal",
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for transient kinds.
    pub fn retry_after_s(self) -> Option<u32> {
        match self {
            ErrorKind::QueueFull | ErrorKind::TooManyConnections | ErrorKind::NotReady => Some(1),
            _ => None,
        }
    }

    /// Whether the failure is the server's (counts towards the watchdog's error share).
    /// Client mistakes (4xx) say nothing about the model's health.
    pub fn is_server_side(self) -> bool {
        self.status().is_server_error()
    }
}

/// A failed request: its kind and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// The JSON body of the reply.
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.message, "kind": self.kind.as_str() }).to_string()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> ApiError {
        let kind = match e {
            DecodeError::Unsupported => ErrorKind::UnsupportedMediaType,
            DecodeError::TooManyPixels { .. } => ErrorKind::TooManyPixels,
            DecodeError::Empty | DecodeError::Corrupt(_) => ErrorKind::BadImage,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// Why the sidecar dropped a connection (`grayguard_sidecar_connections_dropped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Refused at accept: `--max-connections` were open.
    MaxConnections,
    /// A request head took longer than `--header-read-timeout-s`.
    HeaderTimeout,
    /// Nothing arrived for `--idle-timeout-s` after a reply.
    IdleTimeout,
}

impl Cut {
    pub const ALL: [Cut; 3] = [Cut::MaxConnections, Cut::HeaderTimeout, Cut::IdleTimeout];

    pub fn as_str(self) -> &'static str {
        match self {
            Cut::MaxConnections => "max_connections",
            Cut::HeaderTimeout => "header_timeout",
            Cut::IdleTimeout => "idle_timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_consistent() {
        let mut labels = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(kind.status().is_client_error() || kind.status().is_server_error());
            assert!(
                labels.insert(kind.as_str()),
                "duplicate label {}",
                kind.as_str()
            );
            assert_eq!(
                kind.retry_after_s().is_some(),
                kind.status() == StatusCode::SERVICE_UNAVAILABLE
            );
        }
        assert_eq!(ErrorKind::BadImage.status(), 400);
        assert_eq!(ErrorKind::UnsupportedMediaType.status(), 415);
        assert_eq!(ErrorKind::BodyTooLarge.status(), 413);
        assert_eq!(ErrorKind::BodyTimeout.status(), 408);
        assert!(!ErrorKind::BodyTimeout.is_server_side());
        assert_eq!(ErrorKind::TooManyConnections.status(), 503);
        assert_eq!(ErrorKind::TooManyPixels.status(), 413);
        assert_eq!(ErrorKind::MethodNotAllowed.status(), 405);
        assert_eq!(ErrorKind::NotFound.status(), 404);
        assert_eq!(ErrorKind::QueueFull.status(), 503);
        assert!(ErrorKind::QueueFull.is_server_side());
        assert!(!ErrorKind::BadImage.is_server_side());
    }

    #[test]
    fn decode_errors_map_to_their_kinds() {
        assert_eq!(ApiError::from(DecodeError::Empty).kind, ErrorKind::BadImage);
        assert_eq!(
            ApiError::from(DecodeError::Unsupported).kind,
            ErrorKind::UnsupportedMediaType
        );
        let bomb = DecodeError::TooManyPixels {
            width: 1,
            height: 2,
            max: 1,
        };
        assert_eq!(ApiError::from(bomb).kind, ErrorKind::TooManyPixels);
        assert_eq!(
            ApiError::from(DecodeError::Corrupt("x".into())).kind,
            ErrorKind::BadImage
        );
    }

    #[test]
    fn body_is_json_with_error_and_kind() {
        let e = ApiError::new(ErrorKind::NotFound, "no route \"/x\"");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"], "no route \"/x\"");
        assert_eq!(v["kind"], "not_found");
    }

    #[test]
    fn cut_reasons_are_distinct_labels() {
        let labels: std::collections::HashSet<_> = Cut::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), Cut::ALL.len());
    }
}
