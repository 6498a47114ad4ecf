//! Header names (lower case, as Envoy and hyper see them).

/// Request header the filter writes the chosen side into; routes match on it. Stripped
/// from client requests. (The filter's `route_header` setting may rename it.)
pub const ROUTE: &str = "x-canary-route";
/// Response header saying where a request went and why (see [`crate::decision`]).
/// Stripped from client requests.
pub const DECISION: &str = "x-canary-decision";
/// The sidecar's in-band breach flag; its value is a [`crate::reason::Flag`]. Stripped from
/// client requests. (The filter's `breach.flag_header` setting may rename it.)
pub const BREACH: &str = "x-canary-breach";
/// Set by the filter on a half-open probe it sends to gray: the workload answers it on its
/// own merits, without the latch (see [`crate::latch`]). Stripped from client requests.
pub const PROBE: &str = "x-canary-probe";
/// Set by a gray sidecar on the copy of a frame it sends to stable for comparison (`1`): the
/// stable workload answers it normally but keeps it out of its serving metrics and its
/// watchdog. Only the gray workload may send it (an AuthorizationPolicy in the mesh); the
/// gateways strip it from client requests.
pub const COMPARE: &str = "x-canary-compare";
/// Hour of the day (`HH`) the filter stamps upstream; read from clients only when the
/// filter's `trust_time_header` is on.
pub const TIME_OF_DAY: &str = "x-time-of-day";

/// Server-side time of one inference reply, ms (decimal).
pub const INFERENCE_LATENCY_MS: &str = "x-inference-latency-ms";
/// Time spent in non-maximum suppression, ms (decimal).
pub const NMS_LATENCY_MS: &str = "x-nms-latency-ms";
/// Boxes in the reply (whole number).
pub const BOX_COUNT: &str = "x-box-count";
/// The model version that answered.
pub const MODEL_VERSION: &str = "x-model-version";
/// How far gray agreed with stable on one earlier frame both answered (box-by-box F1,
/// class-aware, IoU >= 0.5): a decimal in [0, 1] with three decimals, rounded down, so
/// `1.000` means every box agreed (`0.833`). Each finished comparison rides on one later
/// gray reply, once; most replies carry none. The filter's `agreement` trigger reads it.
pub const AGREEMENT: &str = "x-canary-agreement";

/// The pod that answered (its `POD_NAME`, else its host name), as a token of letters,
/// digits, `.`, `_` and `-`: for the incident record, and to tell which workload answered
/// a request Envoy retried onto stable.
pub const SERVED_BY: &str = "x-served-by";

/// Set by Envoy on every reply through a route with `include_attempt_count_in_response`:
/// how many upstream attempts the request took. On a gray-routed request, `2` means the gray
/// attempt failed and stable answered the retry (mesh-config's gray fallback).
pub const ENVOY_ATTEMPT_COUNT: &str = "x-envoy-attempt-count";

/// The camera kind; the local mesh's rule routes `crane-camera` to gray.
pub const DEVICE_TYPE: &str = "x-device-type";
/// A camera's identity; the local mesh's sticky share hashes it.
pub const DEVICE_ID: &str = "x-device-id";
