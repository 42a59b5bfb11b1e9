#!/usr/bin/env python3
"""The seed design, as a throughput baseline for the service (src/bin/bench.rs runs it).

The customer's original Python design, rebuilt from PyPI packages only (bench/baseline/
requirements.txt): one thread per camera, each with

    cv2.VideoCapture(file), paced at real time (the file's own fps, capped by --max-fps)
      -> letterbox 640 (cv2.resize + copyMakeBorder, BGR -> RGB, /255, NCHW float32)
      -> onnxruntime InferenceSession.run, batch 1, CPUExecutionProvider, default threads
      -> YOLOv8 postprocess (best class per anchor, confidence threshold, class-aware NMS)
      -> redis-py XADD of one detection event (JSON) per frame

The file plays as a live camera would: frame i is due at start + i / fps. A thread that falls
behind (inference slower than the camera) grabs and drops the frames that are already late, so
it always works on the newest frame, like the service's "newest wins". Frames over --max-fps are
skipped before decoding to BGR. Files loop.

Prints one JSON object on stdout (figures over the measured window, after --warmup):
processed frames/s, captured/skipped/dropped frames/s, events/s, frame-to-event latency p50/p99
in ms (from the frame leaving VideoCapture to its XADD being acknowledged), CPU cores, RSS max,
the cores other processes used meanwhile, and the versions used. Errors go to stderr.

By default the camera threads share one InferenceSession (its run() is thread-safe and
releases the GIL); `--session per-camera` loads one per thread instead, which on 2 cores is
slower (four intra-op thread pools of default size contend for two cores).

    .local/venv/bin/python bench/baseline/seed_design.py --cameras 4 --seconds 20
"""
import argparse
import json
import os
import resource
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import cv2
import numpy as np
import onnxruntime as ort
import redis

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_video():
    name = "vtest_pedestrians_768x576.mp4"
    dirs = [os.environ.get("ANALYTICS_MEDIA_DIR"), os.path.join(REPO, ".local/media"), os.path.join(REPO, "../shared/media")]
    for d in dirs:
        if d and os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    return os.path.join(REPO, ".local/media", name)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=os.path.join(REPO, "models/yolov8n.onnx"))
    p.add_argument("--video", default=default_video())
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--seconds", type=float, default=30.0, help="measured window")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the window opens")
    p.add_argument("--max-fps", type=float, default=30.0, help="per camera cap")
    p.add_argument("--fast", action="store_true", help="decode as fast as possible (capped by --max-fps)")
    p.add_argument("--conf", type=float, default=0.25,
                   help="confidence threshold (Ultralytics' default; the service decodes down to 0.1 for its tracker)")
    p.add_argument("--iou", type=float, default=0.45)
    p.add_argument("--session", choices=["shared", "per-camera"], default="shared",
                   help="one InferenceSession that every camera thread calls (default; run() is thread-safe and "
                        "releases the GIL) or one per camera thread (slower on 2 cores: 4 thread pools contend)")
    p.add_argument("--redis-host", default=os.environ.get("REDIS_HOST", "127.0.0.1"))
    p.add_argument("--redis-port", type=int, default=int(os.environ.get("REDIS_PORT", "6379")))
    p.add_argument("--stream", default=f"bench:seed:{os.getpid()}")
    p.add_argument("--maxlen", type=int, default=10000)
    p.add_argument("--keep-stream", action="store_true", help="leave the stream in Redis (default: deleted)")
    return p.parse_args(argv)


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


class Detector:
    def __init__(self, session, conf, iou):
        self.session, self.conf, self.iou = session, conf, iou
        inp = session.get_inputs()[0]
        self.input_name, self.size = inp.name, inp.shape[2]
        meta = session.get_modelmeta().custom_metadata_map.get("names", "")
        self.names = parse_names(meta)

    def __call__(self, img):
        lb, r, left, top = letterbox(img, self.size)
        x = cv2.cvtColor(lb, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        out = self.session.run(None, {self.input_name: x})[0][0]  # [4 + C, N]
        scores = out[4:]
        cls = scores.argmax(0)
        conf = scores.max(0)
        keep = conf > self.conf
        b, cls, conf = out[:4, keep].T, cls[keep], conf[keep]
        if len(conf) == 0:
            return []
        xywh = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]], 1)
        idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), conf.tolist(), cls.tolist(), self.conf, self.iou)
        h, w = img.shape[:2]
        dets = []
        for i in np.asarray(idx).reshape(-1)[:300]:
            x1 = float(np.clip((xywh[i, 0] - left) / r, 0, w))
            y1 = float(np.clip((xywh[i, 1] - top) / r, 0, h))
            x2 = float(np.clip((xywh[i, 0] + xywh[i, 2] - left) / r, 0, w))
            y2 = float(np.clip((xywh[i, 1] + xywh[i, 3] - top) / r, 0, h))
            c = int(cls[i])
            dets.append({
                "class_name": self.names[c] if c < len(self.names) else f"class{c}",
                "confidence": round(float(conf[i]), 4),
                "bounding_box": {"x": x1 / w, "y": y1 / h, "width": (x2 - x1) / w, "height": (y2 - y1) / h},
            })
        return dets


def parse_names(meta):
    """Ultralytics' `names` metadata, "{0: 'person', 1: 'bicycle', ...}"."""
    names = []
    for part in meta.strip("{}").split(", "):
        if ": " in part:
            names.append(part.split(": ", 1)[1].strip("'\""))
    return names


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"captured": 0, "skipped": 0, "dropped": 0, "processed": 0, "events": 0}
        self.latencies = []
        self.errors = []
        self.window_open = False

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def latency(self, seconds):
        with self.lock:
            if self.window_open:
                self.latencies.append(seconds)


def camera(i, args, make_detector, red, stats, stop):
    camera_id = f"seed{i}"
    try:
        detect = make_detector()
        cap = cv2.VideoCapture(args.video)
        if not cap.isOpened():
            raise RuntimeError(f"cannot open {args.video}")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        period = 1.0 / fps
        min_gap = 1.0 / args.max_fps if args.max_fps > 0 else 0.0
        # media time of a frame: frame_number * period (files loop, the timeline goes on)
        start, n, frame_number, last_kept = time.monotonic(), 0, 0, -1e9
        while not stop.is_set():
            due = start + n * period
            now = time.monotonic()
            if not args.fast and now < due:
                time.sleep(due - now)
            if not cap.grab():  # end of file: loop, the timeline goes on
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                start, n = start + n * period, 0
                if not cap.grab():
                    raise RuntimeError(f"{args.video}: no frames")
            n += 1
            frame_number += 1
            stats.add("captured")
            now = time.monotonic()
            if not args.fast and now - due > period:  # a later frame is already due: drop this one
                stats.add("dropped")
                continue
            media_t = now if args.fast else frame_number * period
            if media_t - last_kept < min_gap - 1e-6:  # over --max-fps: skipped, as the service's pacing
                stats.add("skipped")
                continue
            last_kept = media_t
            ok, frame = cap.retrieve()
            if not ok:
                continue
            captured, wall = time.monotonic(), time.time()
            dets = detect(frame)
            event = {
                "event_id": str(uuid.uuid4()),
                "event_type": "detection",
                "camera_id": camera_id,
                "timestamp": datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "frame_number": frame_number,
                "detections": dets,
                "model_info": {"model_type": "yolov8n", "version": f"onnxruntime {ort.__version__}"},
            }
            red.xadd(args.stream, {"event_type": "detection", "camera_id": camera_id, "timestamp": event["timestamp"],
                                   "payload": json.dumps(event)}, maxlen=args.maxlen, approximate=True)
            stats.latency(time.monotonic() - captured)
            stats.add("processed")
            stats.add("events")
    except Exception as e:  # noqa: BLE001 - reported in the JSON and the exit status
        stats.errors.append(f"{camera_id}: {e!r}")
        print(f"seed_design: {camera_id}: {e!r}", file=sys.stderr)
        stop.set()


def cpu_seconds():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def system_busy_seconds():
    """CPU seconds the whole machine spent busy (every process), from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def quantile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv):
    args = parse_args(argv)
    if not os.path.isfile(args.model):
        sys.exit(f"seed_design: model {args.model} is missing: run scripts/setup.sh")
    if not os.path.isfile(args.video):
        sys.exit(f"seed_design: video {args.video} is missing: run scripts/setup.sh")
    red = redis.Redis(host=args.redis_host, port=args.redis_port, socket_timeout=5)
    red.ping()

    def new_session():
        return ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])

    shared = new_session() if args.session == "shared" else None

    def make_detector():
        return Detector(shared or new_session(), args.conf, args.iou)

    stats, stop = Stats(), threading.Event()
    threads = [threading.Thread(target=camera, args=(i, args, make_detector, red, stats, stop), daemon=True)
               for i in range(args.cameras)]
    for t in threads:
        t.start()
    stop.wait(args.warmup)
    with stats.lock:
        c0, stats.window_open = dict(stats.counts), True
    t0, cpu0, sys0, rss_max = time.monotonic(), cpu_seconds(), system_busy_seconds(), rss_mib()
    while not stop.is_set() and time.monotonic() - t0 < args.seconds:
        stop.wait(min(0.5, max(0.0, args.seconds - (time.monotonic() - t0))))
        rss_max = max(rss_max, rss_mib())
    with stats.lock:
        c1, stats.window_open = dict(stats.counts), False
        lat = list(stats.latencies)
    secs, cpu1, sys1 = time.monotonic() - t0, cpu_seconds(), system_busy_seconds()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    if not args.keep_stream:
        red.delete(args.stream)
    per = {k: (c1[k] - c0[k]) / secs for k in c1}
    p50, p99 = quantile(lat, 0.5), quantile(lat, 0.99)
    result = {
        "design": "seed: one thread per camera, OpenCV + onnxruntime batch 1 + redis-py XADD",
        "cameras": args.cameras,
        "seconds": round(secs, 3),
        "warmup": args.warmup,
        "max_fps": args.max_fps,
        "realtime": not args.fast,
        "session": args.session,
        "conf": args.conf,
        "processed_fps": per["processed"],
        "captured_fps": per["captured"],
        "skipped_fps": per["skipped"],
        "dropped_fps": per["dropped"],
        "events_fps": per["events"],
        "processed": c1["processed"] - c0["processed"],
        "latency_ms": {"p50": p50 * 1e3 if p50 is not None else None, "p99": p99 * 1e3 if p99 is not None else None},
        "cpu_cores": (cpu1 - cpu0) / secs,
        "rss_max_mib": rss_max,
        # cores other processes kept busy during the window: > ~0.2 means the figures are skewed
        "other_cpu_cores": (sys1 - sys0 - (cpu1 - cpu0)) / secs if sys0 is not None and sys1 is not None else None,
        "versions": {"python": sys.version.split()[0], "onnxruntime": ort.__version__, "opencv": cv2.__version__,
                     "numpy": np.__version__, "redis": redis.__version__},
        "errors": stats.errors,
    }
    print(json.dumps(result))
    return 1 if stats.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
