#!/usr/bin/env python3
"""Makes the INT8 models with ONNX Runtime's static quantisation and a sidecar JSON each
(settings, calibration inputs, sha256 of source and result):

- `--target detector`: `models/yolov8n.int8.onnx` from the FP32 `models/yolov8n.onnx`,
  calibrated on fixed frames of the sample video;
- `--target plate`: `models/plate_detector_yolov8s_seg.int8.onnx` from the plate detector (an
  FP16 file, widened to FP32 first: ORT quantises float32 graphs), calibrated on fixed crops of
  the sample car photo (`car_plate_cz_5AU5341.png`), the vehicle crops the ANPR stage feeds it;
- `--target all` (default, what scripts/setup.sh runs): both.

    quantize.py [--target detector|plate|all] [--model M] [--out O] [--force]
                [--video .local/media/vtest_pedestrians_768x576.mp4]
                [--image .local/media/car_plate_cz_5AU5341.png]
                [--activation uint8|int8] [--frames N] [--method minmax|entropy|percentile]
                [--check]

(`--model`/`--out` only with one target; `--check` quantises nothing and exits 1 when an output
is missing or not current, without reading any media: the Dockerfile fetches the media only then.)

Idempotent: when the sidecar names the same source sha256 and settings and the output exists,
nothing is done (scripts/setup.sh runs it on every setup). Reproducible: the calibration frames
are fixed indices of the sample video, letterboxed exactly like the service (640x640, grey 114
centred, BGR -> RGB, /255, NCHW float32; src/infer/letterbox.rs), and the calibration is
deterministic, so the same inputs give the same file.

Why percentile: with MinMax the INT8 model found every FP32 box, but on a brightened, mirrored,
upscaled re-encode of the video it also pushed 15 of 253 boxes whose FP32 confidence was just
under 0.5 over it (precision 0.94); percentile calibration, which clips the rare outliers that
stretch MinMax's scales, gave 0.979 there and 0.99 on the held-out frames (docs/int8.md). Keeping
also the branches' last convs in float (`--head decode+outputs`) changed nothing measurable.

Settings (docs/int8.md says why): QDQ format, per-channel QInt8 weights, QUInt8 activations
(measured as fast as QInt8 on this CPU's VNNI and the usual u8s8 path of ORT's x86 kernels),
Percentile calibration (ORT's default 99.999th percentile of |x|) on 30 frames; the detection head's decode (everything in `/model.22/` after
its last convolutions: the DFL softmax and conv, the reshapes, the box arithmetic, the class
sigmoid and the final Concat) stays float, since it computes coordinates in pixels and scores
in 0..1 whose ranges int8 would flatten. The batch axis stays dynamic, as in the FP32 model.

Calibration uses only the sample media under .local/media (never ../shared/acceptance). The
frames held out for the agreement test (tests/int8.rs) are the video's other frames; for the
plate detector the test uses other views of the photo (rotated, blurred, noisy, re-encoded,
smaller) and the plate videos the ANPR tests make.

The plate detector ran 2.8x as fast in INT8 as its FP16 file on one core of this project's
2-core VNNI machine (382 -> 135 ms a crop; ORT's CPU provider computes an FP16 graph in FP32
through casts, so FP16 saves nothing there); docs/int8.md has the figures.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import cv2
import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETECTOR = ("models/yolov8n.onnx", "models/yolov8n.int8.onnx")
PLATE = ("models/plate_detector_yolov8s_seg.onnx", "models/plate_detector_yolov8s_seg.int8.onnx")
# 30 fixed frames, every 26th of the 795-frame sample video starting at 0. The agreement test
# uses frames 13 + 26k (and other clips), none of which is here.
CALIBRATION_STRIDE = 26
SCRIPT_VERSION = 1


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def letterbox(img, size=640):
    """The service's letterbox (src/infer/letterbox.rs; tests/reference_detect.py)."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (size - nw) / 2, (size - nh) / 2
    if (w, h) != (nw, nh):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32) / 255.0


def read_frames(video, indices):
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        sys.exit(f"quantize: cannot open {video} (scripts/setup.sh installs the sample media)")
    wanted, frames, i = set(indices), {}, 0
    while len(frames) < len(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            frames[i] = frame
        i += 1
    missing = sorted(wanted - frames.keys())
    if missing:
        sys.exit(f"quantize: {video} has no frames {missing[:5]}... (it has {i})")
    return [frames[i] for i in indices]


def plate_crops(count):
    """The plate detector's calibration views of the car photo, fixed (no randomness): crops of
    100, 85, 70 and 55 % of the photo at its corners and centre, each also shrunk to a half or a
    quarter first (a far vehicle is a small crop the letterbox scales up), brightness 0.8, 1.0 or
    1.2 in turn. Listed in the sidecar as (scale, anchor x, anchor y, shrink, gain)."""
    views = []
    for scale in (1.0, 0.85, 0.7, 0.55):
        for ax, ay in ((0.5, 0.5), (0, 0), (1, 0), (0, 1), (1, 1)):
            views.append((scale, ax, ay))
    shrinks, gains = (1.0, 0.5, 0.25), (1.0, 0.8, 1.2)
    return [(s, ax, ay, shrinks[i % 3], gains[(i // 3) % 3]) for i, (s, ax, ay) in enumerate(views)][:count]


def crop_view(img, view):
    scale, ax, ay, shrink, gain = view
    h, w = img.shape[:2]
    cw, ch = int(round(w * scale)), int(round(h * scale))
    x, y = int(round((w - cw) * ax)), int(round((h - ch) * ay))
    c = img[y:y + ch, x:x + cw]
    if shrink != 1.0:
        c = cv2.resize(c, (max(1, int(round(cw * shrink))), max(1, int(round(ch * shrink)))), interpolation=cv2.INTER_AREA)
    return cv2.convertScaleAbs(c, alpha=gain, beta=0)


def widen_fp16(m):
    """Makes the FP16 ONNX graph `m` FP32 in place: initializers, constants, Cast targets and
    declared types; nothing else changes (quantize_static needs float32 tensors to calibrate)."""
    from onnx import TensorProto, numpy_helper
    for i, t in enumerate(m.graph.initializer):
        if t.data_type == TensorProto.FLOAT16:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    for n in m.graph.node:
        for a in n.attribute:
            if a.name == "to" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT
            if a.name == "value" and a.t.data_type == TensorProto.FLOAT16:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float32)))
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.checker.check_model(m)


class Frames(CalibrationDataReader):
    def __init__(self, name, tensors):
        self.items = iter([{name: t} for t in tensors])

    def get_next(self):
        return next(self.items, None)


def head_decode_nodes(model, outputs_in_float):
    """The detection head's decode: every node of `/model.22/` that is not one of its
    convolutions, plus the DFL's fixed 1x1 conv (a weighted sum with weights 0..15); with
    `outputs_in_float` also the last conv of each branch (`cv2.i.2`, box logits, and `cv3.i.2`,
    class logits), whose outputs are the scores compared with the confidence threshold."""
    out = []
    for n in model.graph.node:
        if not n.name.startswith("/model.22/"):
            continue
        last_conv = n.op_type == "Conv" and n.name.rsplit("/", 2)[-2] in {f"cv{b}.{i}.2" for b in (2, 3) for i in range(3)}
        if n.op_type != "Conv" or "/dfl/" in n.name or (outputs_in_float and last_conv):
            out.append(n.name)
    return out


def wanted_settings(target, model_path, calibration, a):
    """What the sidecar of a current `out` records (without the result's own sha256)."""
    settings = {
        "script_version": SCRIPT_VERSION,
        "target": target,
        "format": "QDQ",
        "weight_type": "QInt8",
        "per_channel": True,
        "activation_type": "QUInt8" if a.activation == "uint8" else "QInt8",
        "calibrate_method": {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}[a.method],
        "float_in_head": a.head,
        "letterbox": "640x640, pad 114 centred, BGR->RGB, /255, NCHW float32",
        "source_model": os.path.basename(model_path),
        "source_sha256": sha256(model_path),
        "onnxruntime": onnxruntime.__version__,
    }
    if target == "detector":
        indices = [CALIBRATION_STRIDE * k for k in range(a.frames)]
        settings.update({"calibration_video": os.path.basename(calibration), "calibration_frames": indices})
    else:
        views = plate_crops(a.frames)
        settings.update({
            "calibration_image": os.path.basename(calibration),
            "calibration_views": "(crop scale, anchor x, anchor y, shrink, brightness gain)",
            "widened": "an FP16 source is widened to FP32 before quantising (widen_fp16)",
            "calibration_crops": [list(v) for v in views],
        })
    return settings


def is_current(out, settings):
    """Whether `out` and its sidecar are what `settings` asks for."""
    sidecar = os.path.splitext(out)[0] + ".json"
    if not (os.path.isfile(out) and os.path.isfile(sidecar)):
        return False
    with open(sidecar) as f:
        old = json.load(f)
    # "target" is implied by the file (sidecars from before the plate target lack it)
    return all(old.get(k) == v for k, v in settings.items() if k != "target") and old.get("sha256") == sha256(out)


def quantize(target, model_path, out, calibration, a):
    """Quantises `model_path` into `out` for `target` ("detector" or "plate"); `calibration` is
    the video (detector) or the photo (plate). Skipped when the sidecar says `out` is current."""
    settings = wanted_settings(target, model_path, calibration, a)
    sidecar = os.path.splitext(out)[0] + ".json"
    if not a.force and is_current(out, settings):
        print(f"quantize: {out} is current (source sha256 {settings['source_sha256'][:12]}...)", file=sys.stderr)
        return
    if target == "detector":
        indices = settings["calibration_frames"]
    else:
        views = [tuple(v) for v in settings["calibration_crops"]]

    started = time.monotonic()
    tmp = out + ".tmp"
    source = model_path
    model = onnx.load(model_path)
    input_name = model.graph.input[0].name
    if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
        source = out + ".fp32.tmp"
        widen_fp16(model)
        onnx.save(model, source)
    excluded = head_decode_nodes(model, a.head == "decode+outputs")
    if target == "detector":
        tensors = [letterbox(f) for f in read_frames(calibration, indices)]
    else:
        img = cv2.imread(calibration)
        if img is None:
            sys.exit(f"quantize: cannot read {calibration} (scripts/setup.sh installs the sample media)")
        tensors = [letterbox(crop_view(img, v)) for v in views]
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[a.method]
    try:
        quantize_static(
            source,
            tmp,
            Frames(input_name, tensors),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8 if a.activation == "uint8" else QuantType.QInt8,
            calibrate_method=method,
            nodes_to_exclude=excluded,
            extra_options={"CalibMovingAverage": False},
        )
    finally:
        if source != model_path and os.path.exists(source):
            os.remove(source)
    # a dynamic batch axis must stay dynamic (cross-camera batching); quantize_static keeps the
    # graph's input and output declarations, checked here
    q = onnx.load(tmp, load_external_data=False)
    before = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim = q.graph.input[0].type.tensor_type.shape.dim[0]
    if (before.dim_param or before.dim_value <= 0) and not (dim.dim_param or dim.dim_value <= 0):
        os.remove(tmp)
        sys.exit(f"quantize: the batch axis of {out} came out fixed ({dim})")
    os.replace(tmp, out)
    elapsed = time.monotonic() - started
    settings.update({
        "nodes_to_exclude": excluded,
        "sha256": sha256(out),
        "seconds": round(elapsed, 1),
    })
    with open(sidecar + ".tmp", "w") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    os.replace(sidecar + ".tmp", sidecar)
    print(f"quantize: wrote {out} and {sidecar} in {elapsed:.1f} s", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=["detector", "plate", "all"], default="all")
    p.add_argument("--model", help="the float model (one target only)")
    p.add_argument("--out", help="the INT8 model to write (one target only)")
    p.add_argument("--video", default=os.path.join(ROOT, ".local/media/vtest_pedestrians_768x576.mp4"))
    p.add_argument("--image", default=os.path.join(ROOT, ".local/media/car_plate_cz_5AU5341.png"))
    p.add_argument("--frames", type=int, default=None, help="calibration inputs (detector 30, plate 20)")
    p.add_argument("--activation", choices=["uint8", "int8"], default="uint8")
    p.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="percentile")
    p.add_argument("--head", choices=["decode", "decode+outputs"], default="decode",
                   help="what of the detection head stays float (decode+outputs: also the last conv of each branch)")
    p.add_argument("--force", action="store_true", help="quantise even when the sidecar says the output is current")
    p.add_argument("--check", action="store_true",
                   help="quantise nothing: exit 0 when every target's output is current, 1 otherwise (needs no media)")
    a = p.parse_args()
    targets = ["detector", "plate"] if a.target == "all" else [a.target]
    stale = False
    if (a.model or a.out) and len(targets) > 1:
        p.error("--model/--out name one model: add --target detector or --target plate")
    for t in targets:
        model_path, out = DETECTOR if t == "detector" else PLATE
        model_path = a.model or os.path.join(ROOT, model_path)
        out = a.out or os.path.join(ROOT, out)
        if not os.path.isfile(model_path):
            if t == "plate" and a.target == "all":
                # ANPR is optional: no plate model, no INT8 plate model
                print(f"quantize: {model_path} is missing; no INT8 plate detector", file=sys.stderr)
                continue
            sys.exit(f"quantize: {model_path} is missing (scripts/setup.sh installs the models)")
        frames = a.frames or (30 if t == "detector" else 20)
        ta = argparse.Namespace(**{**vars(a), "frames": frames})
        calibration = a.video if t == "detector" else a.image
        if a.check:
            if not is_current(out, wanted_settings(t, model_path, calibration, ta)):
                print(f"quantize: {out} is missing or not current", file=sys.stderr)
                stale = True
            continue
        quantize(t, model_path, out, calibration, ta)
    if a.check and stale:
        sys.exit(1)


if __name__ == "__main__":
    main()
