"""The model code is backend-agnostic Keras 3: it trains and predicts under JAX, without TensorFlow.

The script runs in a fresh Python (the backend is chosen at ``import keras``) in which importing
TensorFlow fails (``no_tensorflow.py``), as on a machine that has JAX and no TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax", reason="the JAX backend needs jax (requirements.txt installs jax[cpu])")

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("no_tensorflow.py")

SCRIPT = """
import json

import keras
import numpy as np

from unet_clustering import features, metrics, predict, unet

keras.utils.set_random_seed(0)
random = np.random.default_rng(0)
images = random.random((16, 32, 32, 3), dtype=np.float32)
masks = np.ones((16, 32, 32, 1), np.int32)
masks[:, 8:24, 8:24] = 2
masks[:, 10:22, 10:22] = 0
images[masks[..., 0] == 0] *= 0.2
model = unet.build_unet(32, base_filters=4, depth=2)
model.compile(
    optimizer=keras.optimizers.AdamW(1e-2),
    loss=metrics.ce_dice_loss,
    metrics=[metrics.ForegroundIoU(), keras.metrics.MeanIoU(3, sparse_y_pred=False, name="mean_iou")],
)
history = model.fit(images, masks, batch_size=4, epochs=8, validation_data=(images, masks), verbose=0).history
probabilities = predict.predict_probabilities(model, images, flip=True)
columns = features.hypercolumns(features.feature_extractor(model, features.DEFAULT_LAYERS), images[:2], 32)
print(json.dumps({
    "backend": keras.backend.backend(),
    "loss": history["loss"],
    "val_fg_iou": history["val_fg_iou"][-1],
    "numpy_fg_iou": metrics.segmentation_scores(metrics.confusion_matrix(masks, probabilities.argmax(-1)))["fg_iou"],
    "probability_sums": float(np.abs(probabilities.sum(-1) - 1).max()),
    "hypercolumns": list(columns.shape),
}))
"""


def test_the_unet_trains_and_predicts_under_jax_without_tensorflow(tmp_path):
    script = tmp_path / "jax_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["backend"] == "jax"
    assert outcome["loss"][-1] < outcome["loss"][0]
    assert 0.0 <= outcome["val_fg_iou"] <= 1.0 and 0.0 <= outcome["numpy_fg_iou"] <= 1.0
    assert outcome["probability_sums"] < 1e-6
    assert outcome["hypercolumns"] == [2, 32, 32, 16 + 8 + 4]
