"""data.py: the real tfds builder on a synthetic local copy, label mapping, augmentation, offline failure."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from synthetic_pets import GOOD_TEST, GOOD_TRAIN, REENCODED, SKIPPED, make_pets_folder

from unet_clustering import config, data

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared(pets_folder: Path, prepared_dir: Path) -> data.DataSource:
    return data.prepare_local_copy(pets_folder, data_dir=str(prepared_dir / "folder"))


def test_local_folder_goes_through_the_real_builder(prepared: data.DataSource) -> None:
    report = prepared.report
    assert report["kept"] == {"train": len(GOOD_TRAIN) + len(REENCODED), "test": len(GOOD_TEST)}
    skipped = {item["name"]: item["reason"] for item in report["skipped"]}
    # Every broken listed example is named with its reason, plus the malformed split line.
    assert set(skipped) == SKIPPED | {"trainval.txt:18"}
    assert skipped["Abyssinian_60"] == "empty image"
    assert skipped["Abyssinian_61"].startswith("unreadable image")
    assert "outside {1, 2, 3}" in skipped["Abyssinian_62"] and "[7]" in skipped["Abyssinian_62"]
    assert "48x36 but its image is 48x40" in skipped["Abyssinian_63"]
    assert "Abyssinian_64.jpg is missing" in skipped["Abyssinian_64"]
    assert "trimaps/Abyssinian_65.png is missing" in skipped["Abyssinian_65"]
    assert {item["name"]: item["from"] for item in report["reencoded"]} == {
        "Abyssinian_50": "PNG RGBA",
        "Abyssinian_51": "GIF P",
        "Abyssinian_52": "JPEG L",
        "Abyssinian_53": "JPEG CMYK",
    }
    assert report["unlisted_images"] == ["Abyssinian_99"]
    assert report["prepared_splits"] == report["kept"]
    summary = data.report_summary(report)
    assert "Skipped 7" in summary and "Re-encoded 4" in summary and "Abyssinian_99" in summary


def test_prepared_examples_decode_with_their_trimaps(prepared: data.DataSource, pets_folder: Path) -> None:
    (train, test), info, source = data.load(
        ["train", "test"], local_dir=pets_folder, data_dir=prepared.data_dir
    )
    assert source.data_dir == prepared.data_dir
    names = {example["file_name"].decode() for example in train.as_numpy_iterator()}
    assert names == {f"{name}.jpg" for name in [*GOOD_TRAIN, *REENCODED]}
    for example in test.as_numpy_iterator():
        assert example["image"].shape == (40, 48, 3)
        assert set(np.unique(example["segmentation_mask"])) <= {1, 2, 3}
    assert info.splits["test"].num_examples == len(GOOD_TEST)


def test_second_call_reuses_the_prepared_copy(prepared: data.DataSource, pets_folder: Path) -> None:
    again = data.prepare_local_copy(pets_folder, data_dir=prepared.data_dir)
    assert again.prepare_s == 0.0  # nothing was packed or prepared
    assert again.report["kept"] == prepared.report["kept"]
    assert not (Path(prepared.data_dir) / "downloads").exists()


def test_official_archives_are_accepted(prepared_dir: Path, tmp_path: Path) -> None:
    folder = make_pets_folder(tmp_path / "copy")
    archive_folder = tmp_path / "archives"
    data.pack_local_folder(folder, archive_folder)
    source = data.prepare_local_copy(archive_folder, data_dir=str(prepared_dir / "archives"))
    assert source.kind == "local-archives"
    assert source.report["prepared_splits"] == {
        "train": len(GOOD_TRAIN) + len(REENCODED),
        "test": len(GOOD_TEST),
    }


def test_unusable_local_paths_are_explained(tmp_path: Path) -> None:
    with pytest.raises(data.LocalSourceError, match="does not exist"):
        data.resolve_source(tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    with pytest.raises(data.LocalSourceError, match=r"annotations/trimaps.*annotations/trainval.txt"):
        data.resolve_source(tmp_path)


def raw_example(trimap: np.ndarray, image: np.ndarray | None = None) -> dict[str, tf.Tensor]:
    height, width = trimap.shape
    if image is None:
        image = np.zeros((height, width, 3), np.uint8)
    return {
        "image": tf.constant(image),
        "segmentation_mask": tf.constant(trimap[..., None]),
        "label": tf.constant(0, tf.int64),
        "species": tf.constant(0, tf.int64),
        "file_name": tf.constant("x.jpg"),
    }


def test_trimap_values_map_to_class_indices() -> None:
    trimap = np.array([[1, 2], [3, 2]], np.uint8)
    example = data.preprocess(raw_example(trimap), image_size=2)
    np.testing.assert_array_equal(example["mask"][..., 0].numpy(), [[0, 1], [2, 1]])
    assert [config.OXFORD_PET_CLASSES.names[index] for index in (0, 1, 2)] == ["pet", "background", "border"]


def test_resizing_keeps_masks_integer_and_images_in_unit_range() -> None:
    random = np.random.default_rng(0)
    trimap = random.integers(1, 4, (37, 53)).astype(np.uint8)
    image = random.integers(0, 256, (37, 53, 3)).astype(np.uint8)
    example = data.preprocess(raw_example(trimap, image), image_size=16)
    assert example["mask"].dtype == tf.int32 and example["mask"].shape == (16, 16, 1)
    # Nearest neighbour: every output label is one of the input labels, never a blend.
    assert set(np.unique(example["mask"].numpy())) <= {0, 1, 2}
    values = example["image"].numpy()
    assert values.dtype == np.float32 and values.min() >= 0.0 and values.max() <= 1.0


def mask_coded_pair(size: int = 64) -> tuple[tf.Tensor, tf.Tensor]:
    """A mask of large asymmetric blocks and an image whose every channel equals mask / 2."""
    mask = np.ones((size, size), np.int32)
    mask[: size // 2, : size // 4] = 0
    mask[size // 2 :, size // 2 :] = 2
    mask[size // 8 : size // 4, size // 2 : size - 4] = 0
    image = np.repeat((mask / 2.0)[..., None], 3, axis=-1).astype(np.float32)
    return tf.constant(image), tf.constant(mask[..., None])


def agreement(image: tf.Tensor, mask: tf.Tensor) -> float:
    decoded = np.round(image.numpy()[..., 0] * 2).astype(int)
    return float(np.mean(decoded == mask.numpy()[..., 0]))


def test_augmentation_moves_image_and_mask_together() -> None:
    image, mask = mask_coded_pair()
    flipped_some, scores = False, []
    for seed in range(12):
        new_image, new_mask = data.augment_pair(image, mask, tf.constant([seed, 7]), colour_jitter=False)
        assert new_image.shape == (64, 64, 3) and new_mask.shape == (64, 64, 1)
        assert set(np.unique(new_mask.numpy())) <= {0, 1, 2}
        scores.append(agreement(new_image, new_mask))
        flipped_some |= not np.array_equal(new_mask.numpy(), mask.numpy())
    assert flipped_some
    # Only pixels on a class edge may differ (bilinear image vs nearest mask after the zoom).
    assert min(scores) > 0.95
    # The check would catch a mask transformed apart from its image:
    assert agreement(image, tf.reverse(mask, axis=[1])) < 0.8


def test_colour_jitter_changes_the_image_only() -> None:
    image, mask = mask_coded_pair()
    image = image * 0.5 + 0.25
    plain = data.augment_pair(image, mask, tf.constant([3, 4]), colour_jitter=False)
    jittered = data.augment_pair(image, mask, tf.constant([3, 4]))
    np.testing.assert_array_equal(plain[1].numpy(), jittered[1].numpy())
    assert not np.allclose(plain[0].numpy(), jittered[0].numpy())
    assert jittered[0].numpy().min() >= 0.0 and jittered[0].numpy().max() <= 1.0


def synthetic_examples(count: int = 6) -> tf.data.Dataset:
    from synthetic_pets import paint_example

    pairs = [paint_example(seed) for seed in range(count)]
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": np.stack([image for image, _ in pairs]),
            "segmentation_mask": np.stack([trimap[..., None] for _, trimap in pairs]),
            "label": np.zeros(count, np.int64),
            "species": np.zeros(count, np.int64),
            "file_name": [f"{index}.jpg" for index in range(count)],
        }
    )


def epoch_arrays(dataset: tf.data.Dataset) -> np.ndarray:
    return np.concatenate([images.numpy() for images, _ in dataset])


def test_augmentation_runs_after_the_cache_so_epochs_differ_and_seeds_repeat() -> None:
    pipeline = data.make_pipeline(synthetic_examples(), image_size=32, batch_size=4, training=True, seed=5)
    first, second = epoch_arrays(pipeline), epoch_arrays(pipeline)
    assert first.shape == (6, 32, 32, 3)
    assert not np.allclose(first, second)  # a fresh transform every epoch
    again = data.make_pipeline(synthetic_examples(), image_size=32, batch_size=4, training=True, seed=5)
    np.testing.assert_array_equal(first, epoch_arrays(again))  # same seed, same run


def test_array_batches_augment_pairs_in_memory_and_keep_an_ignore_label() -> None:
    image, mask = mask_coded_pair()
    ignored = np.where(np.arange(64)[None, :] < 16, 255, mask.numpy()[..., 0]).astype(
        np.uint8
    )  # left quarter
    images, masks = np.stack([image.numpy()] * 10), np.stack([ignored] * 10)
    batches = data.array_batches(images, masks, batch_size=4, seed=3)
    epoch = [(batch_images.numpy(), batch_masks.numpy()) for batch_images, batch_masks in batches]
    assert [len(batch_images) for batch_images, _ in epoch] == [4, 4, 2]
    out_masks = np.concatenate([batch_masks for _, batch_masks in epoch])
    assert out_masks.shape == (10, 64, 64, 1) and set(np.unique(out_masks)) <= {0, 1, 2, 255}
    # The ignored band moves with the zooms, crops and flips, whole: every mask keeps it, at one side.
    assert all(0 < (labels == 255).mean() < 0.4 for labels in out_masks)
    assert (
        len({(labels[..., 0] == 255)[:, 0].any() for labels in out_masks}) == 2
    )  # left and right both occur
    again = [batch_images.numpy() for batch_images, _ in data.array_batches(images, masks, 4, seed=3)]
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate([i for i, _ in epoch]))


def test_evaluation_pipelines_are_deterministic_and_unaugmented() -> None:
    pipeline = data.make_pipeline(synthetic_examples(), image_size=32, batch_size=4)
    np.testing.assert_array_equal(epoch_arrays(pipeline), epoch_arrays(pipeline))
    images, masks = next(iter(pipeline))
    assert images.shape == (4, 32, 32, 3) and masks.shape == (4, 32, 32, 1) and masks.dtype == tf.int32


def test_validation_comes_from_train_and_profiles_limit_sizes() -> None:
    quick = config.get_profile("quick")
    assert config.split_sizes(300, 298, quick) == {"train": 270, "validation": 30, "test": 298}
    smoke = config.get_profile("smoke")
    assert config.split_sizes(300, 298, smoke) == {"train": 32, "validation": 8, "test": 16}
    with pytest.raises(ValueError, match="too few"):
        config.split_sizes(1, 5, quick)


def test_make_datasets_and_split_arrays_on_the_synthetic_copy(
    prepared: data.DataSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "resolve_source", lambda local_dir=None, data_dir=None: prepared)
    smoke = config.get_profile("smoke")
    bundle = data.make_datasets(smoke)
    kept_train = len(GOOD_TRAIN) + len(REENCODED)
    assert bundle.counts["train"] + bundle.counts["validation"] == kept_train
    assert sum(len(images) for images, _ in bundle.train) == bundle.counts["train"]
    arrays = data.split_arrays("test", smoke)
    assert arrays["image"].shape == (len(GOOD_TEST), 64, 64, 3) and arrays["mask"].shape == (
        len(GOOD_TEST),
        64,
        64,
    )
    assert set(arrays["file_name"]) == {f"{name}.jpg" for name in GOOD_TEST}
    assert len(data.split_arrays("test", smoke, max_examples=2, image_size=32)["image"][0]) == 32


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_host_is_detected() -> None:
    assert data._host_reachable("127.0.0.1", port=closed_port(), timeout=2.0) is False


def run_cli(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unet_clustering.data", *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=PROJECT_ROOT,
    )


def test_offline_without_a_local_copy_fails_fast_with_both_remedies(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != data.SOURCE_ENV}
    env["TFDS_DATA_DIR"] = str(tmp_path / "tfds")
    # The download host is made unreachable the same way on every machine: a closed local port.
    env["UNET_DATASET_PROBE"] = f"127.0.0.1:{closed_port()}"
    result = run_cli(env=env)
    assert result.returncode == 2, result.stderr
    assert "OXFORD_PETS_DIR" in result.stderr and "internet" in result.stderr
    assert result.stdout == ""
    # Nothing half-downloaded is left behind.
    assert not (tmp_path / "tfds" / "downloads").exists()


def test_cli_prints_one_json_line(prepared: data.DataSource, pets_folder: Path) -> None:
    env = dict(os.environ, UNET_TFDS_DIR=str(Path(prepared.data_dir).parent))
    # Point the prepared-copy folder at the fixture's, so the CLI reuses it.
    fingerprint_dir = (
        Path(env["UNET_TFDS_DIR"]) / f"oxford_iiit_pet-{data._fingerprint(pets_folder, 'local-folder')}"
    )
    if not fingerprint_dir.exists():
        fingerprint_dir.symlink_to(Path(prepared.data_dir), target_is_directory=True)
    result = run_cli("--local-dir", str(pets_folder), env=env)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip())
    assert line["source"] == "local-folder"
    assert line["splits"] == {"train": len(GOOD_TRAIN) + len(REENCODED), "test": len(GOOD_TEST)}
    assert line["skipped"] == len(SKIPPED) + 1 and line["reencoded"] == len(REENCODED)


def test_after_an_offline_failure_a_local_copy_works_without_clean_up(
    tmp_path: Path, pets_folder: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if key != data.SOURCE_ENV}
    env.update(TFDS_DATA_DIR=str(tmp_path / "tfds"), UNET_DATASET_PROBE=f"127.0.0.1:{closed_port()}")
    env["UNET_TFDS_DIR"] = str(tmp_path / "prepared")
    assert run_cli(env=env).returncode == 2
    result = run_cli(env={**env, data.SOURCE_ENV: str(pets_folder)})
    assert result.returncode == 0, result.stderr
    # This call prepares the copy, and tfds' own messages about it stay off stdout.
    assert len(result.stdout.splitlines()) == 1
    assert json.loads(result.stdout)["splits"]["test"] == len(GOOD_TEST)
