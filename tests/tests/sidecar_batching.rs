//! Dynamic batching on the CPU with the real model: the bundled export has a fixed batch of 1,
//! so `make setup` derives a variant of the same model with a dynamic batch axis (same graph,
//! same weights: `tests/reference/dynamic_batch.py`). Concurrent requests share model runs
//! (`batch_size` in the JSON and the `grayguard_sidecar_batch_size` histogram) and get the
//! boxes each image gets alone; the fixed-batch model never batches.

use grayguard_client::exposition;
use grayguard_e2e::http;
use grayguard_e2e::paths;
use grayguard_e2e::sidecar::SidecarBuilder;

const PHOTOS: [&str; 4] = ["person.jpg", "dog.jpg", "horses.jpg", "kite.jpg"];

fn boxes(r: &http::Response) -> Vec<(u64, [f64; 5])> {
    r.json()["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let f = |k: &str| b[k].as_f64().unwrap();
            (
                b["class_id"].as_u64().unwrap(),
                [f("x1"), f("y1"), f("x2"), f("y2"), f("score")],
            )
        })
        .collect()
}

#[test]
fn concurrent_requests_share_model_runs_and_get_their_own_boxes() {
    let sc = SidecarBuilder::new("v-batch")
        .model(paths::dynamic_batch_model())
        .flag("--max-batch", "4")
        // Long enough that four simultaneous clients on a busy 2-core machine all arrive
        // inside the first one's wait; a lone request pays it too, which this test accepts.
        .env("GRAYGUARD_SIDECAR_BATCH_WAIT_US", "400000")
        .flag("--max-body-bytes", "4000000")
        .flag("--watchdog-latency-budget-ms", "60000")
        .start();
    assert!(
        sc.proc
            .log()
            .contains("dynamic batching: up to 4 images per run"),
        "{}",
        sc.proc.log()
    );
    let images: Vec<Vec<u8>> = PHOTOS
        .iter()
        .map(|p| std::fs::read(paths::image(p)).unwrap())
        .collect();

    // Each image alone (one request at a time): a batch of one.
    let alone: Vec<_> = images
        .iter()
        .map(|img| {
            let r = sc.infer(img, "image/jpeg");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["batch_size"], 1);
            boxes(&r)
        })
        .collect();

    // All four at once, twice: they share runs.
    let url = sc.url("/infer");
    let mut batched_requests = 0;
    for round in 0..2 {
        let replies: Vec<http::Response> = std::thread::scope(|s| {
            let handles: Vec<_> = images
                .iter()
                .map(|img| s.spawn(|| http::post(&url, &[("content-type", "image/jpeg")], img)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().expect("answered"))
                .collect()
        });
        for ((r, want), photo) in replies.iter().zip(&alone).zip(PHOTOS) {
            assert_eq!(r.status, 200, "{}", r.text());
            let batch = r.json()["batch_size"].as_u64().unwrap();
            assert!((1..=4).contains(&batch), "{photo}: batch {batch}");
            if batch > 1 {
                batched_requests += 1;
            }
            // The same boxes as alone (a batched convolution may differ in the last bits).
            let got = boxes(r);
            assert_eq!(
                got.len(),
                want.len(),
                "round {round}, {photo}: {got:?} vs {want:?}"
            );
            for ((gc, g), (wc, w)) in got.iter().zip(want) {
                assert_eq!(gc, wc, "{photo}");
                for (a, b) in g.iter().zip(w) {
                    assert!((a - b).abs() <= 0.05, "{photo}: {g:?} vs {w:?}");
                }
            }
        }
    }
    assert!(
        batched_requests >= 4,
        "concurrent requests were batched only {batched_requests} times"
    );
    let text = sc.metrics();
    let n = exposition::value(&text, "grayguard_sidecar_batch_size_count").unwrap();
    let sum = exposition::value(&text, "grayguard_sidecar_batch_size_sum").unwrap();
    assert_eq!(n, 12.0, "every success observed once");
    assert!(sum > n, "mean batch above 1: {sum} / {n}");
}

#[test]
fn a_fixed_batch_model_runs_one_image_at_a_time() {
    let sc = SidecarBuilder::new("v-fixed")
        .flag("--max-batch", "4")
        .flag("--batch-wait-us", "200000")
        .flag("--watchdog-latency-budget-ms", "60000")
        .start();
    assert!(
        sc.proc.log().contains("fixed batch of 1"),
        "{}",
        sc.proc.log()
    );
    let url = sc.url("/infer");
    let image = std::fs::read(paths::image("person.jpg")).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| http::post(&url, &[("content-type", "image/jpeg")], &image)))
            .collect();
        for h in handles {
            let r = h.join().unwrap().unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["batch_size"], 1);
        }
    });
}
