#!/usr/bin/env python3
"""Reference ByteTrack for the tracker test: supervision's ByteTrack (PyPI, 0.30.x; 0.31 dropped
it) on the same detections as the Rust tracker, then the agreement of the two trackers' identities.

    reference_track.py IN.json OUT.json

IN.json (written by tests/track.rs): {"fps": 10, "frames": [[[class, conf, x1, y1, x2, y2], ...],
...], "runs": [{"name", "config": {...}, "ids": [[id or null per detection], ...]}]}.
OUT.json: {"runs": [{"name", "idf1", "majority", "identical", "boxes_ours", "boxes_ref",
"boxes_both", "tracks_ours", "tracks_ref"}]}.

Parameter mapping (the Rust tracker counts time, supervision counts frames; at a steady 10 fps
with every frame detected they are the same):
  high_thresh       -> track_activation_threshold
  new_track_thresh  -> supervision's det_thresh, always track_activation_threshold + 0.1 (checked)
  low_thresh        -> hard-coded `score > 0.1` in supervision (checked: must be 0.1)
  match_thresh      -> minimum_matching_threshold
  min_hits          -> minimum_consecutive_frames
  lost_timeout      -> lost_track_buffer = lost_timeout * fps frames, with frame_rate=30 so that
                       supervision's int(frame_rate / 30 * buffer) is that number exactly

Differences that remain, all small:
- Ids per box: supervision does not say which detection a track took; update_with_detections
  re-pairs the output tracks' Kalman boxes with all detections (IoU >= 0.5), so with two
  overlapping boxes (class-aware NMS keeps a person and, say, a 0.1 "umbrella" on it) it may
  label the other one. The Rust tracker reports the detection it associated.
- Assignment: supervision solves scipy's linear_sum_assignment on costs clipped at the
  threshold; ByteTrack (and the Rust tracker) minimise with a cost limit (lapjv's
  extend_cost), which may leave a pair unmade that scipy makes, in near-tie cases.
- Duplicate removal: supervision drops a tracked track lying on a lost one at IoU > 0.95,
  ByteTrack (and the Rust tracker) at IoU > 0.85.
- Lost tracks: supervision can re-find a lost track on the 31st frame after it was last seen
  and removes it after matching; the Rust tracker ends it once 3 s are over, before matching,
  so only up to the 30th frame.
- Scores: supervision takes `score > 0.1` and `score >= high`; the Rust tracker `>= 0.1`.
- Arithmetic: supervision's Kalman filter runs partly in float32, the Rust one in float64.

Agreement: the boxes each tracker labels (with a confirmed track id) are the two sets of
"identities"; IDF1 = 2 IDTP / (boxes_ours + boxes_ref), IDTP being the boxes labelled by both
under the best one-to-one renaming of ids (Hungarian on co-occurrence), as in Ristani et al.
2016. Also printed: `majority` (boxes labelled by both whose reference id is the majority one of
their Rust id) and `identical` (same id number: both count confirmed tracks from 1).
"""
import json
import sys
import warnings
from collections import Counter

import numpy as np
import supervision as sv
from scipy.optimize import linear_sum_assignment

warnings.filterwarnings("ignore")  # ByteTrack's deprecation notice


def reference_ids(frames, cfg, fps):
    assert abs(cfg["new_track_thresh"] - (cfg["high_thresh"] + 0.1)) < 1e-6, "supervision fixes det_thresh = high + 0.1"
    assert abs(cfg["low_thresh"] - 0.1) < 1e-6, "supervision fixes the low threshold at 0.1"
    assert abs(cfg["frame_interval_s"] * fps - 1.0) < 1e-6, "one detected frame per nominal interval"
    buffer = int(round(cfg["lost_timeout_s"] * fps))
    tracker = sv.ByteTrack(
        track_activation_threshold=cfg["high_thresh"],
        lost_track_buffer=buffer,
        minimum_matching_threshold=cfg["match_thresh"],
        frame_rate=30,
        minimum_consecutive_frames=cfg["min_hits"],
    )
    out = []
    for dets in frames:
        a = np.asarray(dets, dtype=np.float32).reshape(-1, 6)
        d = sv.Detections(
            xyxy=a[:, 2:6],
            confidence=a[:, 1],
            class_id=a[:, 0].astype(int),
            data={"index": np.arange(len(a))},
        )
        t = tracker.update_with_detections(d)
        ids = [None] * len(a)
        if len(t) == 0:  # then supervision returns Detections.empty(), without `data`
            out.append(ids)
            continue
        for i, tid in zip(t.data["index"], t.tracker_id):
            ids[int(i)] = int(tid)
        out.append(ids)
    return out


def agreement(ours, theirs):
    o = {(f, i): v for f, frame in enumerate(ours) for i, v in enumerate(frame) if v is not None}
    t = {(f, i): v for f, frame in enumerate(theirs) for i, v in enumerate(frame) if v is not None}
    both = [k for k in o if k in t]
    pairs = Counter((o[k], t[k]) for k in both)
    o_ids, t_ids = sorted(set(o.values())), sorted(set(t.values()))
    oi = {v: n for n, v in enumerate(o_ids)}
    ti = {v: n for n, v in enumerate(t_ids)}
    m = np.zeros((len(o_ids), len(t_ids)))
    for (a, b), n in pairs.items():
        m[oi[a], ti[b]] = n
    r, c = linear_sum_assignment(-m) if m.size else ([], [])
    idtp = float(m[r, c].sum()) if m.size else 0.0
    total = len(o) + len(t)
    majority = Counter()
    for (a, b), n in pairs.items():
        majority[a] = max(majority[a], n)
    return {
        "idf1": 2 * idtp / total if total else 1.0,
        "majority": sum(majority.values()) / len(both) if both else 1.0,
        "identical": sum(o[k] == t[k] for k in both) / len(both) if both else 1.0,
        "boxes_ours": len(o),
        "boxes_ref": len(t),
        "boxes_both": len(both),
        "tracks_ours": len(o_ids),
        "tracks_ref": len(t_ids),
    }


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = json.load(open(src))
    results = []
    for run in data["runs"]:
        theirs = reference_ids(data["frames"], run["config"], data["fps"])
        res = {"name": run["name"], **agreement(run["ids"], theirs)}
        print(
            f"{run['name']}: IDF1 {res['idf1']:.4f}, majority {res['majority']:.4f}, identical ids "
            f"{res['identical']:.4f}; boxes ours {res['boxes_ours']} / reference {res['boxes_ref']} / "
            f"both {res['boxes_both']}; tracks {res['tracks_ours']} / {res['tracks_ref']} (supervision {sv.__version__})",
            file=sys.stderr,
        )
        results.append(res)
    json.dump({"runs": results}, open(dst, "w"))


if __name__ == "__main__":
    main()
