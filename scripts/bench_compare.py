#!/usr/bin/env python3
"""Compares two bench runs (the JSON of `cargo run --release --bin bench -- --json PATH`).

    scripts/bench_compare.py A.json B.json

Prints every figure of either file side by side, with the ratio B/A for numbers; settings that
differ (commit, machine, cameras, seconds ...) are listed first, since they make a comparison
unfair. Standard library only.
"""
import json
import sys


def flatten(value, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}; lists by index."""
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = value
    return out


# What a run was, not what it measured: the rest of the numbers are figures. Text and true/false
# values are settings too.
SETTINGS = ("git_commit", "git_dirty", "when", "machine.", "model", "video", "cameras", "seconds", "warmup", "max_fps",
            "realtime", "batch", "targets.", "seed.versions.", "seed.cameras", "seed.warmup", "seed.max_fps", "seed.conf",
            ".batch")


def is_setting(key, values):
    if any(isinstance(v, (str, bool)) for v in values):
        return True
    return any(key == s or (s.endswith(".") and key.startswith(s)) or (s.startswith(".") and key.endswith(s))
               for s in SETTINGS)


def show(v, width=None):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    s = str(v)
    if width and len(s) > width:  # paths: their end says more
        s = "..." + s[-(width - 3):]
    return s


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    with open(argv[1]) as f:
        a = flatten(json.load(f))
    with open(argv[2]) as f:
        b = flatten(json.load(f))
    keys = list(a) + [k for k in b if k not in a]
    print(f"A: {argv[1]}\nB: {argv[2]}\n")
    settings = [k for k in keys if is_setting(k, (a.get(k), b.get(k)))]
    figures = [k for k in keys if k not in settings]
    width = max(len(k) for k in keys)
    print(f"{'setting':<{width}}  {'A':>28}  {'B':>28}")
    for k in settings:
        va, vb = a.get(k), b.get(k)
        if k == "git_commit":
            va, vb = (v[:12] if isinstance(v, str) else v for v in (va, vb))
        mark = "" if va == vb or k == "when" else "   <- differs"
        print(f"{k:<{width}}  {show(va, 28):>28}  {show(vb, 28):>28}{mark}")
    print(f"\n{'figure':<{width}}  {'A':>12}  {'B':>12}  {'B/A':>7}")
    for k in figures:
        va, vb = a.get(k), b.get(k)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        r = f"{vb / va:7.2f}" if numbers and va else "      -"
        print(f"{k:<{width}}  {show(va):>12}  {show(vb):>12}  {r}")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except BrokenPipeError:  # | head
        sys.stderr.close()
