"""Copy the code the notebooks teach into the package, so that each thing has one definition.

    python tools/export.py          # rewrite the exported blocks in src/unet_clustering/
    python tools/export.py --check  # exit 1, naming the notebook, when a block differs from it

The notebooks are the source of the code they teach. A code cell whose first line is
``#| export MODULE`` (for example ``#| export unet`` in ``02_unet.ipynb``) holds definitions that
later notebooks and the package reuse: this tool copies such cells, in notebook order, into
``src/unet_clustering/MODULE.py``, between two marker lines that name the notebook::

    # ---- Exported from notebooks/02_unet.ipynb: edit the notebook, then run `make export`. ----
    ...
    # ---- End of the code exported from notebooks/02_unet.ipynb. ----

The rest of the module (its docstring, imports and any plumbing that is not the lesson) is written
by hand. Exported cells therefore hold no import statements: the module's own imports serve them,
and the notebook's import cell mirrors those imports. The block is formatted with ruff, as the
rest of the code is.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "unet_clustering"
EXPORT = re.compile(r"^#\| export ([a-z_]+)\s*$")


def begin_marker(notebook: str) -> str:
    return f"# ---- Exported from notebooks/{notebook}: edit the notebook, then run `make export`. ----"


def end_marker(notebook: str) -> str:
    return f"# ---- End of the code exported from notebooks/{notebook}. ----"


class ExportError(ValueError):
    """A notebook or module does not follow the export convention."""


def exported_cells(notebook: Path) -> dict[str, list[str]]:
    """``{module: [cell source without its export line, ...]}`` for one notebook."""
    blocks: dict[str, list[str]] = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        first_line, _, body = cell.source.partition("\n")
        match = EXPORT.match(first_line) if cell.cell_type == "code" else None
        if not match:
            continue
        imports = [node for node in ast.parse(body).body if isinstance(node, (ast.Import, ast.ImportFrom))]
        if imports:
            raise ExportError(
                f"{notebook.name}: an exported cell imports ({ast.unparse(imports[0])}); put imports in "
                f"the notebook's import cell and in src/unet_clustering/{match.group(1)}.py itself."
            )
        blocks.setdefault(match.group(1), []).append(body.strip("\n"))
    return blocks


def replace_block(text: str, notebook: str, code: str, module: Path) -> str:
    """``text`` of ``module`` with the block of ``notebook`` replaced by ``code``."""
    begin, end = begin_marker(notebook), end_marker(notebook)
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ExportError(
            f"{module.relative_to(ROOT)} needs the two marker lines, once each, where the code of "
            f"notebooks/{notebook} goes:\n{begin}\n{end}"
        )
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{code}\n\n\n{end}{tail}"


def ruff_format(text: str, path: Path) -> str:
    """``text`` as ``ruff format`` writes it, using the project's settings."""
    completed = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if completed.returncode != 0:
        raise ExportError(f"ruff could not format {path.relative_to(ROOT)}:\n{completed.stderr}")
    return completed.stdout


def exported_modules(notebooks: list[Path]) -> dict[Path, str]:
    """``{module path: its text with every notebook's block brought up to date}``."""
    texts: dict[Path, str] = {}
    for notebook in notebooks:
        for module, cells in exported_cells(notebook).items():
            path = PACKAGE / f"{module}.py"
            if not path.is_file():
                raise ExportError(f"{notebook.name} exports to {module}, but {path} does not exist.")
            text = texts.get(path, path.read_text(encoding="utf-8"))
            texts[path] = replace_block(text, notebook.name, "\n\n\n".join(cells), path)
    return {path: ruff_format(text, path) for path, text in texts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report blocks that differ")
    arguments = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    try:
        modules = exported_modules(notebooks)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    differing = [path for path, text in modules.items() if path.read_text(encoding="utf-8") != text]
    if arguments.check:
        for path in differing:
            sources = ", ".join(
                f"notebooks/{notebook.name}"
                for notebook in notebooks
                if begin_marker(notebook.name) in modules[path]
            )
            print(
                f"{path.relative_to(ROOT)} differs from the code exported by {sources}: edit the notebook, "
                "then run `make export` (never edit the block in the module).",
                file=sys.stderr,
            )
        print(f"{len(modules)} module(s) checked against {len(notebooks)} notebook(s)")
        return 1 if differing else 0
    for path in differing:
        path.write_text(modules[path], encoding="utf-8")
    print(f"{len(modules)} module(s) exported, {len(differing)} rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
