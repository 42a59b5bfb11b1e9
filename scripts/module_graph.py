#!/usr/bin/env python3
"""Module import graph of src/ and its cycles (docs/architecture.md, "Modules").

Reads every `crate::`, `super::` and `self::` path in src/**/*.rs (in `use` lines and inline
paths, grouped `use crate::{a, b::c}` included), maps each file to its module path, and checks,
at every depth, that the graph between sibling modules has no cycle. A module's own `mod.rs`
(its wiring and shared items) counts as a node of its own, `<parent>::(mod)`, so a child that
reaches back into its parent's `mod.rs` while the parent wires the child is a cycle too.

Usage: scripts/module_graph.py [--edges] [--rules]   (exit 1 on a cycle or a broken rule)
Run by the library's unit tests (`src/lib.rs`).
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
# binaries are crates of their own: only the library's modules form the graph
SKIP = {"main.rs", "bin"}
# `use crate::pipeline` is allowed only inside pipeline/ and in the top-level wiring
PIPELINE_USERS = {("service",), ("lib",)}
# Known problems, reported but not failed on: the API is being rewritten on hyper (issue 18),
# which removes them; delete each entry when it is gone (an entry that no longer occurs fails).
KNOWN = {
    "cycle: api::routes <-> api::server",
    "rule: api::server uses pipeline (only pipeline/ and the wiring may)",
    "rule: api::server uses pipeline::publish (only pipeline/ and the wiring may)",
}


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*", "", line) for line in text.splitlines())


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (the prefix is what matters)."""
    tree = tree.replace(" ", "").replace("\n", "")
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for it in items:
        if it:
            out += [prefix + x for x in expand_use(it)]
    return out


def resolve(mod, is_mod_file, path):
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        return tuple(segs[1:])
    base = list(mod) if is_mod_file else list(mod)
    # in foo.rs (module foo) `super` is foo's parent; in foo/mod.rs too
    if segs[0] == "self":
        return tuple(base + segs[1:])
    while segs and segs[0] == "super":
        base = base[:-1]
        segs = segs[1:]
    return tuple(base + segs)


def collect():
    files = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP]
        for f in filenames:
            if f.endswith(".rs") and f not in SKIP:
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
                files[rel] = strip_comments(open(os.path.join(dirpath, f)).read())
    mods = {module_of(r): r for r in files}
    refs = {}
    for rel, text in files.items():
        mod = module_of(rel)
        is_mod = rel.endswith("mod.rs") or rel == "lib.rs"
        paths = []
        for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", text):
            paths += expand_use(m.group(1))
        for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", text):
            paths.append(m.group(1))
        targets = set()
        for p in paths:
            t = resolve(mod, is_mod, p)
            if t is None:
                continue
            # the longest prefix that is a module (items inside it belong to it)
            while t and t not in mods:
                t = t[:-1]
            if t and t != mod:
                targets.add(t)
        refs[mod] = targets
    return mods, refs


def node_at(mod, depth):
    """The node a module belongs to when siblings at `depth` are compared."""
    if len(mod) >= depth:
        return mod[:depth]
    return mod + ("(mod)",)


def cycles(refs):
    found = []
    maxd = max(len(m) for m in refs) + 1
    for depth in range(1, maxd + 1):
        graph = {}
        for src, tgts in refs.items():
            a = node_at(src, depth)
            for t in tgts:
                b = node_at(t, depth)
                # only siblings (same parent) at this depth; ancestors' edges were checked above
                if a != b and a[:depth - 1] == b[:depth - 1]:
                    graph.setdefault(a, set()).add(b)
        # Tarjan's strongly connected components
        index, low, stack, on, out = {}, {}, [], set(), []
        counter = [0]

        def strong(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in graph.get(v, ()):
                if w not in index:
                    strong(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted("::".join(c) for c in comp))

        for v in list(graph):
            if v not in index:
                strong(v)
        found += out
    return found


def main():
    mods, refs = collect()
    if "--edges" in sys.argv:
        for m in sorted(refs):
            print("::".join(m) or "crate", "->", ", ".join(sorted("::".join(t) for t in refs[m])))
    found = []
    for c in cycles(refs):
        found.append("cycle: " + " <-> ".join(c))
    for m, tgts in sorted(refs.items()):
        if m and m[0] != "pipeline" and m not in PIPELINE_USERS:
            for t in sorted(tgts):
                if t and t[0] == "pipeline":
                    found.append(f"rule: {'::'.join(m)} uses {'::'.join(t)} (only pipeline/ and the wiring may)")
    bad = 0
    for p in found:
        print(p + ("   [known, see KNOWN]" if p in KNOWN else ""))
        bad += p not in KNOWN
    for k in sorted(KNOWN - set(found)):
        print(f"fixed, remove from KNOWN: {k}")
        bad += 1
    print(f"{len(refs)} modules, {sum(len(t) for t in refs.values())} edges, {bad} problem(s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
