"""How thin ``src/`` is: lines per module, long functions, many parameters, and what each notebook calls.

    python tools/src_size.py            # a table, then the totals
    python tools/src_size.py --json     # the same as one JSON object

A function's length counts its lines from ``def`` to its end, minus its docstring. Parameters count
every argument but ``self``/``cls``. "Helpers called" counts the distinct names a notebook takes from
``unet_clustering`` (``module.name`` or ``from unet_clustering.module import name``), and "their
lines" the lines of those functions and classes.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "unet_clustering"
#: Plotting functions draw or return a Figure, and may take more parameters than others.
PLOTTING_MODULES = ("visualization",)
MAX_FUNCTION_LINES = 40
MAX_PARAMETERS = 6


def definitions(path: Path) -> list[dict]:
    """Every function (top level or method) and top-level class of a module, with its size."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        lines = node.end_lineno - node.lineno + 1
        docstring = ast.get_docstring(node, clean=False)
        if docstring is not None:
            lines -= node.body[0].end_lineno - node.body[0].lineno + 1
        arguments = getattr(node, "args", None)
        names = [] if arguments is None else [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        parameters = len([name for name in names if name.arg not in ("self", "cls")])
        found.append(
            {
                "module": path.stem,
                "name": node.name,
                "kind": "class" if isinstance(node, ast.ClassDef) else "function",
                "lines": lines,
                "parameters": parameters,
                "top_level": node in tree.body,
            }
        )
    return found


def notebook_calls(notebook: Path, sizes: dict[tuple[str, str], int]) -> tuple[int, int]:
    """(helpers called, their lines) for one notebook's code cells."""
    import nbformat

    source = "\n".join(
        cell.source for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"
    )
    used = set()
    for module, name in re.findall(r"\b([a-z_]+)\.([A-Za-z_]\w*)", source):
        if (module, name) in sizes:
            used.add((module, name))
    for module, names in re.findall(r"from unet_clustering\.(\w+) import ([\w, ]+)", source):
        used |= {(module, name.strip()) for name in names.split(",") if (module, name.strip()) in sizes}
    return len(used), sum(sizes[key] for key in used)


def report() -> dict:
    modules = sorted(PACKAGE.glob("*.py"))
    found = [item for path in modules for item in definitions(path)]
    sizes = {(item["module"], item["name"]): item["lines"] for item in found if item["top_level"]}
    long_functions = [
        item for item in found if item["kind"] == "function" and item["lines"] > MAX_FUNCTION_LINES
    ]
    many_parameters = [
        item
        for item in found
        if item["kind"] == "function"
        and item["parameters"] > MAX_PARAMETERS
        and item["module"] not in PLOTTING_MODULES
    ]
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return {
        "lines": {path.stem: len(path.read_text(encoding="utf-8").splitlines()) for path in modules},
        "total_lines": sum(len(path.read_text(encoding="utf-8").splitlines()) for path in modules),
        "top_level_definitions": len(sizes),
        "functions_over_40_lines": [
            f"{item['module']}.{item['name']} ({item['lines']})" for item in long_functions
        ],
        "functions_over_6_parameters": [
            f"{item['module']}.{item['name']} ({item['parameters']})" for item in many_parameters
        ],
        "helpers_called": {
            notebook.stem: dict(zip(("helpers", "their_lines"), notebook_calls(notebook, sizes), strict=True))
            for notebook in notebooks
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arguments = parser.parse_args(argv)
    figures = report()
    if arguments.json:
        print(json.dumps(figures, indent=2))
        return 0
    for module, lines in figures["lines"].items():
        print(f"{module:>14}: {lines:5d} lines")
    print(
        f"{'src/ in all':>14}: {figures['total_lines']:5d} lines, {figures['top_level_definitions']} definitions"
    )
    print("functions over 40 lines:", figures["functions_over_40_lines"] or "none")
    print("non-plotting functions over 6 parameters:", figures["functions_over_6_parameters"] or "none")
    for notebook, calls in figures["helpers_called"].items():
        print(f"{notebook}: {calls['helpers']} helpers called, {calls['their_lines']} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
