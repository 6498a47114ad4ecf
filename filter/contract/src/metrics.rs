//! Metric names, defined once: the filter's (Envoy admin `/stats/prometheus`) and the
//! sidecar's (`/metrics`). The parts that define the metrics and the parts that read them
//! back (the demo, the tests, the alert rules' checks) use these constants.

/// The filter's metrics (Envoy stats; Envoy's Prometheus output keeps the names as is).
pub mod filter {
    /// Requests the filter sent to gray.
    pub const ROUTED_GRAY: &str = "grayguard_routed_gray";
    /// Requests the filter sent to stable.
    pub const ROUTED_STABLE: &str = "grayguard_routed_stable";
    /// Requests sent to stable because their rule was shedding.
    pub const SHED_REQUESTS: &str = "grayguard_shed_requests";
    /// Half-open probes sent to gray.
    pub const PROBE_REQUESTS: &str = "grayguard_probe_requests";
    /// Requests that would have been shed (dry run).
    pub const DRY_RUN_REQUESTS: &str = "grayguard_dry_run_requests";
    /// Prefix of the breaker openings by trigger: `grayguard_breaches_<trigger>`.
    pub const BREACHES_PREFIX: &str = "grayguard_breaches_";
    /// Failed gray responses (5xx, reset, missing signals).
    pub const GRAY_FAILURES: &str = "grayguard_gray_failures";
    /// Signal headers ignored as malformed.
    pub const MALFORMED_SIGNALS: &str = "grayguard_malformed_signals";
    /// Client headers the filter removed.
    pub const SPOOFED_HEADERS_STRIPPED: &str = "grayguard_spoofed_headers_stripped";
    /// Worst breaker over units: 0 closed, 1 open, 2 half-open.
    pub const BREAKER_STATE: &str = "grayguard_breaker_state";
    /// Units shedding (open or half-open).
    pub const BREAKERS_OPEN: &str = "grayguard_breakers_open";
    /// Gray latency histogram, ms.
    pub const GRAY_LATENCY_MS: &str = "grayguard_gray_latency_ms";
    /// Gray box-count histogram.
    pub const GRAY_BOX_COUNT: &str = "grayguard_gray_box_count";
    /// Stable box-count histogram.
    pub const STABLE_BOX_COUNT: &str = "grayguard_stable_box_count";
    /// Change mark of the shared breaker board (internal; see the filter's README).
    pub const BOARD_WRITES: &str = "grayguard_board_writes";

    /// `grayguard_breaches_<trigger>`.
    pub fn breaches(trigger: crate::Trigger) -> String {
        format!("{BREACHES_PREFIX}{}", trigger.as_str())
    }
}

/// The sidecar's metrics.
pub mod sidecar {
    /// Server-side time of `/infer`, s (histogram; the `x-inference-latency-ms` header).
    pub const REQUEST_DURATION_SECONDS: &str = "grayguard_sidecar_request_duration_seconds";
    /// Time of the model run itself, s (histogram).
    pub const INFERENCE_DURATION_SECONDS: &str = "grayguard_sidecar_inference_duration_seconds";
    /// Output decoding and non-maximum suppression, s (histogram).
    pub const NMS_DURATION_SECONDS: &str = "grayguard_sidecar_nms_duration_seconds";
    /// Boxes per successfully processed image (histogram).
    pub const DETECTIONS_PER_IMAGE: &str = "grayguard_sidecar_detections_per_image";
    /// Boxes of the most recent successful `/infer`.
    pub const LAST_BOX_COUNT: &str = "grayguard_sidecar_last_box_count";
    /// `/infer` replies by HTTP status (`status` label).
    pub const REQUESTS_TOTAL: &str = "grayguard_sidecar_requests_total";
    /// Failed requests by error kind (`kind` label).
    pub const ERRORS_TOTAL: &str = "grayguard_sidecar_errors_total";
    /// Admitted `/infer` requests not yet answered.
    pub const IN_FLIGHT: &str = "grayguard_sidecar_in_flight";
    /// Admitted `/infer` requests waiting for a model worker.
    pub const QUEUE_DEPTH: &str = "grayguard_sidecar_queue_depth";
    /// 1 when `/ready` answers 200.
    pub const READY: &str = "grayguard_sidecar_ready";
    /// 1 while the watchdog raises this reason (`reason` label) in `x-canary-breach`.
    pub const BREACH_ACTIVE: &str = "grayguard_sidecar_breach_active";
    /// Memory in use, bytes.
    pub const MEMORY_BYTES: &str = "grayguard_sidecar_memory_bytes";
    /// Memory limit, bytes.
    pub const MEMORY_LIMIT_BYTES: &str = "grayguard_sidecar_memory_limit_bytes";
    /// GPU memory in use on the inference device, bytes.
    pub const GPU_MEMORY_USED_BYTES: &str = "grayguard_sidecar_gpu_memory_used_bytes";
    /// GPU memory of the inference device, bytes.
    pub const GPU_MEMORY_TOTAL_BYTES: &str = "grayguard_sidecar_gpu_memory_total_bytes";
    /// Images in the model run that served each successful `/infer` (histogram; 1 unless
    /// the model has a dynamic batch axis and requests were batched).
    pub const BATCH_SIZE: &str = "grayguard_sidecar_batch_size";
    /// Constant 1, labelled with what is served (`model_version`, `device`).
    pub const INFO: &str = "grayguard_sidecar_info";
}
