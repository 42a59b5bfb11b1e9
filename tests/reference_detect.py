#!/usr/bin/env python3
"""Reference YOLOv8 detector for the accuracy test: the same ONNX file through onnxruntime (PyPI)
with Ultralytics' preprocessing and NMS, written out independently of the Rust code.

    reference_detect.py MODEL OUT.json IMAGE [IMAGE ...]
    reference_detect.py --frames VIDEO N1,N2,... OUTDIR   # writes frame_N.png (shared test inputs)

Preprocessing (ultralytics.data.augment.LetterBox, auto=False): r = min(640/h, 640/w), resize
to (round(w*r), round(h*r)) with cv2.INTER_LINEAR, pad with 114 to 640x640 centred (top =
round(dh - 0.1), left = round(dw - 0.1)), BGR -> RGB, /255, NCHW float32.
Postprocessing (ultralytics.utils.ops.non_max_suppression): best class per anchor, keep
conf > 0.25, class-aware greedy NMS at IoU 0.45, at most 300; boxes minus padding, divided by r,
clipped to the image. Output: {image: [[class_id, conf, x1, y1, x2, y2], ...]} sorted by conf.
"""
import json
import sys

import cv2
import numpy as np
import onnxruntime as ort

CONF, IOU, MAX_DET = 0.25, 0.45, 300


def letterbox(img, size):
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (size - nw) / 2, (size - nh) / 2
    if (w, h) != (nw, nh):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return img, r, left, top


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect(session, img):
    size = session.get_inputs()[0].shape[2]
    lb, r, left, top = letterbox(img, size)
    x = cv2.cvtColor(lb, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    out = session.run(None, {session.get_inputs()[0].name: x})[0][0]  # [4 + C, N]
    scores = out[4:]
    cls = scores.argmax(0)
    conf = scores.max(0)
    keep = conf > CONF
    boxes = out[:4, keep].T
    cls, conf = cls[keep], conf[keep]
    xyxy = np.stack([boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2,
                     boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2], 1)
    order = np.argsort(-conf, kind="stable")
    kept = []
    for i in order:
        if len(kept) >= MAX_DET:
            break
        if all(cls[k] != cls[i] or iou(xyxy[k], xyxy[i]) <= IOU for k in kept):
            kept.append(i)
    h, w = img.shape[:2]
    result = []
    for i in kept:
        x1, y1, x2, y2 = xyxy[i]
        x1, x2 = [float(np.clip((v - left) / r, 0, w)) for v in (x1, x2)]
        y1, y2 = [float(np.clip((v - top) / r, 0, h)) for v in (y1, y2)]
        result.append([int(cls[i]), float(conf[i]), x1, y1, x2, y2])
    return result


def main(argv):
    if argv[1] == "--frames":
        video, numbers, outdir = argv[2], [int(n) for n in argv[3].split(",")], argv[4]
        cap = cv2.VideoCapture(video)
        n, wanted = 0, set(numbers)
        while wanted:
            ok, frame = cap.read()
            if not ok:
                sys.exit(f"{video}: ended before frames {sorted(wanted)}")
            if n in wanted:
                cv2.imwrite(f"{outdir}/frame_{n}.png", frame)
                wanted.discard(n)
            n += 1
        return
    model, out, images = argv[1], argv[2], argv[3:]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    result = {}
    for path in images:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            sys.exit(f"cannot read {path}")
        result[path] = detect(session, img)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv)
