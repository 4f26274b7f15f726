#!/usr/bin/env python3
"""The layout rules of src/ that neither rustc nor clippy checks (`make lint` runs this):

1. No import cycle between files. A file depends on another when it names a path into it
   (`use crate::a::b::…`, `super::…`, `self::…`, a child module's `b::…`, or the same paths in
   its code: `crate::a::b::f(…)`); a path is
   resolved to the deepest module file it names (a re-export counts where it is written). A
   module's own `mod.rs` is its interface and shared types: a child's use of its ancestors is
   not counted, its parent's use of it is (so a cycle through two siblings is found).
2. No function over MAX_LINES lines (signature to closing brace, as rustfmt lays it out), but
   for the parsers listed in LONG_PARSERS, each a flat sequence of cases read top to bottom.

    python3 scripts/check_layout.py [SRC_DIR]

Prints each violation (the cycle's files in order, or the function's file, line and length)
and exits 1 when there is any, 0 otherwise.
"""

import re
import sys
from pathlib import Path

MAX_LINES = 70
# file: function — why it may be longer.
LONG_PARSERS = {
    ("transform/spec.rs", "parse"): "the feature spec's JSON, one block kind after the other",
}

USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<![\w:])([A-Za-z_]\w*(?:::\w+)+)")
FN = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?fn\s+(\w+)")


def module_of(path: Path, src: Path) -> tuple:
    """`src/a/b.rs` and `src/a/b/mod.rs` → ("a", "b"); `src/lib.rs` → ()."""
    parts = path.relative_to(src).with_suffix("").parts
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def expand(tree: str) -> list:
    """The paths of a `use` tree: `a::{b, c::{d, e}}` → [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", tree))
    depth, cut = 0, None
    for i, ch in enumerate(tree):
        if ch == "{" and depth == 0:
            cut = i
            break
    if cut is None:
        return [tree]
    prefix, inner = tree[:cut], tree[cut + 1 : -1]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return [p for part in parts if part for p in expand(prefix + part)]


def resolve(path: str, here: tuple, modules: dict) -> tuple | None:
    """The module a path names, from the file of module `here` (`self`: `here`, `super`: its
    parent, whether the file is `a/b.rs` or `a/b/mod.rs`)."""
    segments = path.split("::")
    if segments[0] == "crate":
        base, rest = (), segments[1:]
    elif segments[0] in ("self", "super"):
        base = here
        rest = segments
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    elif here + (segments[0],) in modules:  # a child module, named without `self::`
        base, rest = here, segments
    else:
        return None  # another crate, or an item
    for n in range(len(rest), -1, -1):
        candidate = base + tuple(rest[:n])
        if candidate in modules:
            return candidate
    return None


def dependencies(src: Path) -> dict:
    """Each file's module → the modules its code names (ancestors left out)."""
    modules = {module_of(p, src): p for p in src.rglob("*.rs") if p.name != "main.rs"}
    graph = {}
    for module, path in modules.items():
        text = re.sub(r"//[^\n]*", "", path.read_text())
        paths = [p for tree in USE.findall(text) for p in expand(tree)]
        paths += INLINE.findall(USE.sub("", text))
        targets = {resolve(p, module, modules) for p in paths}
        graph[module] = {t for t in targets if t is not None and t != module and module[: len(t)] != t}
    return graph


def cycles(graph: dict) -> list:
    """One cycle per strongly connected group of files (Tarjan), each as a list of modules."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def long_functions(src: Path) -> list:
    """(file, line, name, length) of every function over MAX_LINES lines."""
    found = []
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src).as_posix()
        lines = path.read_text().split("\n")
        for i, line in enumerate(lines):
            match = FN.match(line)
            if not match or (rel, match.group(2)) in LONG_PARSERS:
                continue
            j = i
            while not re.search(r"[{;}]\s*$", lines[j]):
                j += 1
            if lines[j].rstrip().endswith(";") or lines[j].rstrip().endswith("}"):
                continue  # a declaration, or a body on one line
            end = lines.index(match.group(1) + "}", j + 1)
            if end - i + 1 > MAX_LINES:
                found.append((rel, i + 1, match.group(2), end - i + 1))
    return found


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent.parent / "src")
    name = lambda m: "/".join(m) or "lib"  # noqa: E731
    problems = [
        "import cycle between files: " + " ↔ ".join(name(m) for m in group)
        for group in cycles(dependencies(src))
    ]
    problems += [
        f"src/{rel}:{line}: fn {fn} is {n} lines (at most {MAX_LINES})"
        for rel, line, fn, n in long_functions(src)
    ]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
