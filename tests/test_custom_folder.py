"""A folder of one's own photos and label masks, through data.py and through the notebooks.

The synthetic folders have four classes (the background is not class 0) or black-and-white masks,
photos of odd sizes, and palette PNG masks. The binary-mask copy of the sample is made by
``bench/binary_masks.py`` in a temporary folder; its test runs where ``$OXFORD_PETS_DIR`` names the
sample, as CI sets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from synthetic_folders import FOUR_CLASSES, make_folder, make_scene_folder

from unet_clustering import config, data, folders, visualization

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "artifacts"
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(folder))
    return folder


def examples_by_name(split: str) -> dict[str, dict]:
    (examples,), _, _ = data.load([split])
    found = {}
    for example in examples.as_numpy_iterator():
        found[example["file_name"].decode()] = example
    return found


def test_the_choice_is_recorded_and_load_serves_the_folder(tmp_path: Path, artifacts: Path) -> None:
    root = make_scene_folder(tmp_path / "scenes", count=10)
    classes = data.choose_dataset(root)
    assert classes == config.Classes(FOUR_CLASSES, background=1)
    record = config.read_json(artifacts / "dataset.json")
    assert record["folder"] == str(root.resolve()) and record["class_names"] == list(FOUR_CLASSES)
    assert config.dataset_classes() == classes and visualization.class_colors()[1].tolist() == [0, 114, 178]
    (train, test), info, source = data.load(["train", "test"])
    assert (info.splits["train"].num_examples, info.splits["test"].num_examples) == (8, 2)
    assert source.kind == "folder" and "10 images with a mask" in data.report_summary(source.report)
    for name, example in {**examples_by_name("train"), **examples_by_name("test")}.items():
        with Image.open(root / "images" / name) as photo:
            assert example["image"].shape == (photo.height, photo.width, 3)  # odd sizes, untouched
        # Palette PNGs hold class indices, not colours; the examples store class i as i + 1.
        stored = np.asarray(Image.open(root / "masks" / name.replace(".jpg", ".png")))
        np.testing.assert_array_equal(example["segmentation_mask"][..., 0], stored + data.TRIMAP_OFFSET)
        assert example["label"] == -1 and example["species"] == -1
    batch = next(iter(data.make_pipeline(train, image_size=32, batch_size=4)))
    assert batch[0].shape == (4, 32, 32, 3) and set(np.unique(batch[1])) <= {0, 1, 2, 3}
    assert data.label_names() == {"label": [], "species": []}
    assert data.find_example("scene_03.jpg", split="train")["image"].shape[2] == 3


def test_binary_masks_become_background_and_foreground(tmp_path: Path, artifacts: Path) -> None:
    root = make_folder(tmp_path / "binary", count=5, binary=True)
    classes = data.choose_dataset(root)
    assert classes.names == ("background", "foreground") and classes.foreground == (1,)
    masks = [example["segmentation_mask"] for example in examples_by_name("train").values()]
    assert set(np.unique(np.concatenate([mask.ravel() for mask in masks]))) == {1, 2}


def test_values_of_classes_json_map_to_class_indices(tmp_path: Path, artifacts: Path) -> None:
    root = make_folder(tmp_path / "grey", count=4, classes=3)
    for mask in (root / "masks").iterdir():  # store the classes 0, 1, 2 as 0, 128, 255
        labels = np.asarray(Image.open(mask))
        Image.fromarray(np.array([0, 128, 255], np.uint8)[labels]).save(mask)
    spec = {"names": ["background", "tumour", "oedema"], "values": [0, 128, 255]}
    (root / "classes.json").write_text(json.dumps(spec))
    data.choose_dataset(root)
    for name, example in examples_by_name("train").items():
        labels = np.arange(53)[None, :].repeat(37, 0) * 3 // 53
        np.testing.assert_array_equal(example["segmentation_mask"][..., 0], labels + 1, err_msg=name)


def test_a_bad_file_stops_the_choice_with_its_name(tmp_path: Path, artifacts: Path) -> None:
    root = make_folder(tmp_path / "data", count=4, classes=2)
    data.choose_dataset(root)
    before = (artifacts / "dataset.json").read_text()
    Image.new("L", (20, 20)).save(root / "masks" / "photo_2.png")
    with pytest.raises(folders.FolderError, match="photo_2.png is 20 x 20 pixels"):
        data.choose_dataset(root)  # the changed folder is scanned again, not taken from the cache
    assert (artifacts / "dataset.json").read_text() == before


def test_choosing_oxford_again_forgets_the_folder(
    tmp_path: Path, artifacts: Path, pets_folder: Path, prepared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(data.SOURCE_ENV, str(pets_folder))
    monkeypatch.setenv(data.PREPARED_ENV, str(prepared_dir / "choice"))
    data.choose_dataset(make_folder(tmp_path / "data", count=4))
    assert data.load("train")[2].kind == "folder"
    assert data.choose_dataset(None) == config.OXFORD_PET_CLASSES
    assert config.dataset_folder() is None and data.load("train")[2].kind == "local-folder"
    monkeypatch.setenv(config.DATASET_ENV, str(tmp_path / "data"))  # the environment is 01's default
    assert data.choose_dataset().names == ("class 0", "class 1", "class 2", "class 3")


def run_series(notebooks: list[str], folder: Path, artifacts: Path, timeout: int = 600) -> str:
    env = dict(
        os.environ,
        UNET_PROFILE="smoke",
        UNET_ARTIFACTS_DIR=str(artifacts),
        MPLBACKEND="Agg",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env.pop(config.DATASET_ENV, None)
    paths = [str(next((ROOT / "notebooks").glob(f"{number}_*.ipynb"))) for number in notebooks]
    command = [sys.executable, "tools/run_notebooks.py", *paths, "-p", "DATASET_DIR", str(folder)]
    command += ["--output-dir", str(artifacts.parent / "executed")]
    finished = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return finished.stdout


def test_notebooks_01_to_06_run_on_a_folder_of_four_classes(tmp_path: Path) -> None:
    root = make_scene_folder(tmp_path / "scenes")
    artifacts = tmp_path / "artifacts"
    printed = run_series(["01", "02", "03", "04", "05", "06"], root, artifacts)
    assert f"classes {', '.join(FOUR_CLASSES)}" in printed
    scores = json.loads((artifacts / "metrics.json").read_text())["test_metrics"]
    assert set(scores["iou_per_class"]) == set(FOUR_CLASSES) and np.isfinite(scores["fg_iou"])
    assert np.asarray(scores["confusion_matrix"]).shape == (4, 4)
    model = keras.saving.load_model(artifacts / "unet.keras", compile=False)
    assert model.output_shape[-1] == 4
    clustering = json.loads((artifacts / "clustering_metrics.json").read_text())
    assert clustering["pet_level"] == {}  # the folder names no species or breeds
    # 06's own photo comes out painted in the data's palette: road (the background) blue.
    (painted,) = (artifacts / "predictions").glob("*_mask.png")
    mask = np.asarray(Image.open(painted).convert("RGB")).reshape(-1, 3)
    palette = visualization.class_colors(config.Classes(FOUR_CLASSES, background=1))
    assert {tuple(colour) for colour in np.unique(mask, axis=0)} <= {tuple(colour) for colour in palette}


def test_a_binary_mask_copy_of_the_sample_loads_and_trains(tmp_path: Path, artifacts: Path) -> None:
    sample = os.environ.get(data.SOURCE_ENV)
    if not sample or not (Path(sample) / "annotations" / "trimaps").is_dir():
        pytest.skip(f"${data.SOURCE_ENV} does not name the Oxford-IIIT Pet sample")
    copy = tmp_path / "binary"
    command = [
        sys.executable,
        "bench/binary_masks.py",
        "--source",
        sample,
        "--folder",
        str(copy),
        "--notebooks",
    ]
    made = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
    counts = json.loads(made.stdout.splitlines()[0])
    assert counts["train"] > 0 and counts["test"] > 0
    assert data.choose_dataset(copy).names == ("background", "foreground")
    _, info, source = data.load(["train", "test"])
    assert {split: info.splits[split].num_examples for split in ("train", "test")} == {
        split: counts[split] for split in ("train", "test")
    }
    assert source.report["unpaired"] == []
    for name, example in list(examples_by_name("test").items())[:5]:
        with Image.open(Path(sample) / "annotations" / "trimaps" / name.replace(".jpg", ".png")) as trimap:
            foreground = np.asarray(trimap) != 2
        np.testing.assert_array_equal(example["segmentation_mask"][..., 0] - data.TRIMAP_OFFSET, foreground)
    run_series(["01", "03"], copy, tmp_path / "series")
    scores = json.loads((tmp_path / "series" / "metrics.json").read_text())["test_metrics"]
    assert set(scores["iou_per_class"]) == {"background", "foreground"} and 0 <= scores["fg_iou"] <= 1
