"""Latency, frames per second and foreground IoU of the trained U-Net in Keras and as LiteRT files.

    python bench/realtime.py                          # artifacts/unet.keras, every test image, 2 threads
    python bench/realtime.py --model outputs/unet.keras --runs 500 --threads 1
    python bench/realtime.py --quick                  # a few images and calls (the tests use it)

The model is exported as notebook 06 exports it (``serving.export_litert``: float32, float16, and
int8 calibrated on ``--calibration`` training images) into a temporary folder. Then, for Keras and
each LiteRT file, at batch 1 on ``--threads`` CPU threads, it prints one JSON line with:

* ``median_ms`` and ``p95_ms``: the time of one ``predict_on_batch`` call on one test image, over
  ``--runs`` calls after ``--warmup`` (``serving.measure_latency``), and ``frames_per_s``, calls per
  second over those runs;
* ``camera_frames_per_s``: the same for a whole frame of ``--frame-size`` pixels (VGA by default)
  through ``predict.segment_frame``: resizing to the model's size, the model, the argmax and resizing
  the mask back, which is what a video costs per frame;
* ``fg_iou`` on the test split (without the mirror image, as a video runs) and its change from Keras;
* ``bytes``: the size of the file (the ``.keras`` file for Keras, which also holds the optimizer's state).

Then a Markdown table of the same for ``bench/RESULTS.md``. ``cpu_flags`` names the CPU's vector
extensions, since speeds differ between CPUs of one kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from unet_clustering import config, data, metrics, predict, serving, training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import cpu_flags  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the artifacts' unet.keras")
    parser.add_argument("--profile", default=None, help="sizes the data (default: as the notebooks choose)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for TensorFlow and LiteRT")
    parser.add_argument("--runs", type=int, default=300, help="timed calls per variant")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before them")
    parser.add_argument("--calibration", type=int, default=200, help="training images that calibrate int8")
    parser.add_argument("--max-test", type=int, default=None, help="test images scored (default: all)")
    parser.add_argument("--frame-size", default="640x480", help="WIDTHxHEIGHT of the camera frame")
    parser.add_argument("--quick", action="store_true", help="few images and calls: a smoke test")
    arguments = parser.parse_args(argv)
    if arguments.quick:
        arguments.runs, arguments.warmup, arguments.calibration = 5, 2, 4
        arguments.max_test = arguments.max_test or 4
    width, _, height = arguments.frame_size.partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        parser.error(f"--frame-size must look like 640x480; got {arguments.frame_size!r}")
    arguments.frame_shape = (int(height), int(width))
    return arguments


class SegmentFrame:
    """``predict_on_batch`` that runs ``predict.segment_frame`` on a camera-size frame, for timing."""

    def __init__(self, model, frame: np.ndarray):
        self.model, self.frame = model, frame

    def predict_on_batch(self, images):
        return predict.segment_frame(self.model, self.frame)


def measure(name: str, model, path: Path, test: dict, arguments: argparse.Namespace) -> dict:
    timing = serving.measure_latency(model, test["image"][0], arguments.runs, arguments.warmup)
    frame = cv2.resize(test["image"][0], arguments.frame_shape[::-1], interpolation=cv2.INTER_LINEAR)
    frame = np.round(frame * 255).astype(np.uint8)
    camera = serving.measure_latency(SegmentFrame(model, frame), test["image"][0], arguments.runs, 2)
    masks = predict.predict_masks(model, test["image"])
    scores = metrics.segmentation_scores(metrics.confusion_matrix(test["mask"], masks))
    return {
        "variant": name,
        "median_ms": round(timing["median ms"], 2),
        "p95_ms": round(timing["95th percentile ms"], 2),
        "frames_per_s": round(timing["frames/s"], 1),
        "camera_frames_per_s": round(camera["frames/s"], 1),
        "fg_iou": round(float(scores["fg_iou"]), 4),
        "bytes": path.stat().st_size,
    }


def table(records: list[dict]) -> str:
    header = "| variant | median ms | p95 ms | frames/s | camera frames/s | fg IoU | change | MB |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for record in records:
        lines.append(
            f"| {record['variant']} | {record['median_ms']:.1f} | {record['p95_ms']:.1f} | "
            f"{record['frames_per_s']:.0f} | {record['camera_frames_per_s']:.0f} | {record['fg_iou']:.3f} | "
            f"{record['fg_iou_change']:+.3f} | {record['bytes'] / 1e6:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
    tf.config.threading.set_inter_op_parallelism_threads(arguments.threads)
    model_path = arguments.model or config.require_artifact("model")
    model = training.load_trained_model(model_path)
    profile = config.choose_profile(arguments.profile)[0]
    size = int(model.input_shape[1])
    test = data.split_arrays("test", profile, max_examples=arguments.max_test, image_size=size)
    train = data.split_arrays("train", profile, max_examples=arguments.calibration, image_size=size)
    context = {"model": str(model_path), "image_size": size, "test_images": len(test["image"])}
    context |= {"threads": arguments.threads, "runs": arguments.runs, "cpu_flags": cpu_flags()}
    records = [measure("Keras", model, Path(model_path), test, arguments)]
    with tempfile.TemporaryDirectory() as folder:
        for quantization in serving.QUANTIZATIONS:
            path = serving.export_litert(
                model, Path(folder) / f"{quantization}.tflite", quantization, train["image"]
            )
            litert = serving.LiteRTModel(path, num_threads=arguments.threads)
            records.append(measure(f"LiteRT {quantization}", litert, path, test, arguments))
    for record in records:
        record["fg_iou_change"] = round(record["fg_iou"] - records[0]["fg_iou"], 4)
        print(json.dumps(record | context), flush=True)
    print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
