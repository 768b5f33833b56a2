"""Tests for serving.py: LiteRT files from ``model.export``, their interpreter, and the timing.

A tiny untrained U-Net (32 px, depth 2) stands in for the trained one: conversion and inference
depend on the architecture, not on what the weights learned.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from unet_clustering import predict, serving, unet

SIZE = 32


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return unet.build_unet(image_size=SIZE, base_filters=4, depth=2)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rows, columns = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    random = np.random.default_rng(0)
    smooth = np.stack([rows, columns, rows * columns], axis=-1)
    return np.clip(smooth[None] + random.normal(0, 0.1, (12, SIZE, SIZE, 3)), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def litert_files(model, images, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serving") / "nested"  # export_litert creates missing folders
    return {
        quantization: serving.export_litert(
            model, folder / f"unet_{quantization}.tflite", quantization, images
        )
        for quantization in serving.QUANTIZATIONS
    }


def test_the_files_shrink_with_the_number_format(litert_files) -> None:
    sizes = {name: path.stat().st_size for name, path in litert_files.items()}
    assert sizes["float16"] < 0.75 * sizes["float32"]
    assert sizes["int8"] < sizes["float16"]  # a tiny model: the file's fixed overhead weighs more


@pytest.mark.parametrize(("quantization", "tolerance"), [("float32", 1e-4), ("float16", 0.05)])
def test_float_files_compute_what_keras_computes(
    model, images, litert_files, quantization, tolerance
) -> None:
    litert = serving.LiteRTModel(litert_files[quantization], num_threads=1)
    expected = model.predict_on_batch(images)
    got = litert.predict_on_batch(images)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() < tolerance


def test_int8_keeps_most_pixels_of_the_float_masks(model, images, litert_files) -> None:
    litert = serving.LiteRTModel(litert_files["int8"], num_threads=1)
    expected = predict.predict_masks(model, images)
    got = predict.predict_masks(litert, images)
    assert got.shape == expected.shape
    assert (got == expected).mean() > 0.9
    # Quantized, not a copy of the float model: the logits move, a little.
    difference = np.abs(litert.predict_on_batch(images) - model.predict_on_batch(images))
    assert 0 < difference.max() < 0.5 * np.abs(model.predict_on_batch(images)).max()


def test_the_interpreter_looks_like_a_keras_model_to_predict(model, litert_files) -> None:
    litert = serving.LiteRTModel(litert_files["float32"])
    assert litert.input_shape == (None, SIZE, SIZE, 3) == tuple(model.input_shape)
    frame = (np.random.default_rng(1).uniform(0, 255, (45, 70, 3))).astype(np.uint8)
    mask = predict.segment_frame(litert, frame)
    assert mask.shape == (45, 70) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, predict.segment_frame(model, frame))


def test_unknown_quantization_and_int8_without_images_are_refused(model, tmp_path) -> None:
    with pytest.raises(ValueError, match="one of"):
        serving.export_litert(model, tmp_path / "unet.tflite", "int4")
    with pytest.raises(ValueError, match="representative_images"):
        serving.export_litert(model, tmp_path / "unet.tflite", "int8")
    assert not list(tmp_path.iterdir())


class CountingModel:
    """Takes ``seconds[i]`` on its i-th call and records what it was given."""

    def __init__(self, seconds, clock):
        self.seconds, self.clock, self.batches = list(seconds), clock, []

    def predict_on_batch(self, images):
        self.batches.append(np.asarray(images).shape)
        self.clock.now += self.seconds[len(self.batches) - 1]


class FakeClock:
    now = 0.0

    def perf_counter(self):
        return self.now


def test_measure_latency_times_single_images_after_warm_up(monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(serving.time, "perf_counter", clock.perf_counter)
    # Two slow warm-up calls, then nine of 10 ms and one of 100 ms.
    model = CountingModel([1.0, 1.0] + [0.010] * 9 + [0.100], clock)
    timing = serving.measure_latency(model, np.zeros((SIZE, SIZE, 3), np.float32), runs=10, warmup=2)
    assert model.batches == [(1, SIZE, SIZE, 3)] * 12
    assert timing["median ms"] == pytest.approx(10.0)
    assert timing["95th percentile ms"] == pytest.approx(10.0 + 0.55 * 90.0)
    assert timing["frames/s"] == pytest.approx(10 / 0.19)
