"""Reference YOLO model server in Python: Flask + onnxruntime, with the pre- and
post-processing written the way such servers usually are (PIL decode, numpy letterbox,
numpy NMS). The sidecar benchmark compares grayguard-sidecar against it on the same model,
image and thread count.

    reference_server.py --model M --port P --threads T      serve POST /infer
    reference_server.py --model M --once IMAGE               print the boxes of one image
    reference_server.py --model M --bare N --image IMAGE     time N bare session runs
"""

import argparse
import ast
import io
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from PIL import Image


def load(model, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    names = ast.literal_eval(meta.get("names", "{}"))
    h, w = sess.get_inputs()[0].shape[2:]
    return sess, names, (h, w)


def letterbox(img, size):
    """PIL image -> (1,3,H,W) float32, scale, left, top (Ultralytics geometry)."""
    w0, h0 = img.size
    r = min(size[0] / h0, size[1] / w0)
    nw, nh = int(round(w0 * r)), int(round(h0 * r))
    if (nw, nh) != (w0, h0):
        img = img.resize((nw, nh), Image.BILINEAR)
    top = int(round((size[0] - nh) / 2 - 0.1))
    left = int(round((size[1] - nw) / 2 - 0.1))
    canvas = np.full((size[0], size[1], 3), 114, dtype=np.uint8)
    canvas[top:top + nh, left:left + nw] = np.asarray(img)
    x = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(x), r, left, top


def nms(boxes, scores, iou):
    order = scores.argsort()[::-1]
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        ious = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[ious <= iou]
    return np.array(keep, dtype=np.int64)


def postprocess(out, conf, iou, r, left, top, w0, h0, names, max_det=300):
    p = out[0]  # (4 + C, N)
    cls_scores = p[4:]
    cls = cls_scores.argmax(0)
    score = cls_scores.max(0)
    m = score > conf
    b, score, cls = p[:4, m].T, score[m], cls[m]
    xyxy = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,
                     b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
    # Class-wise NMS with the usual offset trick.
    keep = nms(xyxy + cls[:, None] * 7680.0, score, iou)[:max_det]
    xyxy = (xyxy[keep] - np.array([left, top, left, top])) / r
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w0)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h0)
    return [
        {"x1": round(float(a), 2), "y1": round(float(b_), 2), "x2": round(float(c), 2),
         "y2": round(float(d), 2), "score": round(float(s), 4), "class_id": int(k),
         "label": names.get(int(k), str(k))}
        for (a, b_, c, d), s, k in zip(xyxy, score[keep], cls[keep])
    ]


def detect(sess, names, size, data, conf, iou):
    t0 = time.perf_counter()
    img = Image.open(io.BytesIO(data)).convert("RGB")
    x, r, left, top = letterbox(img, size)
    t1 = time.perf_counter()
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    t2 = time.perf_counter()
    boxes = postprocess(out, conf, iou, r, left, top, img.size[0], img.size[1], names)
    t3 = time.perf_counter()
    return boxes, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--once")
    ap.add_argument("--bare", type=int)
    ap.add_argument("--image")
    a = ap.parse_args()
    sess, names, size = load(a.model, a.threads)

    if a.once:
        boxes, *_ = detect(sess, names, size, open(a.once, "rb").read(), a.conf, a.iou)
        print(json.dumps(boxes))
        return
    if a.bare:
        x, *_ = letterbox(Image.open(a.image).convert("RGB"), size)
        name = sess.get_inputs()[0].name
        for _ in range(3):
            sess.run(None, {name: x})
        times = []
        for _ in range(a.bare):
            t = time.perf_counter()
            sess.run(None, {name: x})
            times.append((time.perf_counter() - t) * 1e3)
        print(json.dumps(times))
        return

    app = Flask("reference")

    @app.post("/infer")
    def infer():
        data = request.files["image"].read() if "image" in request.files else request.get_data()
        try:
            boxes, pre, inf, post, t0 = detect(sess, names, size, data, a.conf, a.iou)
        except Exception as e:  # noqa: BLE001 - the usual catch-all of such servers
            return jsonify(error=str(e)), 400
        return jsonify(model_version="reference", boxes=boxes, preprocess_ms=pre,
                       inference_ms=inf, nms_ms=post,
                       latency_ms=(time.perf_counter() - t0) * 1e3)

    @app.get("/ready")
    def ready():
        return jsonify(status="ready")

    # Warm-up, as the sidecar does.
    blank = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 90, 90)).save(blank, format="JPEG")
    for _ in range(3):
        detect(sess, names, size, blank.getvalue(), a.conf, a.iou)
    app.run(host="127.0.0.1", port=a.port, threaded=True)


if __name__ == "__main__":
    sys.exit(main())
