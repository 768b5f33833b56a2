"""The project's promises about its notebooks, README and CI script."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from unet_clustering import config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_exist_in_numbered_order() -> None:
    numbers = [int(path.name[:2]) for path in NOTEBOOKS]
    assert numbers[:3] == [1, 2, 3]
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_without_outputs_in_canonical_form(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text == load_tool("notebook_format").canonical(text), "run `make format`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_follows_the_house_style(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    cells = notebook.cells
    headings = [
        line
        for cell in cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("# ")
    ]
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "starts with its H1 title"
    assert len(headings) == 1, f"exactly one H1, found {headings}"
    assert "**Reads:**" in cells[0].source and "**Writes:**" in cells[0].source, (
        "overview says what it reads/writes"
    )
    assert any(cell.cell_type == "markdown" and cell.source.startswith("## Setup") for cell in cells)

    parameters = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1, "one cell tagged 'parameters'"
    for node in ast.parse(parameters[0].source).body:
        assert isinstance(node, ast.Assign), "the parameters cell only assigns values"
        for target in node.targets:
            assert isinstance(target, ast.Name) and target.id.isupper(), (
                f"{ast.unparse(target)} is not upper-case"
            )

    for previous, cell in zip(cells, cells[1:], strict=False):
        if cell.cell_type == "code":
            assert previous.cell_type == "markdown", f"code cell without a lead-in: {cell.source[:60]!r}"
            assert previous.source.rstrip().endswith(":"), (
                f"lead-in does not end with a colon: {previous.source[-80:]!r}"
            )
        if cell.cell_type == "code":
            assert "import *" not in cell.source and "%run" not in cell.source


def test_repository_path_is_the_same_everywhere() -> None:
    colab = re.compile(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/")
    install = re.compile(r"git\+https://github\.com/([\w.-]+/[\w.-]+)")
    found = set(colab.findall((ROOT / "README.md").read_text()))
    for path in NOTEBOOKS:
        text = path.read_text()
        found |= set(colab.findall(text)) | set(install.findall(text.replace('\\"', '"')))
    assert found == {config.REPOSITORY}


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in readme, f"{path.name} is missing from the README's notebooks table"
