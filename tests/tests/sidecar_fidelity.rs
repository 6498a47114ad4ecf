//! The sidecar finds the same boxes as the model's own pipeline. The reference is
//! `tests/reference/yolo_reference.py`: Ultralytics' predictor written out with OpenCV and
//! onnxruntime (cv2.imread with EXIF orientation, LetterBox with cv2.resize INTER_LINEAR and
//! grey 114, /255, class-offset NMS, scale_boxes). Over every sample photo at several
//! confidence thresholds (one real sidecar each, with the same IoU threshold and max
//! detections as the reference), and photos whose EXIF orientation tag this test writes (at
//! the default threshold): the same number of boxes, the same classes, every box IoU >= 0.9
//! with its counterpart and scores within 0.02.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use grayguard_e2e::paths;
use grayguard_e2e::sidecar::SidecarBuilder;

/// Confidence thresholds compared (the sidecar default, a permissive and a strict one).
const CONFS: [&str; 3] = ["0.1", "0.25", "0.5"];
/// The threshold the EXIF-oriented photos are compared at (orientation does not interact
/// with the threshold; this keeps the test near 20 s on two cores).
const ORIENTED_CONF: &str = "0.25";
/// The sidecar's defaults, passed to the reference so both post-process alike.
const IOU: &str = "0.45";
const MAX_DET: &str = "300";
const MIN_IOU: f64 = 0.9;
const MAX_SCORE_DIFF: f64 = 0.02;

#[derive(Debug, Clone, Copy)]
struct Det {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
    score: f64,
    class_id: u64,
}

impl Det {
    fn from_json(b: &serde_json::Value) -> Det {
        let f = |k: &str| b[k].as_f64().unwrap_or_else(|| panic!("{k} in {b}"));
        Det {
            x1: f("x1"),
            y1: f("y1"),
            x2: f("x2"),
            y2: f("y2"),
            score: f("score"),
            class_id: b["class_id"].as_u64().unwrap(),
        }
    }

    fn iou(&self, o: &Det) -> f64 {
        let iw = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let ih = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        let inter = iw * ih;
        let area = |d: &Det| (d.x2 - d.x1).max(0.0) * (d.y2 - d.y1).max(0.0);
        let union = area(self) + area(o) - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// `jpeg` with its EXIF segments replaced by one whose Orientation tag is `tag`, as a camera
/// writes it (APP1 right after SOI, big-endian TIFF, IFD0 with the one entry).
fn with_orientation(jpeg: &[u8], tag: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], [0xFF, 0xD8], "a JPEG");
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
    tiff.extend_from_slice(&tag.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&(u16::try_from(tiff.len() + 8).unwrap()).to_be_bytes());
    out.extend_from_slice(b"Exif\x00\x00");
    out.extend_from_slice(&tiff);
    // Copy the other segments up to the scan, dropping the photo's own EXIF block.
    let mut i = 2;
    while jpeg[i] == 0xFF && jpeg[i + 1] != 0xDA {
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        let segment = &jpeg[i..i + 2 + len];
        if !(jpeg[i + 1] == 0xE1 && segment[4..].starts_with(b"Exif\x00\x00")) {
            out.extend_from_slice(segment);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpeg[i..]);
    out
}

/// The reference's boxes: image path → conf → boxes, and each image's upright size.
type Reference = BTreeMap<String, (u64, u64, BTreeMap<String, Vec<Det>>)>;

fn reference(photos: &[PathBuf]) -> Reference {
    let mut cmd = Command::new(paths::python());
    cmd.arg(paths::reference_pipeline())
        .arg("--model")
        .arg(paths::model())
        .args(["--iou", IOU, "--max-det", MAX_DET, "--threads", "2"]);
    for c in CONFS {
        cmd.args(["--conf", c]);
    }
    let out = cmd
        .args(photos)
        .output()
        .expect("run the reference pipeline");
    assert!(
        out.status.success(),
        "reference pipeline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["images"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, v)| {
            let per_conf = v["boxes"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(c, bs)| {
                    let dets = bs.as_array().unwrap().iter().map(Det::from_json).collect();
                    (c.clone(), dets)
                })
                .collect();
            let dims = (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap());
            (path.clone(), (dims.0, dims.1, per_conf))
        })
        .collect()
}

/// Compares one image's boxes; returns the worst (IoU, score difference) seen.
fn compare(what: &str, got: &[Det], want: &[Det]) -> (f64, f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: sidecar {got:?}\nreference {want:?}"
    );
    let mut used = vec![false; got.len()];
    let (mut worst_iou, mut worst_score) = (1.0f64, 0.0f64);
    for w in want {
        let (k, g) = got
            .iter()
            .enumerate()
            .filter(|(k, g)| !used[*k] && g.class_id == w.class_id)
            .max_by(|a, b| a.1.iou(w).total_cmp(&b.1.iou(w)))
            .unwrap_or_else(|| panic!("{what}: no sidecar box of class {} for {w:?}", w.class_id));
        used[k] = true;
        let iou = g.iou(w);
        let ds = (g.score - w.score).abs();
        assert!(
            iou >= MIN_IOU,
            "{what}: IoU {iou:.3} < {MIN_IOU}: {g:?} vs {w:?}"
        );
        assert!(
            ds <= MAX_SCORE_DIFF,
            "{what}: score {} vs {}",
            g.score,
            w.score
        );
        worst_iou = worst_iou.min(iou);
        worst_score = worst_score.max(ds);
    }
    (worst_iou, worst_score)
}

#[test]
fn boxes_match_the_reference_pipeline_on_every_photo_and_threshold() {
    let samples = paths::images();
    assert!(samples.len() >= 7, "the sample photos: {samples:?}");
    let mut photos = samples.clone();
    // Every EXIF orientation, written into a real photo (its pixels stay as stored; the tag
    // says how to turn them upright).
    let dir = tempfile::tempdir().unwrap();
    let person = std::fs::read(paths::image("person.jpg")).unwrap();
    for tag in 2..=8u16 {
        let path = dir.path().join(format!("person-orientation-{tag}.jpg"));
        std::fs::write(&path, with_orientation(&person, tag)).unwrap();
        photos.push(path);
    }
    let reference = reference(&photos);
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();

    // The tag is really applied by the reference: 5..8 turn 640x424 into 424x640.
    for tag in 2..=8u16 {
        let (w, h, _) = &reference[&dir
            .path()
            .join(format!("person-orientation-{tag}.jpg"))
            .to_string_lossy()
            .into_owned()];
        let want = if tag >= 5 { (424, 640) } else { (640, 424) };
        assert_eq!((*w, *h), want, "orientation {tag}");
    }

    let mut compared = 0;
    let (mut worst_iou, mut worst_score) = (1.0f64, 0.0f64);
    for conf in CONFS {
        let sc = SidecarBuilder::new("v-fidelity")
            .flag("--conf", conf)
            .flag("--iou", IOU)
            .flag("--max-det", MAX_DET)
            .flag("--max-body-bytes", "4000000")
            .flag("--watchdog-latency-budget-ms", "60000")
            .start();
        let set = if conf == ORIENTED_CONF {
            &photos
        } else {
            &samples
        };
        for photo in set {
            let key = photo.to_string_lossy().into_owned();
            let (_, _, per_conf) = &reference[&key];
            let want = &per_conf[&conf.parse::<f64>().unwrap().to_string()];
            let r = sc.infer(&std::fs::read(photo).unwrap(), "image/jpeg");
            assert_eq!(r.status, 200, "{}: {}", name(photo), r.text());
            let got: Vec<Det> = r.json()["boxes"]
                .as_array()
                .unwrap()
                .iter()
                .map(Det::from_json)
                .collect();
            let what = format!("{} at conf {conf}", name(photo));
            let (i, s) = compare(&what, &got, want);
            worst_iou = worst_iou.min(i);
            worst_score = worst_score.max(s);
            compared += want.len();
        }
    }
    // Not vacuous: the photos hold people, upright and turned.
    assert!(compared >= 20, "only {compared} boxes compared");
    println!(
        "{} photos x {} thresholds + {} oriented photos, {compared} boxes: worst IoU {worst_iou:.4}, worst score difference {worst_score:.4}",
        samples.len(),
        CONFS.len(),
        photos.len() - samples.len()
    );
}
