"""Derives a model that really hangs from an Ultralytics detection export, for the sidecar's
hang-detection test: the same graph, weights, input, output and metadata, with a Loop in front
of the network whose trip count is 0 for any ordinary frame and 2**62 for a black one (mean
input below 0.02 after letterboxing, e.g. a square all-black image). So the sidecar loads it,
warms up and serves photos as usual, and the first black frame starts a model run that never
ends (ONNX Runtime cannot cancel it): the inference thread is stuck, as in a deadlock.

    hang_model.py IN.onnx OUT.onnx

The Loop carries a counter that feeds the network's input (`images + 0 * counter`), so no
optimiser can drop it.
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Mean of the letterboxed input below which a frame hangs the model.
DARK = 0.02
# Trip count of the hanging run: at a microsecond an iteration, about 146,000 years.
FOREVER = 2**62


def main():
    src, dst = sys.argv[1], sys.argv[2]
    model = onnx.load(src)
    g = model.graph
    if len(g.input) != 1:
        sys.exit(f"{src}: expected one input, found {len(g.input)}")
    images = g.input[0].name
    gated = f"{images}_after_hang_gate"
    for node in g.node:
        node.input[:] = [gated if name == images else name for name in node.input]

    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["count_in", "one"], ["count_out"]),
        ],
        "hang_gate_body",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("count_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("count_out", TensorProto.FLOAT, []),
        ],
        [numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")],
    )
    constants = {
        "hang_gate_dark": np.array(DARK, dtype=np.float32),
        "hang_gate_forever": np.array(FOREVER, dtype=np.int64),
        "hang_gate_never": np.array(0, dtype=np.int64),
        "hang_gate_true": np.array(True, dtype=np.bool_),
        "hang_gate_zero": np.array(0.0, dtype=np.float32),
    }
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    gate = [
        helper.make_node("ReduceMean", [images], ["hang_gate_mean"], keepdims=0),
        helper.make_node("Less", ["hang_gate_mean", "hang_gate_dark"], ["hang_gate_is_dark"]),
        helper.make_node(
            "Where", ["hang_gate_is_dark", "hang_gate_forever", "hang_gate_never"], ["hang_gate_trips"]
        ),
        helper.make_node(
            "Loop", ["hang_gate_trips", "hang_gate_true", "hang_gate_zero"], ["hang_gate_count"], body=body
        ),
        helper.make_node("Mul", ["hang_gate_count", "hang_gate_zero"], ["hang_gate_nothing"]),
        helper.make_node("Add", [images, "hang_gate_nothing"], [gated]),
    ]
    nodes = gate + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    model.metadata_props.append(
        onnx.StringStringEntryProto(key="grayguard_hang", value=f"input mean < {DARK}: a Loop of {FOREVER} trips")
    )
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    print(f"{dst}: hangs on frames with a mean input below {DARK}")


if __name__ == "__main__":
    main()
