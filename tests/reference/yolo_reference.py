"""Reference YOLO detection pipeline: the pre- and post-processing of Ultralytics' predictor,
written out with OpenCV, numpy and onnxruntime, so grayguard-sidecar's boxes can be checked
against what a team validating the model offline would get.

What it does, step by step, as Ultralytics does it for an ONNX detection export:
  * cv2.imread: libjpeg-turbo / libpng decoding, EXIF orientation applied, BGR uint8;
  * LetterBox: r = min(H/h, W/w); new size (round(w*r), round(h*r)); cv2.resize INTER_LINEAR
    (uint8 in, uint8 out) when the size changes; pad top/bottom = round(dh -/+ 0.1),
    left/right = round(dw -/+ 0.1) with (114, 114, 114);
  * BGR -> RGB, HWC -> CHW, float32 / 255;
  * non_max_suppression: best class per anchor, score > conf, at most max_nms candidates by
    score, class-offset boxes (class * 7680), greedy NMS dropping IoU > iou, at most max_det;
  * scale_boxes: gain and padding recomputed from the shapes, boxes clipped to the image.

    yolo_reference.py --model M [--conf 0.25 ...] [--iou 0.45] [--max-det 300] IMAGE...

prints one JSON object: {"images": {IMAGE: {"width": w, "height": h, "boxes": {CONF: [...]}}}}
with boxes as {"x1","y1","x2","y2","score","class_id"} in original-image pixels, best first.
"""

import argparse
import json
import sys

import cv2
import numpy as np
import onnxruntime as ort

PAD = (114, 114, 114)
MAX_WH = 7680  # class offset of the batched NMS (Ultralytics' max_wh)
MAX_NMS = 30000  # most candidates that enter NMS


def letterbox(img, new_shape):
    """BGR uint8 HWC -> letterboxed BGR uint8 of `new_shape` (h, w)."""
    h, w = img.shape[:2]
    r = min(new_shape[0] / h, new_shape[1] / w)
    new_unpad = int(round(w * r)), int(round(h * r))
    dw, dh = (new_shape[1] - new_unpad[0]) / 2, (new_shape[0] - new_unpad[1]) / 2
    if (w, h) != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=PAD)


def to_tensor(canvas):
    """Letterboxed BGR uint8 HWC -> (1, 3, H, W) float32 RGB in 0..1."""
    x = canvas[..., ::-1].transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x).astype(np.float32) / 255.0


def greedy_nms(boxes, scores, iou):
    """Indices kept by greedy NMS, best first; a box goes when its IoU with a kept one is
    greater than `iou` (torchvision's rule)."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        ious = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = rest[ious <= iou]
    return np.asarray(keep, dtype=np.int64)


def non_max_suppression(pred, conf, iou, max_det):
    """pred: (4 + C, N) of one image -> (k, 6) x1, y1, x2, y2, score, class."""
    p = pred.T  # (N, 4 + C)
    cls_scores = p[:, 4:]
    score = cls_scores.max(1)
    cls = cls_scores.argmax(1)
    m = score > conf
    xywh, score, cls = p[m, :4], score[m], cls[m]
    xyxy = np.empty_like(xywh)
    xyxy[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
    xyxy[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
    xyxy[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
    xyxy[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
    if score.size > MAX_NMS:
        top = np.argsort(-score, kind="stable")[:MAX_NMS]
        xyxy, score, cls = xyxy[top], score[top], cls[top]
    keep = greedy_nms(xyxy + cls[:, None].astype(np.float32) * MAX_WH, score, iou)[:max_det]
    return np.concatenate([xyxy[keep], score[keep, None], cls[keep, None].astype(np.float32)], 1)


def scale_boxes(canvas_shape, det, image_shape):
    """Boxes on the canvas -> original-image pixels, clipped (Ultralytics' scale_boxes)."""
    gain = min(canvas_shape[0] / image_shape[0], canvas_shape[1] / image_shape[1])
    pad_x = round((canvas_shape[1] - image_shape[1] * gain) / 2 - 0.1)
    pad_y = round((canvas_shape[0] - image_shape[0] * gain) / 2 - 0.1)
    b = det[:, :4].copy()
    b[:, [0, 2]] -= pad_x
    b[:, [1, 3]] -= pad_y
    b /= gain
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, image_shape[1])
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, image_shape[0])
    return b


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--conf", type=float, action="append", help="repeatable (default 0.25)")
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--max-det", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    confs = a.conf or [0.25]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    canvas_shape = tuple(inp.shape[2:])

    out = {}
    for path in a.images:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            sys.exit(f"cannot read {path}")
        canvas = letterbox(img, canvas_shape)
        pred = sess.run(None, {inp.name: to_tensor(canvas)})[0][0]
        per_conf = {}
        for conf in confs:
            det = non_max_suppression(pred, conf, a.iou, a.max_det)
            boxes = scale_boxes(canvas_shape, det, img.shape[:2])
            per_conf[str(conf)] = [
                {"x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]), "y2": float(b[3]),
                 "score": float(d[4]), "class_id": int(d[5])}
                for b, d in zip(boxes, det)
            ]
        out[path] = {"width": img.shape[1], "height": img.shape[0], "boxes": per_conf}
    json.dump({"images": out}, sys.stdout)


if __name__ == "__main__":
    main()
