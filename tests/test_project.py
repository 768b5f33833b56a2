"""The project's promises about its notebooks, README and CI script."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
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

    sections = [line for cell in cells if cell.cell_type == "markdown" for line in cell.source.splitlines()]
    assert any(line == "## Summary" for line in sections), "ends with a Summary"
    assert any(line.startswith("## Exercises") for line in sections), "ends with Exercises"

    for previous, cell in zip(cells, cells[1:], strict=False):
        if cell.cell_type == "code":
            assert previous.cell_type == "markdown", f"code cell without a lead-in: {cell.source[:60]!r}"
            assert previous.source.rstrip().endswith(":"), (
                f"lead-in does not end with a colon: {previous.source[-80:]!r}"
            )
        if cell.cell_type == "code":
            assert "import *" not in cell.source and "%run" not in cell.source


def test_every_exercises_section_holds_three_or_four_tasks() -> None:
    for path in NOTEBOOKS:
        text = "\n".join(
            cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown"
        )
        exercises = text.split("## Exercises", 1)[1]
        tasks = re.findall(r"^\d\. ", exercises, flags=re.MULTILINE)
        assert 3 <= len(tasks) <= 4, f"{path.name} has {len(tasks)} exercises"


def test_readme_and_notebooks_speak_of_the_project_not_of_how_it_was_made() -> None:
    words = re.compile(r"\b(seed document|seed.s claim|no session|maintainers|lent)\b", re.IGNORECASE)
    for path in [ROOT / "README.md", *NOTEBOOKS]:
        found = words.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path.name} mentions {found}"


def test_exported_blocks_match_their_notebooks() -> None:
    export = load_tool("export")
    assert export.main(["--check"]) == 0, "run `make export` after editing an exported notebook cell"


def test_the_export_check_fails_when_a_block_is_edited_by_hand(tmp_path, monkeypatch) -> None:
    export = load_tool("export")
    for name in ("notebooks", "src"):
        shutil.copytree(
            ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    monkeypatch.setattr(export, "ROOT", tmp_path)
    monkeypatch.setattr(export, "PACKAGE", tmp_path / "src" / "unet_clustering")
    module = tmp_path / "src" / "unet_clustering" / "unet.py"
    module.write_text(module.read_text().replace("BATCH_NORM_MOMENTUM = 0.9", "BATCH_NORM_MOMENTUM = 0.8"))
    assert export.main(["--check"]) == 1
    assert export.main([]) == 0 and "BATCH_NORM_MOMENTUM = 0.9" in module.read_text()
    assert export.main(["--check"]) == 0


def test_every_exported_block_names_a_notebook_that_exports_it() -> None:
    export = load_tool("export")
    for module in (ROOT / "src" / "unet_clustering").glob("*.py"):
        for notebook in re.findall(r"# ---- Exported from notebooks/(\S+):", module.read_text()):
            assert module.stem in export.exported_cells(ROOT / "notebooks" / notebook), (
                module.name,
                notebook,
            )


def test_src_stays_thin_no_long_functions_and_no_private_keras_attributes() -> None:
    figures = load_tool("src_size").report()
    assert figures["functions_over_40_lines"] == []
    assert figures["functions_over_6_parameters"] == []
    for module in (ROOT / "src" / "unet_clustering").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                assert owner in ("self", "cls", "os", "sys"), f"{module.name} reads {ast.unparse(node)}"


@pytest.mark.parametrize(
    ("notebook", "calls"),
    [
        (
            "02_unet.ipynb",
            ["keras.layers.Conv2D(", "keras.layers.Conv2DTranspose(", "keras.layers.Concatenate("],
        ),
        ("03_training.ipynb", ["model.compile(", "model.fit(", "keras.callbacks.BackupAndRestore("]),
        ("05_clustering.ipynb", ["KMeans(", "silhouette_score(", "linear_sum_assignment("]),
        ("06_visualization.ipynb", ['format="tf_saved_model"', 'format="litert"', "representative_dataset"]),
        ("07_semi_supervised.ipynb", ["KMeans(", "ignore_class=IGNORE", "model.fit(", "MIN_CONFIDENCE"]),
    ],
)
def test_the_lesson_is_written_in_the_notebook(notebook: str, calls: list[str]) -> None:
    code = "\n".join(
        cell.source
        for cell in nbformat.read(ROOT / "notebooks" / notebook, as_version=4).cells
        if cell.cell_type == "code"
    )
    assert [call for call in calls if call not in code] == []


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
