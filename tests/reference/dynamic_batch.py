"""Derives a dynamic-batch variant of a fixed-batch Ultralytics ONNX export (same graph, same
weights) for the sidecar's batching tests: the input's and output's batch dimension becomes the
symbol `batch`, and every Reshape target that hard-codes the batch as a leading 1 gets 0
("copy this dimension from the input", ONNX Reshape without allowzero), which is what an export
with dynamic=True writes for those nodes.

    dynamic_batch.py IN.onnx OUT.onnx
"""

import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main():
    src, dst = sys.argv[1], sys.argv[2]
    model = onnx.load(src)
    g = model.graph
    for value in list(g.input) + list(g.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_value != 1:
            sys.exit(f"{value.name}: batch dimension is {dim}, expected a fixed 1")
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    # Intermediate shapes recorded at export time carry the fixed batch; let the runtime
    # infer them again.
    del g.value_info[:]

    targets = {n.input[1] for n in g.node if n.op_type == "Reshape"}
    constants = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    changed = 0
    for init in g.initializer:
        if init.name in targets:
            shape = numpy_helper.to_array(init).copy()
            if shape.ndim == 1 and shape.size > 1 and shape[0] == 1:
                shape[0] = 0
                init.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), init.name))
                changed += 1
    for name in targets & constants.keys():
        attr = constants[name].attribute[0]
        shape = numpy_helper.to_array(attr.t).copy()
        if shape.ndim == 1 and shape.size > 1 and shape[0] == 1:
            shape[0] = 0
            attr.t.CopyFrom(numpy_helper.from_array(shape.astype(np.int64)))
            changed += 1
    if not changed:
        sys.exit("no Reshape with a leading batch of 1 found: not an Ultralytics detection export?")
    for prop in model.metadata_props:
        if prop.key == "batch":
            prop.value = "-1"
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    print(f"{dst}: batch axis dynamic, {changed} Reshape target(s) rewritten")


if __name__ == "__main__":
    main()
