//! The sidecar's HTTP API against the real binary, ONNX Runtime, model and photos: readiness
//! around warm-up, detections in original-image pixels (checked against the Python reference
//! pipeline's boxes), headers that match the JSON, every bad input with its status,
//! `/metrics` that `promtool` accepts and that counts exactly what was sent, and `/info`
//! (checked against the model file's digest, ONNX Runtime's own version and the host). Each
//! test starts its own sidecar with the same flags ([`api_sidecar`]).

use grayguard_contract::headers;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use grayguard_client::exposition;
use grayguard_e2e::http::{self, Response};
use grayguard_e2e::paths::{self, photo};
use grayguard_e2e::sidecar::{READY_TIMEOUT, Sidecar, SidecarBuilder};
use grayguard_e2e::wait::Wait;

/// Boxes of the Python reference server (PIL + numpy + onnxruntime, same model, conf 0.25,
/// IoU 0.45): `tests/bench/sidecar/reference_server.py --once person.jpg`.
const PERSON_REFERENCE: [(f32, f32, f32, f32, f32, &str); 2] = [
    (182.86, 97.33, 289.32, 377.92, 0.6211, "Normal"),
    (49.98, 256.57, 211.04, 347.92, 0.4953, "Fall"),
];

/// Body limit of the test process (kite.jpg is 1.4 MB and must fit).
const MAX_BODY: usize = 2_000_000;

/// method, path, content type, body, expected status, expected error kind.
type BadCase<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);

fn f(v: &serde_json::Value) -> f32 {
    v.as_f64().expect("number") as f32
}

/// Every /infer reply carries the four signal headers, consistent with the status.
fn assert_signal_headers(r: &Response, what: &str) {
    for h in [
        headers::INFERENCE_LATENCY_MS,
        headers::NMS_LATENCY_MS,
        headers::BOX_COUNT,
    ] {
        let v = r.header(h).unwrap_or_else(|| panic!("{what}: no {h}"));
        assert!(v.parse::<f64>().is_ok_and(|x| x >= 0.0), "{what}: {h}: {v}");
    }
    assert_eq!(r.header(headers::MODEL_VERSION), Some("v-api"), "{what}");
}

/// Tally of what the test sent, to compare with `/metrics`.
#[derive(Default)]
struct Sent {
    by_status: BTreeMap<u16, u32>,
    by_kind: BTreeMap<String, u32>,
    boxes: Vec<usize>,
}

impl Sent {
    fn record(&mut self, r: &Response) {
        *self.by_status.entry(r.status).or_default() += 1;
        if r.status == 200 {
            self.boxes.push(r.json()["boxes"].as_array().unwrap().len());
        } else {
            *self
                .by_kind
                .entry(r.json()["kind"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
}

/// A JPEG whose frame header claims 65000 x 65000 pixels (a decompression bomb's header).
fn jpeg_bomb() -> Vec<u8> {
    let mut b = photo("person.jpg");
    let sof = b
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0 marker");
    // FFC0, length (2), precision (1), height (2), width (2).
    b[sof + 5..sof + 7].copy_from_slice(&65000u16.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&65000u16.to_be_bytes());
    b
}

fn multipart(field: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "grayguard-test-7d1f";
    let mut body = Vec::new();
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"camera\"\r\n\r\ncrane-7\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"p.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .unwrap();
    body.extend_from_slice(data);
    write!(body, "\r\n--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The API tests' sidecar, not yet started: room for kite.jpg and a pixel bomb's header, and
/// its own latency watchdog out of the way (latency on a shared CI machine says nothing here;
/// `sidecar_watchdog` tests breaches).
fn api_builder() -> SidecarBuilder {
    SidecarBuilder::new("v-api")
        .flag("--max-body-bytes", &MAX_BODY.to_string())
        .flag("--max-pixels", "20000000")
        .flag("--watchdog-latency-budget-ms", "60000")
}

/// The API tests' sidecar, ready.
fn api_sidecar() -> Sidecar {
    api_builder().start()
}

/// The boxes of a reply, as JSON.
fn boxes(r: &Response) -> serde_json::Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["boxes"].clone()
}

#[test]
fn ready_answers_503_while_warming_up_and_infer_is_refused_with_a_retry_hint() {
    // Enough warm-up runs that /ready is observably 503 first.
    let mut sc = api_builder().flag("--warmup-runs", "8").spawn();
    let ready = sc.url("/ready");
    let first = Wait::new("the sidecar answers /ready", Duration::from_secs(30))
        .every(Duration::from_millis(20))
        .poll(|| http::get(&ready))
        .unwrap_or_else(|t| panic!("{t}\n{}", sc.proc.log()));
    assert_eq!(first.status, 503, "/ready before warm-up: {}", first.text());
    assert_eq!(first.json()["status"], "warming-up");
    assert_eq!(
        http::get(&sc.url("/healthz")).unwrap().status,
        200,
        "alive while warming up"
    );
    let early = sc.infer_file("person.jpg");
    if early.status == 503 {
        // Not ready yet: refused with the signal headers and a retry hint.
        assert_eq!(early.json()["kind"], "not_ready");
        assert_eq!(early.header("retry-after"), Some("1"));
        assert_signal_headers(&early, "infer before ready");
    } else {
        assert_eq!(early.status, 200, "{}", early.text());
    }
    sc.wait_ready(READY_TIMEOUT);
    assert_eq!(sc.infer_file("person.jpg").status, 200, "served once ready");
}

#[test]
fn person_boxes_match_the_reference_pipeline() {
    let sc = api_sidecar();
    let r = sc.infer_file("person.jpg");
    assert_signal_headers(&r, "person.jpg");
    let boxes = boxes(&r);
    let boxes = boxes.as_array().unwrap();
    assert_eq!(boxes.len(), PERSON_REFERENCE.len(), "{}", r.text());
    for (b, want) in boxes.iter().zip(PERSON_REFERENCE) {
        let got = (f(&b["x1"]), f(&b["y1"]), f(&b["x2"]), f(&b["y2"]));
        for (g, w) in [
            (got.0, want.0),
            (got.1, want.1),
            (got.2, want.2),
            (got.3, want.3),
        ] {
            assert!((g - w).abs() <= 2.0, "box {b} vs reference {want:?}");
        }
        assert!(
            (f(&b["score"]) - want.4).abs() <= 0.02,
            "score {b} vs {want:?}"
        );
        assert_eq!(b["label"], want.5);
        assert_eq!(b["class_id"], if want.5 == "Normal" { 0 } else { 1 });
    }
}

#[test]
fn signal_headers_and_timings_match_the_json_body() {
    let sc = api_sidecar();
    let r = sc.infer_file("person.jpg");
    let n = boxes(&r).as_array().unwrap().len();
    let j = r.json();
    let header = |name: &str| r.header(name).unwrap().parse::<f64>().unwrap();
    assert_eq!(header(headers::BOX_COUNT) as usize, n);
    assert_eq!(
        header(headers::INFERENCE_LATENCY_MS),
        j["latency_ms"].as_f64().unwrap()
    );
    assert_eq!(
        header(headers::NMS_LATENCY_MS),
        j["nms_ms"].as_f64().unwrap()
    );
    assert_eq!(j["model_version"], "v-api");
    let (pre, inf, nms, lat) = (
        f(&j["preprocess_ms"]),
        f(&j["inference_ms"]),
        f(&j["nms_ms"]),
        f(&j["latency_ms"]),
    );
    assert!(inf > 0.0 && pre > 0.0 && nms >= 0.0, "{j}");
    assert!(
        lat >= pre + inf + nms - 0.01,
        "latency covers decode to reply: {j}"
    );
    assert!(r.header(headers::BREACH).is_none(), "no breach");
}

#[test]
fn boxes_come_back_in_original_pixels_beyond_the_640_canvas() {
    let sc = api_sidecar();
    // kite.jpg is 1352x900.
    let r = sc.infer_file("kite.jpg");
    let kite = r.json();
    let kb = boxes(&r);
    let kb = kb.as_array().unwrap();
    assert!(!kb.is_empty(), "people on the beach: {kite}");
    assert!(
        kb.iter()
            .all(|b| b["label"] == "Normal" || b["label"] == "Fall")
    );
    assert!(
        kb.iter()
            .all(|b| f(&b["x2"]) <= 1352.0 && f(&b["y2"]) <= 900.0 && f(&b["x1"]) >= 0.0)
    );
    assert!(
        kb.iter().any(|b| f(&b["y2"]) > 640.0),
        "original coordinates: {kite}"
    );
}

#[test]
fn multipart_and_octet_stream_bodies_give_the_same_boxes_as_jpeg() {
    let sc = api_sidecar();
    let jpeg = boxes(&sc.infer_file("person.jpg"));
    let (ct, body) = multipart("image", &photo("person.jpg"));
    assert_eq!(boxes(&sc.infer(&body, &ct)), jpeg, "multipart");
    assert_eq!(
        boxes(&sc.infer(&photo("person.jpg"), "application/octet-stream")),
        jpeg,
        "octet-stream"
    );
}

/// Every bad input, each followed by a good request: its status, a JSON error, the signal
/// headers, and no damage. Records every reply in `sent`.
fn send_bad_inputs(sc: &Sidecar, sent: &mut Sent) {
    let person = photo("person.jpg");
    let first = sc.infer(&person, "image/jpeg");
    let good = boxes(&first);
    sent.record(&first);
    let mut garbage = person[..4].to_vec();
    garbage.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let (mp_ct, mp_missing) = multipart("picture", &person);
    let cases: Vec<BadCase> = vec![
        (
            "POST",
            "/infer",
            "image/jpeg",
            person[..person.len() / 2].to_vec(),
            400,
            "bad_image",
        ),
        ("POST", "/infer", "image/jpeg", garbage, 400, "bad_image"),
        ("POST", "/infer", "image/jpeg", Vec::new(), 400, "bad_image"),
        (
            "POST",
            "/infer",
            "image/gif",
            b"GIF89a\x01\x00\x01\x00".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/infer",
            "application/octet-stream",
            b"BM6\x00\x00\x00 a bitmap".to_vec(),
            415,
            "unsupported_media_type",
        ),
        ("POST", "/infer", &mp_ct, mp_missing, 400, "bad_image"),
        (
            "POST",
            "/infer",
            "image/jpeg",
            vec![0xFF; MAX_BODY + 1],
            413,
            "body_too_large",
        ),
        (
            "POST",
            "/infer",
            "image/jpeg",
            jpeg_bomb(),
            413,
            "too_many_pixels",
        ),
        (
            "GET",
            "/infer",
            "image/jpeg",
            Vec::new(),
            405,
            "method_not_allowed",
        ),
        (
            "PUT",
            "/infer",
            "image/jpeg",
            person.clone(),
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/detect",
            "image/jpeg",
            Vec::new(),
            404,
            "not_found",
        ),
    ];
    for (method, path, ct, body, status, kind) in cases {
        let what = format!("{method} {path} ({ct}, {} bytes)", body.len());
        let body = (method != "GET").then_some(body.as_slice());
        let r = http::request(method, &sc.url(path), &[("content-type", ct)], body)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let err = r.json();
        assert_eq!(err["kind"], kind, "{what}");
        assert!(
            err["error"].as_str().is_some_and(|m| m.len() > 5),
            "{what}: {err}"
        );
        assert_signal_headers(&r, &what);
        assert_eq!(r.header(headers::BOX_COUNT), Some("0"), "{what}");
        if status == 405 {
            assert!(r.header("allow").is_some(), "{what}");
        }
        sent.record(&r);
        // The next good request still works.
        let ok = sc.infer(&person, "image/jpeg");
        assert_eq!(ok.status, 200, "after {what}: {}", ok.text());
        assert_eq!(ok.json()["boxes"], good, "after {what}");
        sent.record(&ok);
    }
}

#[test]
fn every_bad_input_gets_its_status_and_a_json_error_and_the_next_request_is_served() {
    let sc = api_sidecar();
    send_bad_inputs(&sc, &mut Sent::default());
    assert!(
        sc.proc.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        sc.proc.log()
    );
}

#[test]
fn metrics_pass_promtool_and_count_exactly_what_was_sent() {
    let sc = api_sidecar();
    let mut sent = Sent::default();
    let (ct, form) = multipart("image", &photo("person.jpg"));
    for r in [
        sc.infer_file("person.jpg"),
        sc.infer_file("kite.jpg"),
        sc.infer(&form, &ct),
        sc.infer(&photo("person.jpg"), "application/octet-stream"),
    ] {
        assert_eq!(r.status, 200, "{}", r.text());
        sent.record(&r);
    }
    send_bad_inputs(&sc, &mut sent);
    // The last reply was person.jpg's.
    let last_boxes = PERSON_REFERENCE.len() as f64;

    let text = sc.metrics();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt prometheus) is installed by make setup");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    // promtool exits 1 for lint findings as well as for parse errors. The one finding allowed
    // is the contract's gauge name `grayguard_sidecar_last_box_count` (a `_count` suffix).
    let findings =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !findings.contains("error while linting"),
        "promtool cannot parse /metrics: {findings}\n{text}"
    );
    for line in findings.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with("grayguard_sidecar_last_box_count "),
            "promtool: {line}"
        );
    }
    for (status, n) in &sent.by_status {
        let series = format!("grayguard_sidecar_requests_total{{status=\"{status}\"}}");
        assert_eq!(
            exposition::value(&text, &series),
            Some(f64::from(*n)),
            "{series}\n{text}"
        );
    }
    for (kind, n) in &sent.by_kind {
        let series = format!("grayguard_sidecar_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(
            exposition::value(&text, &series),
            Some(f64::from(*n)),
            "{series}"
        );
    }
    let successes = sent.boxes.len() as f64;
    let total_boxes: usize = sent.boxes.iter().sum();
    for series in [
        "grayguard_sidecar_detections_per_image_count",
        "grayguard_sidecar_inference_duration_seconds_count",
        "grayguard_sidecar_nms_duration_seconds_count",
    ] {
        assert_eq!(
            exposition::value(&text, series),
            Some(successes),
            "{series}"
        );
    }
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_detections_per_image_sum"),
        Some(total_boxes as f64)
    );
    let all: u32 = sent.by_status.values().sum();
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_request_duration_seconds_count"),
        Some(f64::from(all))
    );
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_last_box_count"),
        Some(last_boxes)
    );
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_ready"),
        Some(1.0)
    );
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_in_flight"),
        Some(0.0)
    );
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_queue_depth"),
        Some(0.0)
    );
    assert_eq!(
        exposition::value(
            &text,
            "grayguard_sidecar_info{device=\"cpu\",model_version=\"v-api\"}"
        ),
        Some(1.0)
    );
    for reason in ["latency", "box_count", "errors", "memory"] {
        let series = format!("grayguard_sidecar_breach_active{{reason=\"{reason}\"}}");
        assert_eq!(exposition::value(&text, &series), Some(0.0), "{series}");
    }
    assert!(
        exposition::value(&text, "grayguard_sidecar_memory_bytes").is_some_and(|v| v > 50e6),
        "RSS of a loaded model"
    );
    assert!(
        exposition::value(&text, "grayguard_sidecar_memory_limit_bytes").is_some_and(|v| v > 0.0)
    );
}

/// `/info`: what the incident report compares between the gray and the stable pods.
#[test]
fn info_names_the_model_the_runtime_the_flags_and_the_host() {
    let sc = api_sidecar();
    let r = http::get(&sc.url("/info")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let info = r.json();
    let model = paths::model();
    let out = Command::new("sha256sum").arg(&model).output().unwrap();
    let digest = String::from_utf8(out.stdout).unwrap();
    let digest = digest.split_whitespace().next().unwrap();
    assert_eq!(info["model"]["sha256"], digest, "{info}");
    assert_eq!(info["model"]["path"], model.display().to_string());
    assert_eq!(info["model"]["version"], "v-api");
    assert_eq!(info["model"]["input"], serde_json::json!([640, 640]));
    assert_eq!(
        info["model"]["classes"],
        serde_json::json!(["Normal", "Fall"])
    );
    let out = Command::new(paths::python())
        .args(["-c", "import onnxruntime; print(onnxruntime.__version__)"])
        .output()
        .unwrap();
    let ort_version = String::from_utf8(out.stdout).unwrap();
    assert_eq!(info["runtime"]["onnxruntime"], ort_version.trim());
    assert_eq!(info["runtime"]["device"], "cpu");
    assert_eq!(
        info["runtime"]["intra_threads"], 2,
        "the harness's --threads 2"
    );
    assert_eq!(info["runtime"]["inter_threads"], 1);
    let flags = &info["flags"];
    assert_eq!(flags["max-body-bytes"], MAX_BODY);
    assert_eq!(flags["warmup-runs"], 1, "the harness's --warmup-runs 1");
    assert_eq!(flags["conf"], 0.25);
    assert_eq!(flags["watchdog-latency-budget-ms"], 60000.0);
    assert_eq!(flags["control-token"], serde_json::Value::Null);
    assert_eq!(info["sidecar"]["version"], env!("CARGO_PKG_VERSION"));
    let started = info["sidecar"]["started_at"].as_str().unwrap();
    assert!(
        started.len() == 24 && started.ends_with('Z') && started.as_bytes()[10] == b'T',
        "{started}"
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(info["host"]["hostname"], hostname.trim());
    assert!(info["host"]["os"].as_str().unwrap().starts_with("linux "));
    assert_eq!(info["host"]["arch"], std::env::consts::ARCH);
    assert!(info["host"]["cpus"].as_u64().is_some_and(|n| n >= 1));
    assert!(
        info["host"]["memory_bytes"]
            .as_u64()
            .is_some_and(|n| n > 1 << 20)
    );
}
