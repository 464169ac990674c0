#!/usr/bin/env python3
"""Fails when a crate's modules import each other in a cycle (issue 15).

A module is a file under crates/*/src (`foo.rs` and `foo/mod.rs` are module `foo`; `lib.rs` and
`main.rs` are the crate root, which may use everything and is left out of the graph). An edge
A -> B is any `crate::B` path in A's file (use declarations and inline paths alike), taking the
longest prefix of the path that names a module file. `#[cfg(test)]` modules count too: a test
helper that drags a cycle in is still a cycle. Prints every cycle found and exits 1, or prints
how many modules and edges were checked and exits 0.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH_RE = re.compile(r"\bcrate((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+crate::\{([^;]*)\};", re.S)


def module_name(src: Path, f: Path) -> str:
    rel = f.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(parts)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def edges_of(text: str, modules: set) -> set:
    paths = [m.group(1)[2:] for m in PATH_RE.finditer(text)]
    # `use crate::{a::X, b, c::d::Y}`: every item of the group is a path of its own.
    for group in USE_GROUP_RE.finditer(text):
        for item in re.split(r",(?![^{]*\})", group.group(1)):
            item = item.strip().split("{", 1)[0].strip(": \n")
            if item:
                paths.append(item)
    out = set()
    for p in paths:
        segs = p.split("::")
        for n in range(len(segs), 0, -1):
            cand = "::".join(segs[:n])
            if cand in modules:
                out.add(cand)
                break
    return out


def cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main() -> int:
    failed = False
    n_mod = n_edge = 0
    for src in sorted(ROOT.glob("crates/*/src")):
        files = {module_name(src, f): f for f in src.rglob("*.rs")}
        roots = {"lib", "main"}
        modules = set(files) - roots
        graph = {}
        for name, f in files.items():
            if name in roots:
                continue
            deps = edges_of(strip_comments(f.read_text()), modules) - {name}
            # A parent module naming its own submodules (`mod x;` + `x::Y`) is not a cycle edge
            # back; only sibling and ancestor references are kept as written.
            graph[name] = {d for d in deps if not d.startswith(name + "::")}
            n_edge += len(graph[name])
        n_mod += len(modules)
        for comp in cycles(graph):
            failed = True
            crate = src.parent.name
            print(f"import cycle in {crate}: " + " <-> ".join(comp))
            for a in comp:
                for b in sorted(graph[a] & set(comp)):
                    print(f"    {crate}/src/{files[a].relative_to(src)} uses crate::{b}")
    if failed:
        print("error: break each cycle (move the shared item into a leaf module)")
        return 1
    print(f"no import cycles: {n_mod} modules, {n_edge} edges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
