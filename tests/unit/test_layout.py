"""The layout of include/: each subpackage imports only what its docstring allows, and no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

from include.config import PROJECT_ROOT

INCLUDE = PROJECT_ROOT / "include"
BASE = {"config", "records", "shared_storage"}
# What each part of the path may import besides the base (the subpackages' docstrings say the same).
ALLOWED = {
    "hn": set(),
    "crawl": set(),
    "parse": {"hn", "embed"},  # comment chunks from a thread; chunks measured with the model's tokenizer
    "embed": set(),
    "store": {"embed"},  # the retrieval API embeds the query
    "pipeline": {"hn", "crawl", "parse", "embed", "store"},
    "ops": {"store", "pipeline", "embed"},
}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("include."):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("include."))
    return names


def module_name(path: Path) -> str:
    return ".".join(("include", *path.relative_to(INCLUDE).with_suffix("").parts)).removesuffix(".__init__")


def test_each_part_imports_only_the_parts_before_it():
    wrong = []
    for path in INCLUDE.rglob("*.py"):
        part = module_name(path).split(".")[1] if module_name(path) != "include" else "include"
        for name in imports_of(path):
            target = name.split(".")[1]
            if part in ALLOWED and target != part and target not in BASE | ALLOWED[part]:
                wrong.append(f"{module_name(path)} imports {name}")
            if part in BASE and target not in {part, "config"}:
                wrong.append(f"{module_name(path)} (base) imports {name}")
    assert wrong == []


def test_no_import_circle():
    graph = {module_name(p): {n for n in imports_of(p)} for p in INCLUDE.rglob("*.py")}
    path: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in path:
            raise AssertionError("import circle: " + " → ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        path.append(node)
        for child in graph.get(node, ()):
            visit(child)
        path.pop()
        done.add(node)

    for node in graph:
        visit(node)
