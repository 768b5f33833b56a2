"""The trained U-Net for real time: LiteRT files made with ``model.export`` and timed on the CPU.

Taught in ``06_visualization``, where the code below the marker is written and explained;
``bench/realtime.py`` uses it to measure every variant on the whole test split. The export goes
through TensorFlow's LiteRT converter, so this module needs the TensorFlow backend; the files it
writes run with ``ai-edge-litert`` alone.
"""

import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

# ---- Exported from notebooks/06_visualization.ipynb: edit the notebook, then run `make export`. ----
#: The number formats a LiteRT file can store the U-Net's weights in, smallest last.
QUANTIZATIONS = ("float32", "float16", "int8")


def export_litert(model, path, quantization="float32", representative_images=None):
    """Write `model` as a LiteRT file: "float32", "float16", or "int8" calibrated on `representative_images`."""
    options = {}
    if quantization in ("float16", "int8"):
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    elif quantization == "int8":
        if representative_images is None or len(representative_images) == 0:
            raise ValueError("int8 needs representative_images to measure the range of each activation.")
        calibration = np.asarray(representative_images, dtype=np.float32)
        options["representative_dataset"] = lambda: ([image[None]] for image in calibration)
    elif quantization != "float32":
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}; got {quantization!r}.")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    model.export(str(path), format="litert", verbose=False, **options)
    return Path(path)


class LiteRTModel:
    """A LiteRT file behind the two parts of a Keras model's interface that inference needs."""

    def __init__(self, path, num_threads=None):
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads or os.cpu_count())
        self.interpreter.allocate_tensors()
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()
        self.input_shape = (None, *(int(side) for side in self.input["shape"][1:]))

    def predict_on_batch(self, images):
        return np.stack([self._predict_one(image) for image in np.asarray(images, dtype=np.float32)])

    def _predict_one(self, image):
        self.interpreter.set_tensor(self.input["index"], image[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])[0]


def measure_latency(model, image, runs=100, warmup=10):
    """Milliseconds `model.predict_on_batch` takes on one image: median and 95th percentile, and frames/s."""
    for _ in range(warmup):
        model.predict_on_batch(image[None])
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict_on_batch(image[None])
        seconds.append(time.perf_counter() - start)
    median, slow = np.percentile(np.array(seconds) * 1000, [50, 95])
    return {"median ms": float(median), "95th percentile ms": float(slow), "frames/s": runs / sum(seconds)}


# ---- End of the code exported from notebooks/06_visualization.ipynb. ----
