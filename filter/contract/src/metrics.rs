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
    /// Failed gray responses (5xx, reset, missing signals, fallbacks).
    pub const GRAY_FAILURES: &str = "grayguard_gray_failures";
    /// Gray-routed requests whose gray attempt failed and whose retry stable answered
    /// (label `rule`): each is also one gray failure.
    pub const FALLBACKS: &str = "grayguard_fallbacks_total";
    /// Signal headers ignored as malformed.
    pub const MALFORMED_SIGNALS: &str = "grayguard_malformed_signals";
    /// Client headers the filter removed.
    pub const SPOOFED_HEADERS_STRIPPED: &str = "grayguard_spoofed_headers_stripped";
    /// Worst breaker over units: 0 closed, 1 open, 2 half-open.
    pub const BREAKER_STATE: &str = "grayguard_breaker_state";
    /// Units shedding (open or half-open).
    pub const BREAKERS_OPEN: &str = "grayguard_breakers_open";
    /// One rule's breaker (label `rule`): 0 closed, 1 open, 2 half-open.
    pub const RULE_BREAKER_STATE: &str = "grayguard_rule_breaker_state";
    /// How close a rule's trigger is to shedding (labels `rule`, `trigger`), percent: 100
    /// sheds. The sequential detector's largest `ln e-value / ln(1/alpha)`.
    pub const EVIDENCE_PCT: &str = "grayguard_evidence_pct";
    /// Responses observed from gray.
    pub const GRAY_RESPONSES: &str = "grayguard_gray_responses";
    /// Responses observed from stable.
    pub const STABLE_RESPONSES: &str = "grayguard_stable_responses";
    /// Sum of gray latency signals, µs (mean: rate of this / rate of the samples).
    pub const GRAY_LATENCY_US: &str = "grayguard_gray_latency_us";
    /// Gray latency signals summed.
    pub const GRAY_LATENCY_SAMPLES: &str = "grayguard_gray_latency_samples";
    /// Sum of stable latency signals, µs.
    pub const STABLE_LATENCY_US: &str = "grayguard_stable_latency_us";
    /// Stable latency signals summed.
    pub const STABLE_LATENCY_SAMPLES: &str = "grayguard_stable_latency_samples";
    /// Sum of gray box counts.
    pub const GRAY_BOXES: &str = "grayguard_gray_boxes";
    /// Gray box counts summed.
    pub const GRAY_BOX_SAMPLES: &str = "grayguard_gray_box_samples";
    /// Sum of stable box counts.
    pub const STABLE_BOXES: &str = "grayguard_stable_boxes";
    /// Stable box counts summed.
    pub const STABLE_BOX_SAMPLES: &str = "grayguard_stable_box_samples";
    /// Sum of gray agreement values (`x-canary-agreement`), thousandths (mean: rate of this
    /// / 1000 / rate of the samples).
    pub const GRAY_AGREEMENT_MILLI: &str = "grayguard_gray_agreement_milli";
    /// Gray agreement values summed: the compared frames whose agreement reached this
    /// gateway.
    pub const GRAY_AGREEMENT_SAMPLES: &str = "grayguard_gray_agreement_samples";
    /// 1 while a rule is alerting in confirm mode (labels `rule`, `trigger`, `confirm`: the
    /// query string of the signed one-click link, see [`crate::operator`]); 0 after.
    pub const ALERT: &str = "grayguard_alert";
    /// 1 while a person's hold keeps a rule shed (labels `rule`, `trigger`: what the hold is
    /// on, `operator` for a direct shed; `release`: the query string of the signed link that
    /// releases it, see [`crate::operator::RELEASE`]); 0 after.
    pub const HELD: &str = "grayguard_held";
    /// Alerts raised in confirm mode (a statistical trigger asked a person).
    pub const ALERTS: &str = "grayguard_alerts";
    /// Sheds a person confirmed on the operator listener.
    pub const CONFIRMATIONS: &str = "grayguard_confirmations";
    /// Operator requests refused: on the public listener, or with a bad or expired link.
    pub const OPERATOR_REFUSED: &str = "grayguard_operator_refused";
    /// Latch calls this gateway sent to the gray workload (see `crate::latch`).
    pub const LATCH_CALLS: &str = "grayguard_latch_calls";
    /// Latch calls that failed (not sent, no answer, or not 2xx).
    pub const LATCH_FAILURES: &str = "grayguard_latch_failures";
    /// Change mark of the shared breaker board (internal; see the filter's README).
    pub const BOARD_WRITES: &str = "grayguard_board_writes";
    /// A rule's promotion verdict (label `rule`): 0 pending, 1 proven, 2 refuted (see
    /// [`crate::promotion::Verdict::gauge`]).
    pub const PROMOTION_STATE: &str = "grayguard_promotion_state";
    /// How far an effect's interval reaches into its budget, percent (labels `rule`,
    /// `effect`, `bound`): `upper` (the worse end) at most 100 for every effect is proven,
    /// `lower` (the better end) above 100 for any effect is refuted; never below 0.
    pub const PROMOTION_BUDGET_PCT: &str = "grayguard_promotion_budget_pct";

    /// `grayguard_breaches_<trigger>`.
    pub fn breaches(trigger: crate::Trigger) -> String {
        format!("{BREACHES_PREFIX}{}", trigger.as_str())
    }

    /// Every counter and gauge the filter publishes, but the per-trigger breach counters
    /// ([`breaches`]).
    pub const SCALARS: &[&str] = &[
        ROUTED_GRAY,
        ROUTED_STABLE,
        SHED_REQUESTS,
        PROBE_REQUESTS,
        DRY_RUN_REQUESTS,
        GRAY_FAILURES,
        FALLBACKS,
        MALFORMED_SIGNALS,
        SPOOFED_HEADERS_STRIPPED,
        BREAKER_STATE,
        BREAKERS_OPEN,
        RULE_BREAKER_STATE,
        EVIDENCE_PCT,
        GRAY_RESPONSES,
        STABLE_RESPONSES,
        GRAY_LATENCY_US,
        GRAY_LATENCY_SAMPLES,
        STABLE_LATENCY_US,
        STABLE_LATENCY_SAMPLES,
        GRAY_BOXES,
        GRAY_BOX_SAMPLES,
        STABLE_BOXES,
        STABLE_BOX_SAMPLES,
        GRAY_AGREEMENT_MILLI,
        GRAY_AGREEMENT_SAMPLES,
        ALERT,
        HELD,
        ALERTS,
        CONFIRMATIONS,
        OPERATOR_REFUSED,
        LATCH_CALLS,
        LATCH_FAILURES,
        BOARD_WRITES,
        PROMOTION_STATE,
        PROMOTION_BUDGET_PCT,
    ];

    /// Every name the filter publishes (scalars and breach counters).
    pub fn all() -> Vec<String> {
        let mut v: Vec<String> = SCALARS.iter().map(|n| n.to_string()).collect();
        v.extend(crate::Trigger::ALL.into_iter().map(breaches));
        v
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
    /// Share of NVML's last sample period (0–1) in which the inference device ran kernels.
    pub const GPU_UTILISATION_RATIO: &str = "grayguard_sidecar_gpu_utilisation_ratio";
    /// 1 while a model run has outlasted the stall deadline (`/healthz` answers 503).
    pub const STALLED: &str = "grayguard_sidecar_stalled";
    /// Model runs that outlasted the stall deadline (each counted once, when first seen).
    pub const STALLS_TOTAL: &str = "grayguard_sidecar_stalls_total";
    /// The stall deadline in force, seconds (0 until it is known: a derived one after the
    /// warm-up).
    pub const STALL_DEADLINE_SECONDS: &str = "grayguard_sidecar_stall_deadline_seconds";
    /// Images in the model run that served each successful `/infer` (histogram; 1 unless
    /// the model has a dynamic batch axis and requests were batched).
    pub const BATCH_SIZE: &str = "grayguard_sidecar_batch_size";
    /// Constant 1, labelled with what is served (`model_version`, `device`).
    pub const INFO: &str = "grayguard_sidecar_info";
    /// Live latches the workload holds (see [`crate::latch`]).
    pub const LATCHES: &str = "grayguard_sidecar_latches";
    /// Calls to the latch endpoint on the control listener (labels `action`: latch, clear,
    /// hold, release, list or unknown; `result`: ok or refused).
    pub const LATCH_REQUESTS_TOTAL: &str = "grayguard_sidecar_latch_requests_total";
    /// Latch calls refused (label `reason`: public_listener, bad_token, bad_request,
    /// holds_full).
    pub const LATCH_REFUSED_TOTAL: &str = "grayguard_sidecar_latch_refused_total";
    /// Open client connections, both listeners.
    pub const OPEN_CONNECTIONS: &str = "grayguard_sidecar_open_connections";
    /// Connections the sidecar refused or cut to protect itself (label `reason`:
    /// max_connections, header_timeout, idle_timeout).
    pub const CONNECTIONS_DROPPED_TOTAL: &str = "grayguard_sidecar_connections_dropped_total";
    /// Gray: frames compared with stable that gave an agreement.
    pub const COMPARISONS_TOTAL: &str = "grayguard_sidecar_comparisons_total";
    /// Gray: comparisons that gave none (label `reason`: unreachable, timeout, bad_status,
    /// bad_reply).
    pub const COMPARISON_FAILURES_TOTAL: &str = "grayguard_sidecar_comparison_failures_total";
    /// Gray: sampled frames not compared (label `reason`: busy, max_inflight).
    pub const COMPARISON_SKIPS_TOTAL: &str = "grayguard_sidecar_comparison_skips_total";
    /// Gray: comparisons waiting for stable's answer.
    pub const COMPARISONS_IN_FLIGHT: &str = "grayguard_sidecar_comparisons_in_flight";
    /// Gray: agreement of each compared frame, box-by-box F1 in [0, 1] (histogram; the
    /// `x-canary-agreement` header's value).
    pub const AGREEMENT: &str = "grayguard_sidecar_agreement";
    /// Gray: share of stable's boxes gray missed, per compared frame (histogram).
    pub const AGREEMENT_MISSED_SHARE: &str = "grayguard_sidecar_agreement_missed_share";
    /// Gray: share of gray's boxes stable did not have, per compared frame (histogram).
    pub const AGREEMENT_EXTRA_SHARE: &str = "grayguard_sidecar_agreement_extra_share";
    /// Gray: stable boxes gray answered in the same place with another class (labels
    /// `stable_class`, `gray_class`).
    pub const CLASS_CONFUSIONS_TOTAL: &str = "grayguard_sidecar_class_confusions_total";
    /// Gray: stable boxes gray answered in the same place, whatever the class (label
    /// `stable_class`): the denominator of [`CLASS_CONFUSIONS_TOTAL`].
    pub const MATCHED_STABLE_BOXES_TOTAL: &str = "grayguard_sidecar_matched_stable_boxes_total";
    /// Gray: finished agreements waiting for a reply to carry them.
    pub const AGREEMENTS_PENDING: &str = "grayguard_sidecar_agreements_pending";
    /// Gray: finished agreements dropped unsent (the oldest, when the queue was full).
    pub const AGREEMENTS_DROPPED_TOTAL: &str = "grayguard_sidecar_agreements_dropped_total";
    /// Stable: comparison requests (`x-canary-compare: 1`) served, by HTTP status (label
    /// `status`); they are in no other serving metric.
    pub const COMPARE_REQUESTS_TOTAL: &str = "grayguard_sidecar_compare_requests_total";

    /// Every counter and gauge the sidecar publishes.
    pub const SCALARS: &[&str] = &[
        LAST_BOX_COUNT,
        REQUESTS_TOTAL,
        ERRORS_TOTAL,
        IN_FLIGHT,
        QUEUE_DEPTH,
        READY,
        BREACH_ACTIVE,
        MEMORY_BYTES,
        MEMORY_LIMIT_BYTES,
        GPU_MEMORY_USED_BYTES,
        GPU_MEMORY_TOTAL_BYTES,
        GPU_UTILISATION_RATIO,
        STALLED,
        STALLS_TOTAL,
        STALL_DEADLINE_SECONDS,
        INFO,
        LATCHES,
        LATCH_REQUESTS_TOTAL,
        LATCH_REFUSED_TOTAL,
        OPEN_CONNECTIONS,
        CONNECTIONS_DROPPED_TOTAL,
        COMPARISONS_TOTAL,
        COMPARISON_FAILURES_TOTAL,
        COMPARISON_SKIPS_TOTAL,
        COMPARISONS_IN_FLIGHT,
        CLASS_CONFUSIONS_TOTAL,
        MATCHED_STABLE_BOXES_TOTAL,
        AGREEMENTS_PENDING,
        AGREEMENTS_DROPPED_TOTAL,
        COMPARE_REQUESTS_TOTAL,
    ];

    /// Every histogram the sidecar publishes (`_bucket`, `_sum`, `_count` in the text).
    pub const HISTOGRAMS: &[&str] = &[
        REQUEST_DURATION_SECONDS,
        INFERENCE_DURATION_SECONDS,
        NMS_DURATION_SECONDS,
        DETECTIONS_PER_IMAGE,
        BATCH_SIZE,
        AGREEMENT,
        AGREEMENT_MISSED_SHARE,
        AGREEMENT_EXTRA_SHARE,
    ];
}
