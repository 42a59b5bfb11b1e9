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


SETTINGS = ("git_commit", "git_dirty", "when", "machine.", "model", "video", "cameras", "seconds", "warmup", "max_fps",
            "realtime", "batch", "targets.", "seed.versions.", "seed.design", "seed.session", "seed.conf")


def is_setting(key):
    return any(key == s or (s.endswith(".") and key.startswith(s)) for s in SETTINGS)


def show(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    with open(argv[1]) as f:
        a = flatten(json.load(f))
    with open(argv[2]) as f:
        b = flatten(json.load(f))
    keys = list(a) + [k for k in b if k not in a]
    width = max(len(k) for k in keys)
    print(f"A: {argv[1]}\nB: {argv[2]}\n")
    settings = [k for k in keys if is_setting(k)]
    figures = [k for k in keys if not is_setting(k)]
    print(f"{'setting':<{width}}  {'A':>24}  {'B':>24}")
    for k in settings:
        va, vb = a.get(k), b.get(k)
        mark = "" if va == vb else "   <- differs"
        print(f"{k:<{width}}  {show(va)[:24]:>24}  {show(vb)[:24]:>24}{mark}")
    print(f"\n{'figure':<{width}}  {'A':>12}  {'B':>12}  {'B/A':>7}")
    for k in figures:
        va, vb = a.get(k), b.get(k)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        r = f"{vb / va:7.2f}" if numbers and va else "      -"
        print(f"{k:<{width}}  {show(va):>12}  {show(vb):>12}  {r}")


if __name__ == "__main__":
    main(sys.argv)
