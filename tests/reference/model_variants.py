"""Gray versions of the shipped model for trying grayguard's agreement signal, made offline
from the model itself (ONNX edits and onnxruntime's quantizer, no download), and the measure
of how far a version agrees with the model it would replace.

    model_variants.py class-swapped IN.onnx OUT.onnx
        the same graph with its two class scores swapped: a Gather on output0's axis 1 with
        indices [0, 1, 2, 3, 5, 4]. Same boxes, same counts, same latency; every `Normal` is
        answered as `Fall` and the other way round (a dataset file that lists the classes in
        another order).

    model_variants.py int8 [--whole-graph] IN.onnx OUT.onnx IMAGE...
        the model quantized to INT8 for speed: static QDQ quantization (onnxruntime's
        quantize_static, per-channel signed weights, unsigned activations, MinMax
        calibration) calibrated on the letterboxed IMAGEs, with the detection head's decoding
        (the nodes of the last module after its convolutions: DFL, box decoding, the class
        sigmoid, the concatenations) kept in float, as quantization recipes for YOLO do.
        --whole-graph quantizes those too: the last Concat then carries pixel coordinates
        (0-640) and class scores (0-1) on one INT8 scale, and the scores are lost.

    model_variants.py agreement --stable A.onnx --gray B.onnx [--conf 0.25] [--json] IMAGE...
        runs both models through the reference pipeline (yolo_reference.py) on every IMAGE
        and prints, per image and in all, the agreement grayguard's sidecar computes (see
        sidecar/README.md, "Comparison"): class-aware greedy matching at IoU >= 0.5,
        F1 = 2 matched / (stable boxes + gray boxes) (1 when both are empty), the shares of
        stable's boxes gray missed and of gray's boxes stable did not have, and the class
        confusions among boxes matched by position only. Written independently of the
        sidecar's Rust, so each checks the other (tests/tests/sidecar_compare.rs reads
        --json: {"photos": {NAME: {"stable", "gray", "matched", "f1"}}}).
"""

import argparse
import ast
import json
import os
import sys

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yolo_reference as ref  # noqa: E402

MATCH_IOU = 0.5
SWAP = [0, 1, 2, 3, 5, 4]


def class_swapped(src, dst):
    model = onnx.load(src)
    g = model.graph
    out = g.output[0]
    dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    if len(dims) != 3 or dims[1] != len(SWAP):
        sys.exit(f"{out.name}: shape {dims}, expected [1, {len(SWAP)}, N] (4 box values + 2 classes)")
    inner = out.name + "_unswapped"
    for node in g.node:
        for i, name in enumerate(node.output):
            if name == out.name:
                node.output[i] = inner
    indices = helper.make_tensor("class_swap_indices", TensorProto.INT64, [len(SWAP)], SWAP)
    g.initializer.append(indices)
    g.node.append(helper.make_node("Gather", [inner, indices.name], [out.name], axis=1,
                                   name="class_swap"))
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    print(f"{dst}: class scores swapped (Gather {SWAP} on {out.name} axis 1)")


class Photos:
    """onnxruntime's CalibrationDataReader over letterboxed photos (duck-typed: get_next)."""

    def __init__(self, input_name, shape, paths):
        self.items = iter([{input_name: ref.to_tensor(ref.letterbox(read(p), shape))} for p in paths])

    def get_next(self):
        return next(self.items, None)


def read(path):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        sys.exit(f"cannot read {path}")
    return img


def head_decoding(graph):
    """The detection head's decoding: nodes of the last module that are not in its conv
    branches (Ultralytics names them /model.N/cv2..., /model.N/cv3...)."""
    last = max((n.name.split("/")[1] for n in graph.node if n.name.startswith("/model.")),
               key=lambda m: int(m.split(".")[1]))
    prefix = f"/{last}/"
    return [n.name for n in graph.node
            if n.name.startswith(prefix) and not n.name.startswith(prefix + "cv")]


def int8(src, dst, images, whole_graph):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst + ".pre.onnx"
    quant_pre_process(src, pre, skip_symbolic_shape=True)
    sess = ort.InferenceSession(pre, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    exclude = [] if whole_graph else head_decoding(onnx.load(pre).graph)
    try:
        quantize_static(pre, dst, Photos(inp.name, tuple(inp.shape[2:]), images),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude)
    finally:
        os.remove(pre)
    # The quantizer keeps the graph's metadata (class names, input size) as it was.
    names = {p.key for p in onnx.load(dst).metadata_props}
    if "names" not in names:
        sys.exit(f"{dst}: the quantizer dropped the model's metadata")
    kept = f"{len(exclude)} head decoding node(s) kept in float" if exclude else "whole graph"
    print(f"{dst}: INT8 (QDQ, per-channel, {kept}), calibrated on {len(images)} photo(s)")


def detect(sess, path, conf):
    """(class_id, x1, y1, x2, y2) per box of the reference pipeline, in original pixels."""
    inp = sess.get_inputs()[0]
    shape = tuple(inp.shape[2:])
    img = read(path)
    pred = sess.run(None, {inp.name: ref.to_tensor(ref.letterbox(img, shape))})[0][0]
    det = ref.non_max_suppression(pred, conf, 0.45, 300)
    boxes = ref.scale_boxes(shape, det, img.shape[:2])
    return [(int(d[5]), *map(float, b)) for b, d in zip(boxes, det)]


def iou(a, b):
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    ih = max(0.0, min(a[4], b[4]) - max(a[2], b[2]))
    inter = iw * ih
    union = (a[3] - a[1]) * (a[4] - a[2]) + (b[3] - b[1]) * (b[4] - b[2]) - inter
    return inter / union if union > 0 else 0.0


def greedy(stable, gray, same_class, taken_s, taken_g):
    """Pairs (i, j) by descending IoU >= MATCH_IOU among boxes not yet taken."""
    pairs = sorted(((iou(s, g), i, j) for i, s in enumerate(stable) for j, g in enumerate(gray)
                    if i not in taken_s and j not in taken_g
                    and (not same_class or s[0] == g[0])), key=lambda p: (-p[0], p[1], p[2]))
    out = []
    for v, i, j in pairs:
        if v >= MATCH_IOU and i not in taken_s and j not in taken_g:
            taken_s.add(i)
            taken_g.add(j)
            out.append((i, j, v))
    return out


def agree(stable, gray):
    taken_s, taken_g = set(), set()
    same = greedy(stable, gray, True, taken_s, taken_g)
    matched = len(same)
    confused = greedy(stable, gray, False, taken_s, taken_g)
    total = len(stable) + len(gray)
    return {
        "f1": 1.0 if total == 0 else 2 * matched / total,
        "missed": (len(stable) - matched) / len(stable) if stable else 0.0,
        "extra": (len(gray) - matched) / len(gray) if gray else 0.0,
        "matched": matched,
        "ious": [v for _, _, v in same],
        "confusions": [(stable[i][0], gray[j][0]) for i, j, _ in confused],
        "counts": (len(stable), len(gray)),
    }


def agreement(a):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    sessions = [ort.InferenceSession(m, opts, providers=["CPUExecutionProvider"])
                for m in (a.stable, a.gray)]
    if a.json:
        photos = {}
        for path in a.images:
            r = agree(*(detect(s, path, a.conf) for s in sessions))
            photos[os.path.basename(path)] = {"stable": r["counts"][0], "gray": r["counts"][1],
                                              "matched": r["matched"], "f1": r["f1"]}
        json.dump({"photos": photos}, sys.stdout)
        return
    meta = {p.key: p.value for p in onnx.load(a.stable).metadata_props}
    names = ast.literal_eval(meta["names"])
    print(f"stable {os.path.basename(a.stable)} vs gray {os.path.basename(a.gray)}, conf {a.conf}, "
          f"match IoU >= {MATCH_IOU}")
    print(f"{'photo':<12} {'stable':>6} {'gray':>4} {'matched':>7} {'IoU':>5} {'F1':>6} {'missed':>6} "
          f"{'extra':>6}  confusions (stable->gray)")
    rows = []
    for path in a.images:
        r = agree(*(detect(s, path, a.conf) for s in sessions))
        rows.append(r)
        print(line(os.path.basename(path), r, names))
    pooled = agree_totals(rows)
    print(line("all", pooled, names))
    f1 = [r["f1"] for r in rows]
    print(f"mean per-photo F1 {np.mean(f1):.3f}, lowest {min(f1):.3f}")


def agree_totals(rows):
    """The rows pooled: every box of every photo in one count."""
    s = sum(r["counts"][0] for r in rows)
    g = sum(r["counts"][1] for r in rows)
    m = sum(r["matched"] for r in rows)
    return {
        "f1": 1.0 if s + g == 0 else 2 * m / (s + g),
        "missed": (s - m) / s if s else 0.0,
        "extra": (g - m) / g if g else 0.0,
        "matched": m,
        "ious": [v for r in rows for v in r["ious"]],
        "confusions": [c for r in rows for c in r["confusions"]],
        "counts": (s, g),
    }


def line(name, r, names):
    iou_text = f"{np.mean(r['ious']):.3f}" if r["ious"] else "-"
    counted = {}
    for s, g in r["confusions"]:
        key = f"{names[s]}->{names[g]}"
        counted[key] = counted.get(key, 0) + 1
    confusions = ", ".join(f"{k} x{v}" for k, v in sorted(counted.items())) or "-"
    return (f"{name:<12} {r['counts'][0]:>6} {r['counts'][1]:>4} {r['matched']:>7} {iou_text:>5} "
            f"{r['f1']:>6.3f} {r['missed']:>6.3f} {r['extra']:>6.3f}  {confusions}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("class-swapped")
    p.add_argument("src")
    p.add_argument("dst")
    p = sub.add_parser("int8")
    p.add_argument("--whole-graph", action="store_true")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("images", nargs="+")
    p = sub.add_parser("agreement")
    p.add_argument("--stable", required=True)
    p.add_argument("--gray", required=True)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="per-photo counts and F1 as JSON")
    p.add_argument("images", nargs="+")
    a = ap.parse_args()
    if a.cmd == "class-swapped":
        class_swapped(a.src, a.dst)
    elif a.cmd == "int8":
        int8(a.src, a.dst, a.images, a.whole_graph)
    else:
        agreement(a)


if __name__ == "__main__":
    main()
