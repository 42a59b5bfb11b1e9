"""Frames/s of a model in onnxruntime alone at several batch sizes and intra-op thread counts:
whether batching pays on this CPU (it did not on the project's 2-core machine, hence
BATCH_SIZE auto = 1 on the CPU; README, "Where the time went").

    .local/venv/bin/python bench/ort_batch_sizes.py [--model models/yolov8n.onnx]
        [--threads 1] [--batches 1,3,1,3,2,4] [--seconds 4]

Random input of the model's input size; each batch size runs --seconds after one warm-up run.
"""
import argparse
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/yolov8n.onnx")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="1,3,1,3,2,4")
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    s = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    h, w = (d if isinstance(d, int) else 640 for d in inp.shape[2:4])
    for b in (int(x) for x in args.batches.split(",")):
        x = np.random.rand(b, 3, h, w).astype(np.float32)
        s.run(None, {inp.name: x})
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < args.seconds:
            s.run(None, {inp.name: x})
            n += b
        dt = time.perf_counter() - t
        print(f"batch {b}: {n / dt:.1f} frames/s ({dt / n * 1000:.1f} ms/frame), {args.threads} thread(s)", flush=True)


if __name__ == "__main__":
    main()
