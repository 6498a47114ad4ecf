//! Gray compared with stable on the same frames, with real sidecars (the release binary, ONNX
//! Runtime, the model and its gray versions from `make setup`, the photos): a gray whose two
//! class scores are swapped disagrees on every photo with people in it while its counts and
//! boxes stay those of stable, an A/A gray agrees exactly, the INT8 gray agrees photo by photo
//! as the Python reference measures it (tests/reference/model_variants.py, an independent
//! matcher), each agreement comes back once in `x-canary-agreement` on a later reply, and
//! stable serves the comparisons outside its serving metrics. A stable that is down, too slow or refusing makes comparisons fail,
//! counted by reason, and changes nothing in gray's replies.
//!
//! `cargo test -p grayguard-e2e --test sidecar_compare -- --ignored --nocapture
//! client_latency_with_and_without_comparisons` prints gray's client latency with every frame
//! compared against none (a bounded benchmark; nothing is asserted on time).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use grayguard_client::exposition as prom;
use grayguard_contract::headers;
use grayguard_contract::metrics::sidecar as names;

use grayguard_e2e::paths::{self, WITH_PEOPLE, WITHOUT_PEOPLE};
use grayguard_e2e::sidecar::{READY_TIMEOUT, Sidecar, SidecarBuilder, agreement};
use grayguard_e2e::upstream::Upstream;
use grayguard_e2e::wait::eventually;

/// How long one comparison may take to be counted on a loaded 2-core machine.
const COMPARED_WITHIN: Duration = Duration::from_secs(60);

/// The gray sidecar serving `model` (the stable one when `None`), comparing every frame with
/// `stable_url`.
fn gray(version: &str, model: Option<PathBuf>, stable_url: &str, extra: &[&str]) -> SidecarBuilder {
    let mut b = SidecarBuilder::new(version)
        .flag("--compare-with", stable_url)
        .args(extra);
    if !extra.contains(&"--compare-percent") {
        b = b.flag("--compare-percent", "100");
    }
    match model {
        Some(m) => b.model(m),
        None => b,
    }
}

/// Starts every builder at once (their model loads overlap), then waits for each.
fn start_all(builders: Vec<SidecarBuilder>) -> Vec<Sidecar> {
    let mut all: Vec<Sidecar> = builders.into_iter().map(SidecarBuilder::spawn).collect();
    for sc in &mut all {
        sc.wait_ready(READY_TIMEOUT);
    }
    all
}

/// The value of `selector` in `sc`'s metrics (0 when the series does not exist yet).
fn metric(sc: &Sidecar, selector: &str) -> f64 {
    prom::value(&sc.metrics(), selector).unwrap_or(0.0)
}

/// Waits until `sc`'s `selector` reaches `want`.
fn wait_metric(sc: &Sidecar, selector: &str, want: f64, within: Duration) {
    eventually(&format!("{selector} ≥ {want}"), within, || {
        let v = metric(sc, selector);
        if v >= want { Ok(()) } else { Err(v) }
    });
}

/// Comparisons of `sc` that ended, with an agreement or without.
fn comparisons_ended(sc: &Sidecar) -> f64 {
    metric(sc, names::COMPARISONS_TOTAL) + metric(sc, names::COMPARISON_FAILURES_TOTAL)
}

/// Sends each photo to `gray` in turn, each once its previous comparison ended, and returns
/// each photo's agreement (from the header of the reply after it; the first reply's, a value
/// left from before, is not the photos'). Every reply is checked: 200, and as many boxes as
/// the JSON.
fn agreements(gray: &Sidecar, photos: &[&str]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut previous: Option<&str> = None;
    // One more reply at the end carries the last photo's value.
    for photo in photos.iter().copied().map(Some).chain([None]) {
        let ended = comparisons_ended(gray);
        let r = gray.infer_file(photo.unwrap_or("eagle.jpg"));
        assert_eq!(r.status, 200, "{}", r.text());
        let boxes = r.json()["boxes"].as_array().unwrap().len();
        assert_eq!(
            r.header(headers::BOX_COUNT),
            Some(boxes.to_string().as_str())
        );
        match (previous, agreement(&r)) {
            (Some(p), Some(v)) => out.push((p.to_string(), v)),
            (Some(p), None) => panic!("the reply after {p} carried no agreement"),
            (None, _) => {}
        }
        if photo.is_some() {
            eventually(&format!("{photo:?} compared"), COMPARED_WITHIN, || {
                comparisons_ended(gray) >= ended + 1.0
            });
        }
        previous = photo;
    }
    out
}

#[test]
fn a_class_swapped_gray_disagrees_where_there_are_people_and_an_a_a_gray_agrees_exactly() {
    let stable = SidecarBuilder::new("v9-prod").start();
    let url = stable.url("/infer");
    let grays = start_all(vec![
        gray("v10-swapped", Some(paths::class_swapped_model()), &url, &[]),
        gray("v10-same", None, &url, &[]),
    ]);
    let (swapped, same) = (&grays[0], &grays[1]);
    let photos: Vec<&str> = WITH_PEOPLE.iter().chain(&WITHOUT_PEOPLE).copied().collect();

    // Same boxes, same count, every class the other one.
    let s = stable.infer_file("person.jpg").json();
    let g = swapped.infer_file("person.jpg");
    wait_metric(swapped, names::COMPARISONS_TOTAL, 1.0, COMPARED_WITHIN);
    let g = g.json();
    let (s, g) = (
        s["boxes"].as_array().unwrap(),
        g["boxes"].as_array().unwrap(),
    );
    assert_eq!(s.len(), 2);
    assert_eq!(s.len(), g.len());
    for (s, g) in s.iter().zip(g) {
        assert_eq!(s["x1"], g["x1"]);
        assert_eq!(s["y2"], g["y2"]);
        assert_ne!(s["label"], g["label"]);
    }
    // That first comparison's value rides on the next reply.
    let r = swapped.infer_file("eagle.jpg");
    assert_eq!(agreement(&r), Some(0.0));
    wait_metric(swapped, names::COMPARISONS_TOTAL, 2.0, COMPARED_WITHIN);

    let values = agreements(swapped, &photos);
    eprintln!("class-swapped gray: {values:?}");
    assert_eq!(values.len(), photos.len());
    for (photo, v) in &values {
        if WITHOUT_PEOPLE.contains(&photo.as_str()) {
            assert_eq!(*v, 1.0, "{photo}: both find nothing");
        } else {
            assert_eq!(*v, 0.0, "{photo}: every box has the other class");
        }
    }
    let text = swapped.metrics();
    let confused = |s: &str, g: &str| {
        prom::value(
            &text,
            &format!(
                "{}{{stable_class=\"{s}\",gray_class=\"{g}\"}}",
                names::CLASS_CONFUSIONS_TOTAL
            ),
        )
        .unwrap_or(0.0)
    };
    let matched = |s: &str| {
        prom::value(
            &text,
            &format!(
                "{}{{stable_class=\"{s}\"}}",
                names::MATCHED_STABLE_BOXES_TOTAL
            ),
        )
        .unwrap_or(0.0)
    };
    // Every stable box was found in its place, each with the other class.
    assert!(confused("Normal", "Fall") >= 1.0 && confused("Fall", "Normal") >= 1.0);
    assert_eq!(
        confused("Normal", "Fall") + confused("Fall", "Normal"),
        matched("Normal") + matched("Fall")
    );
    assert_eq!(confused("Normal", "Normal") + confused("Fall", "Fall"), 0.0);

    let values = agreements(same, &photos);
    eprintln!("A/A gray: {values:?}");
    assert_eq!(values.len(), photos.len());
    assert!(values.iter().all(|(_, v)| *v == 1.0), "{values:?}");
    let text = same.metrics();
    assert_eq!(
        prom::value(&text, names::COMPARISON_FAILURES_TOTAL),
        Some(0.0)
    );
    assert_eq!(
        prom::value(&text, &format!("{}_sum", names::AGREEMENT)),
        prom::value(&text, &format!("{}_count", names::AGREEMENT))
    );

    // Stable served every comparison, and nothing of it is in its serving metrics.
    let compared =
        metric(swapped, names::COMPARISONS_TOTAL) + metric(same, names::COMPARISONS_TOTAL);
    let text = stable.metrics();
    assert_eq!(
        prom::value(
            &text,
            &format!("{}{{status=\"200\"}}", names::COMPARE_REQUESTS_TOTAL)
        ),
        Some(compared)
    );
    // Only the one request this test sent stable directly.
    assert_eq!(prom::value(&text, names::REQUESTS_TOTAL), Some(1.0));
    assert_eq!(
        prom::value(&text, &format!("{}_count", names::DETECTIONS_PER_IMAGE)),
        Some(1.0)
    );
}

/// Per photo, the F1 the Python reference pipeline and matcher (model_variants.py) measure
/// between `stable` and `gray`.
fn reference_agreements(stable: &Path, gray: &Path, photos: &[&str]) -> serde_json::Value {
    let out = Command::new(paths::python())
        .arg(paths::root().join("tests/reference/model_variants.py"))
        .args(["agreement", "--json", "--stable"])
        .arg(stable)
        .arg("--gray")
        .arg(gray)
        .args(photos.iter().map(|p| paths::image(p)))
        .output()
        .expect("run model_variants.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["photos"].clone()
}

#[test]
fn the_int8_gray_agrees_as_the_reference_measures_it() {
    let stable = SidecarBuilder::new("v9-prod").start();
    let int8 = paths::int8_model();
    let gray = gray("v10-int8", Some(int8.clone()), &stable.url("/infer"), &[]).start();
    let photos: Vec<&str> = WITH_PEOPLE.iter().chain(&WITHOUT_PEOPLE).copied().collect();
    let values = agreements(&gray, &photos);
    eprintln!("INT8 gray: {values:?}");
    let reference = reference_agreements(&paths::model(), &int8, &photos);
    assert_eq!(values.len(), photos.len());
    for (photo, v) in &values {
        let want = reference[photo.as_str()]["f1"].as_f64().unwrap();
        // The header rounds down to thousandths.
        assert!(
            *v <= want && want - v < 0.001,
            "{photo}: the sidecar measured {v}, the reference {want}"
        );
    }
}

#[test]
fn failed_comparisons_are_counted_by_reason_and_leave_gray_replies_alone() {
    let stable = SidecarBuilder::new("v9-prod").start();
    let refusing = Upstream::start("v9-prod-refusing");
    refusing.set_status(503);
    let down = format!(
        "http://127.0.0.1:{}/infer",
        grayguard_e2e::process::free_port()
    );
    let cases = [
        ("unreachable", down, vec![]),
        // A CPU model run takes a hundred milliseconds or more.
        (
            "timeout",
            stable.url("/infer"),
            vec!["--compare-timeout-ms", "5"],
        ),
        (
            "bad_status",
            format!("http://127.0.0.1:{}/infer", refusing.port()),
            vec![],
        ),
    ];
    let grays = start_all(
        cases
            .iter()
            .map(|(reason, url, extra)| gray(&format!("v10-{reason}"), None, url, extra))
            .collect(),
    );
    let want = stable.infer_file("person.jpg").json()["boxes"].clone();
    for ((reason, _, _), gray) in cases.iter().zip(&grays) {
        for n in 1..=3 {
            let r = gray.infer_file("person.jpg");
            assert_eq!(r.status, 200, "{reason}: {}", r.text());
            assert_eq!(r.header(headers::BOX_COUNT), Some("2"), "{reason}");
            assert_eq!(r.json()["boxes"], want, "{reason}");
            assert_eq!(agreement(&r), None, "{reason}");
            let selector = format!(
                "{}{{reason=\"{reason}\"}}",
                names::COMPARISON_FAILURES_TOTAL
            );
            wait_metric(gray, &selector, f64::from(n), COMPARED_WITHIN);
        }
        let text = gray.metrics();
        assert_eq!(
            prom::value(&text, names::COMPARISONS_TOTAL),
            Some(0.0),
            "{reason}"
        );
        assert_eq!(
            prom::value(&text, names::COMPARISON_FAILURES_TOTAL),
            Some(3.0),
            "{reason}"
        );
        assert_eq!(
            prom::value(&text, names::AGREEMENTS_PENDING),
            Some(0.0),
            "{reason}"
        );
        assert_eq!(
            prom::value(&text, &format!("{}_count", names::AGREEMENT)),
            Some(0.0),
            "{reason}"
        );
        // Gray's own serving metrics are its replies', comparisons or not.
        assert_eq!(
            prom::value(
                &text,
                &format!("{}{{status=\"200\"}}", names::REQUESTS_TOTAL)
            ),
            Some(3.0)
        );
        let log = gray.proc.log();
        assert_eq!(
            log.matches("comparisons with stable at").count(),
            1,
            "{reason}: one warning, not one per failure:\n{log}"
        );
    }
    // What a refusing stable was sent: the frame's bytes, marked as a comparison.
    let seen = refusing
        .last()
        .expect("the refusing stable saw the comparisons");
    assert_eq!(refusing.count(), 3);
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header(headers::COMPARE), Some("1"));
    assert_eq!(
        seen.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        seen.header("content-length"),
        Some(
            std::fs::metadata(paths::image("person.jpg"))
                .unwrap()
                .len()
                .to_string()
                .as_str()
        )
    );
}

/// Waits until `gray` has no comparison out.
fn settle(gray: &Sidecar) {
    eventually("no comparison in flight", COMPARED_WITHIN, || {
        metric(gray, names::COMPARISONS_IN_FLIGHT) == 0.0
    });
}

/// One client round trip to `gray`, ms.
fn round_trip(gray: &Sidecar, image: &[u8]) -> f64 {
    let t = Instant::now();
    let r = gray.infer(image, "image/jpeg");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(r.status, 200);
    ms
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Gray's client latency comparing every frame against comparing none, against a real
/// stable sidecar, one ONNX Runtime thread each, the two grays taking turns (their order
/// alternating) so that load from other work hits both. First one request at a time, each
/// comparison finished before the next request: the reply path alone. Then blocks of
/// requests back to back, each gray's comparisons running on stable while its next requests
/// are served: on one machine, they share its cores.
#[test]
#[ignore = "benchmark: prints ratios, asserts nothing on time"]
fn client_latency_with_and_without_comparisons() {
    const ROUNDS: usize = 20;
    const BLOCKS: usize = 6;
    const BLOCK: usize = 5;
    let stable = SidecarBuilder::new("v9-prod")
        .flag("--threads", "1")
        .start();
    let url = stable.url("/infer");
    let grays = start_all(vec![
        gray("v10-compare-100", None, &url, &["--threads", "1"]),
        gray(
            "v10-compare-0",
            None,
            &url,
            &["--threads", "1", "--compare-percent", "0"],
        ),
    ]);
    let image = std::fs::read(paths::image("person.jpg")).unwrap();
    let report = |label: &str, on: &mut Vec<f64>, off: &mut Vec<f64>, ratios: &mut Vec<f64>| {
        println!(
            "{label}: client p50 with every frame compared {:.1} ms, none {:.1} ms; paired median ratio {:.3}",
            median(on),
            median(off),
            median(ratios)
        );
    };

    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut times = [0.0; 2];
        for i in [round % 2, 1 - round % 2] {
            times[i] = round_trip(&grays[i], &image);
            settle(&grays[i]);
        }
        on.push(times[0]);
        off.push(times[1]);
        ratios.push(times[0] / times[1]);
    }
    report(
        &format!("one at a time, {ROUNDS} pairs"),
        &mut on,
        &mut off,
        &mut ratios,
    );

    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for block in 0..BLOCKS {
        let mut medians = [0.0; 2];
        for i in [block % 2, 1 - block % 2] {
            let mut times: Vec<f64> = (0..BLOCK).map(|_| round_trip(&grays[i], &image)).collect();
            settle(&grays[i]);
            medians[i] = median(&mut times);
        }
        on.push(medians[0]);
        off.push(medians[1]);
        ratios.push(medians[0] / medians[1]);
    }
    report(
        &format!("back to back, {BLOCKS} blocks of {BLOCK}"),
        &mut on,
        &mut off,
        &mut ratios,
    );
    println!(
        "comparisons made {}, stable served {}",
        metric(&grays[0], names::COMPARISONS_TOTAL),
        metric(
            &stable,
            &format!("{}{{status=\"200\"}}", names::COMPARE_REQUESTS_TOTAL)
        )
    );
}
