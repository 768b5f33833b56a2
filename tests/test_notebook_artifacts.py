"""Notebooks run out of order, or after the model changed, stop at once and name the notebook to run."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from unet_clustering import config, unet

ROOT = Path(__file__).resolve().parents[1]


def run_until_error(notebook: str, artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(artifacts))
    monkeypatch.setenv(config.PROFILE_ENV, "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = ROOT / "notebooks" / notebook
    client = NotebookClient(
        nbformat.read(path, as_version=4),
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    with pytest.raises(CellExecutionError) as caught:
        client.execute()
    return str(caught.value)


def save_smoke_model(artifacts: Path, base_filters: int | None = None) -> Path:
    profile = config.get_profile("smoke")
    model = unet.build_unet(
        profile.image_size, base_filters=base_filters or profile.base_filters, depth=profile.depth
    )
    artifacts.mkdir(parents=True, exist_ok=True)
    model.save(artifacts / config.ARTIFACTS["model"][0])
    return artifacts / config.ARTIFACTS["model"][0]


@pytest.mark.parametrize(
    "notebook", ["04_feature_extraction.ipynb", "05_clustering.ipynb", "06_visualization.ipynb"]
)
def test_without_a_model_the_notebook_asks_for_03(notebook: str, tmp_path: Path, monkeypatch) -> None:
    message = run_until_error(notebook, tmp_path, monkeypatch)
    assert "MissingArtifactError" in message and "03_training.ipynb" in message


@pytest.mark.parametrize(
    ("notebook", "maker"),
    [
        ("05_clustering.ipynb", "04_feature_extraction.ipynb"),
        ("06_visualization.ipynb", "05_clustering.ipynb"),
    ],
)
def test_with_a_model_but_nothing_else_the_notebook_names_the_next_maker(
    notebook: str, maker: str, tmp_path: Path, monkeypatch
) -> None:
    save_smoke_model(tmp_path)
    message = run_until_error(notebook, tmp_path, monkeypatch)
    assert "MissingArtifactError" in message and maker in message


def test_06_refuses_clustering_results_made_with_another_model(tmp_path: Path, monkeypatch) -> None:
    earlier = save_smoke_model(tmp_path, base_filters=4)
    config.write_json(
        tmp_path / config.ARTIFACTS["clustering"][0],
        {"chosen_k": 5, "model_sha256": config.file_sha256(earlier)},
    )
    save_smoke_model(tmp_path)  # trained again since notebook 05 ran
    message = run_until_error("06_visualization.ipynb", tmp_path, monkeypatch)
    assert "StaleArtifactError" in message and "05_clustering.ipynb" in message
