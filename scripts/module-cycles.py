#!/usr/bin/env python3
"""Report dependency cycles between the top-level modules of each crate.

A module `a` depends on `b` when a file of `a` names `crate::b` (in a `use`, a path, or a
`crate::{b, ..}` group) or, inside `a`'s own directory, `super::b` from a child of the crate
root. Test modules (`#[cfg(test)]` blocks to the end of file, `tests.rs`) are left out: tests
may reach anywhere. Exit status 1 when any crate has a cycle, listing each strongly connected
component.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    cut = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    return text[: cut.start()] if cut else text


def crate_modules(src):
    mods = {}
    for name in os.listdir(src):
        path = os.path.join(src, name)
        if name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
            mods[name[:-3]] = [path]
        elif os.path.isdir(path):
            files = []
            for d, _, fs in os.walk(path):
                files += [os.path.join(d, f) for f in fs if f.endswith(".rs") and f != "tests.rs"]
            mods.setdefault(name, []).extend(files)
    return mods


def refs(text, names):
    found = set()
    for m in re.finditer(r"crate::(\{[^}]*\}|\w+)", text):
        body = m.group(1)
        for n in re.findall(r"\w+", body) if body.startswith("{") else [body]:
            if n in names:
                found.add(n)
    return found


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    crates = sorted(os.listdir(os.path.join(ROOT, "crates")))
    bad = 0
    for c in crates:
        src = os.path.join(ROOT, "crates", c, "src")
        if not os.path.isdir(src):
            continue
        mods = crate_modules(src)
        graph = {m: set() for m in mods}
        for m, files in mods.items():
            for f in files:
                with open(f, encoding="utf-8") as fh:
                    graph[m] |= refs(strip(fh.read()), mods) - {m}
        for comp in sccs(graph):
            edges = [f"{a}->{b}" for a in comp for b in sorted(graph[a]) if b in comp]
            bad += 1
            print(f"{c}: module cycle among {', '.join(comp)} ({'; '.join(edges)})")
    if bad:
        print(f"{bad} module cycle(s)", file=sys.stderr)
        sys.exit(1)
    print(f"no module cycles in {len(crates)} crates")


if __name__ == "__main__":
    main()
