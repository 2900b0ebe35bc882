"""The import graph of the package: no cycle, and imports at module tops.

Every module of ``sscl`` (``sscl/``), ``sscl.data`` (``data/``) and ``sscl.kernels``
(``kernels/``) is parsed, and an edge is drawn for every import of another of them, wherever it
stands: at the top, inside a function, under ``if TYPE_CHECKING:``. Importing ``a.b.c`` also
runs ``a/__init__.py`` and ``a/b/__init__.py``, so those packages are edges too. The graph must
have no cycle. An import inside a function is allowed only of a heavy optional dependency
(listed below, each with its reason).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"sscl": ROOT / "sscl", "sscl.data": ROOT / "data", "sscl.kernels": ROOT / "kernels"}

# Imports that may stay inside functions, and why.
LAZY_ALLOWED = {
    "nvidia.dali": "optional (the dali-cuda extras); hundreds of MB, needed only by engine='dali'",
    "importlib": "sscl.cli imports a command's module when it runs: `sscl --help` stays fast",
}


def modules() -> dict[str, Path]:
    out = {}
    for pkg, root in PACKAGES.items():
        for f in root.rglob("*.py"):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if pkg == "sscl" and parts and parts[0] in ("data", "kernels"):
                continue  # not inside sscl/ on disk
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = f
    return out


def imported_names(module: str, path: Path, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [f"{target}.{a.name}" for a in node.names] + [target]


def graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """(edges module -> modules it runs, imports inside functions as (module, line, name))."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    lazy = []
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = imported_names(module, path, node)
            if node.col_offset > 0 and id(node) not in top_level:
                lazy.append((module, node.lineno, names[-1] if isinstance(node, ast.ImportFrom)
                             else names[0]))
            for name in names:
                # The deepest project module the name denotes, and every package above it.
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                while name:
                    if name != module and name in mods and not module.startswith(name + "."):
                        edges[module].add(name)
                    name = name.rpartition(".")[0]
    return edges, lazy


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (cycle := visit(w)):
                return cycle
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(edges):
        if v not in state and (cycle := visit(v)):
            return cycle
    return None


def test_no_import_cycle():
    edges, _ = graph()
    assert len(edges) > 100  # the walk found the package
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_through_a_package():
    edges = {"a": {"a.b"}, "a.b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(edges) == ["a", "a.b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_inside_functions_are_only_heavy_optional_ones():
    _, lazy = graph()
    bad = [f"{m}:{line} imports {name}" for m, line, name in lazy
           if not any(name == a or name.startswith(a + ".") for a in LAZY_ALLOWED)]
    assert not bad, "imports inside functions (move them to the module top):\n" + "\n".join(bad)


def test_the_readme_imports_work():
    """Every ``from sscl...`` / ``import sscl...`` line of the README's Python examples runs."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()
             if re.match(r"\s*(from sscl[\w.]* import |import sscl)", ln)]
    assert lines, "the README shows no sscl import"
    for line in lines:
        m = re.match(r"from ([\w.]+) import (.+)", line)
        if m is None:
            importlib.import_module(line.split()[1])
            continue
        module = importlib.import_module(m.group(1))
        for name in m.group(2).split("#")[0].split(","):
            assert hasattr(module, name.strip()), (line, name)
