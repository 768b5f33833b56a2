"""Per-pixel features of a trained U-Net: feature maps of named stages, hypercolumns, sampled pixels.

Taught in ``04_feature_extraction``, where the code below the marker is written and explained. The
file functions at the end keep the sampled features with the SHA-256 of the model that made them,
so that ``05_clustering`` refuses features of another model. Only ``keras`` and ``numpy`` are used,
so this module runs under any Keras backend.
"""

import io
import json
from pathlib import Path

import keras
import numpy as np

from unet_clustering import config

#: The stages whose maps make a pixel's hypercolumn unless you choose others.
DEFAULT_LAYERS = ("bottleneck", "dec2", "dec1")


# ---- Exported from notebooks/04_feature_extraction.ipynb: edit the notebook, then run `make export`. ----
def feature_extractor(model, layer_names):
    """A model from the same input to the outputs of the named layers, sharing the trained weights."""
    outputs = [model.get_layer(name).output for name in layer_names]
    return keras.Model(model.input, outputs, name="feature_extractor")


def hypercolumns(extractor, images, size):
    """The extractor's maps resized to size x size (bilinear) and stacked: (N, size, size, channels)."""
    maps = extractor.predict_on_batch(np.asarray(images, dtype=np.float32))
    maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
    resized = [
        feature_map if feature_map.shape[1] == size else keras.ops.image.resize(feature_map, (size, size))
        for feature_map in maps
    ]
    return keras.ops.convert_to_numpy(keras.ops.concatenate(resized, axis=-1))


def sample_pixels(masks, pixels_per_image, seed):
    """Up to `pixels_per_image` pixels of each mask, shared evenly between its classes.

    Returns (image_index, pixel_index): each chosen pixel's image and its flat index row * width + column.
    """
    random = np.random.default_rng(seed)
    image_index, pixel_index = [], []
    for index, mask in enumerate(masks):
        flat = np.asarray(mask).ravel()
        counts = np.bincount(flat)
        present = [label for label in np.argsort(counts, kind="stable") if counts[label]]
        budget = min(pixels_per_image, flat.size)
        for position, label in enumerate(present):
            take = min(counts[label], budget // (len(present) - position))
            chosen = random.choice(np.flatnonzero(flat == label), size=take, replace=False)
            image_index.append(np.full(take, index))
            pixel_index.append(np.sort(chosen))
            budget -= take
    return np.concatenate(image_index), np.concatenate(pixel_index)


def pixel_features(extractor, images, image_index, pixel_index, batch_size=16):
    """The hypercolumns of the chosen pixels only, one batch of images at a time: (pixels, channels)."""
    size = images.shape[1]
    rows = []
    for start in range(0, len(images), batch_size):
        columns = hypercolumns(extractor, images[start : start + batch_size], size)
        chosen = (image_index >= start) & (image_index < start + batch_size)
        flat = (image_index[chosen] - start) * size * size + pixel_index[chosen]
        rows.append(columns.reshape(-1, columns.shape[-1])[flat])
    return np.concatenate(rows)


# ---- End of the code exported from notebooks/04_feature_extraction.ipynb. ----


def save_features(path: Path, arrays: dict[str, np.ndarray], metadata: dict) -> Path:
    """Write ``arrays`` and ``metadata`` (JSON, with the model's SHA-256) to one ``.npz`` file, atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays, metadata_json=np.array(json.dumps(metadata, default=str)))
    return config.atomic_write_bytes(Path(path), buffer.getvalue())


def load_features(path: Path, model_path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and metadata :func:`save_features` wrote, refused when another model made them."""
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files if key != "metadata_json"}
        metadata = json.loads(str(stored["metadata_json"]))
    config.check_same_model(metadata, model_path, "features", path)
    return arrays, metadata
