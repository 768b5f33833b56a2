"""Segment your own photo: the trained U-Net's class mask plus a clustered map of its features.

    python -m unet_clustering.predict my_cat.jpg my_dog.png --out predictions

Videos and folders of frames get the class mask only, outlined over every frame, fast enough to watch:

    python -m unet_clustering.predict clip.mp4 holiday_frames/ --out predictions

The functions between the markers come from ``notebooks/03_training.ipynb``; edit them there.
"""

import argparse
import dataclasses
import functools
import itertools
import math
import os
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import keras
import numpy as np
from PIL import Image, ImageOps
from sklearn import cluster, decomposition, pipeline, preprocessing
from tqdm import tqdm

from unet_clustering import config, features, training, visualization

#: Larger photos are refused: 200 megapixels is four times a large camera's 48 MP.
MAX_PHOTO_PIXELS = 200_000_000
DEFAULT_NUM_CLUSTERS = 3
PCA_COMPONENTS = 16
#: Pixels converted or painted at a time, so that temporary copies of a large photo stay small.
BAND_PIXELS = 1_000_000
#: Brands after ``ftyp`` that start HEIC / HEIF / AVIF files, which Pillow cannot decode alone.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")
_SUFFIXES = dict(
    mask="_mask.png", clusters="_clusters.png", overlay="_overlay.jpg", mask_labels="_mask_labels.png"
)
PROGRAM = "unet-clustering-predict"
#: Files read as videos, by extension (in any case); every other file is read as a photo.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: Frames per second of the segmented video when the input's own rate is unknown.
DEFAULT_FPS = 25.0


class PhotoError(ValueError):
    """A photo file cannot be used; the one-line message names the file and says why."""


def load_photo(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Any photo Pillow reads, whatever its extension, as ``uint8`` RGB ``(H, W, 3)``, upright as its
    EXIF tag says; ``max_side`` shrinks it (a JPEG is then decoded small, which is much faster).
    Raises :class:`PhotoError` for a missing, empty, damaged or non-image file, or one above
    :data:`MAX_PHOTO_PIXELS`."""
    path = Path(path)
    if max_side is not None and (isinstance(max_side, bool) or int(max_side) < 1):
        raise ValueError(f"max_side must be a positive number of pixels or None; got {max_side!r}.")
    _check_file(path, "photo")
    # Pillow's guard against decompression bombs would refuse ordinary 48 MP photos; the size
    # check in _decode replaces it. The setting is process-wide, so it is restored at once.
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as picture:
            return _decode(path, picture, max_side)
    except PhotoError:
        raise
    except PermissionError:
        raise PhotoError(f"{path} cannot be opened: permission denied.") from None
    except (OSError, SyntaxError, ValueError):  # Pillow's UnidentifiedImageError is an OSError
        with path.open("rb") as stream:
            heif = stream.read(12)[4:] in [b"ftyp" + brand for brand in _HEIF_BRANDS]
        kind = "looks like a HEIC/HEIF photo (the iPhone's default format), which " if heif else ""
        raise PhotoError(f"{path} {kind}cannot be read as an image; convert it to JPEG or PNG.") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _check_file(path: Path, kind: str) -> None:
    """Raise :class:`PhotoError` when ``path`` is missing, a folder or empty; ``kind`` names what it should be."""
    if not path.exists():
        raise PhotoError(f"{path} does not exist; check the file name.")
    if path.is_dir():
        raise PhotoError(f"{path} is a folder, not a {kind} file.")
    if path.stat().st_size == 0:
        raise PhotoError(f"{path} is empty (0 bytes); it holds no {'image' if kind == 'photo' else kind}.")


def _decode(path: Path, picture: Image.Image, max_side: int | None) -> np.ndarray:
    width, height = picture.size
    if width * height > MAX_PHOTO_PIXELS:
        limit = MAX_PHOTO_PIXELS / 1e6
        raise PhotoError(f"{path} is {width} x {height} pixels, above the {limit:.0f} megapixel limit.")
    try:
        if max_side is not None:
            picture.draft("RGB", (int(max_side), int(max_side)))
        picture.load()
        ImageOps.exif_transpose(picture, in_place=True)
        if max_side is not None and max(picture.size) > max_side:
            picture.thumbnail((int(max_side), int(max_side)), Image.Resampling.BILINEAR)
        return _rgb_pixels(picture)
    except MemoryError:
        raise
    except Exception as error:  # every other decoding failure means a damaged file
        why = " ".join(str(error).split())
        raise PhotoError(f"{path} is truncated or damaged ({why}); copy or export it again.") from None


def _rgb_pixels(picture: Image.Image) -> np.ndarray:
    """The RGB pixels of a loaded picture of any mode, converted a band of rows at a time so that no
    second full-size copy in another mode exists beside the result."""
    width, height = picture.size
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    wide = picture.mode in ("I", "F") or picture.mode.startswith("I;16")
    if wide:  # scaled by the range its values use: [0, 1] floats, 8 bits, 16 bits, or beyond
        high = 65535 if picture.mode.startswith("I;16") else picture.getextrema()[1]
        limits = ((1.0,) if picture.mode == "F" else ()) + (255.0, 65535.0, max(float(high), 1.0))
        top = next(limit for limit in limits if high <= limit)
    # Pillow handles a palette's transparent colour only on the way through RGBA.
    via = "RGBA" if picture.mode in ("P", "PA") and "transparency" in picture.info else "RGB"
    rows = max(1, BAND_PIXELS // width)
    for start in range(0, height, rows):
        band = picture.crop((0, start, width, min(height, start + rows)))
        if wide:
            values = np.clip(np.asarray(band, dtype=np.float32), 0.0, top) * (255.0 / top)
            pixels[start : start + band.height] = np.round(values)[..., None]
        else:
            pixels[start : start + band.height] = np.asarray(band.convert(via))[..., :3]
    return pixels


@dataclasses.dataclass
class SegmentationResult:
    """What :func:`segment_image` found in one photo of ``H x W`` pixels."""

    mask: np.ndarray  #: (H, W) uint8 classes of the data (``config.dataset_classes()``)
    clusters: np.ndarray  #: (H, W) int32 k-means labels, cluster 0 the largest
    overlay: np.ndarray  #: (H, W, 3) uint8: the photo, the mask blended over it and outlined
    probabilities: np.ndarray  #: (S, S, C) float32 at the model's input size S
    num_clusters: int

    @property
    def size(self) -> tuple[int, int]:
        """The photo's ``(height, width)``."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])


def chosen_num_clusters(model_path: str | Path | None = None) -> tuple[int, str]:
    """``(k, why)``: ``chosen_k`` of notebook 05's clustering artifact when it was made with the model file
    ``model_path`` (default: the saved model), else :data:`DEFAULT_NUM_CLUSTERS`, one cluster per class."""
    path, model_path = config.artifact("clustering"), Path(model_path or config.artifact("model"))
    try:
        record = config.read_json(path)
        config.check_same_model(record, model_path, "clustering")
        chosen = record["chosen_k"]
        if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen < 1:
            raise ValueError(f"its chosen_k, {chosen!r}, is not a positive integer")
        return chosen, f"chosen_k of {path}, made with this model"
    except FileNotFoundError as error:
        why = f"{error.filename} does not exist"
    except config.StaleArtifactError:
        why = f"{path} was made with another model than {model_path}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        why = f"{path} cannot be used ({type(error).__name__}: {error})"
    return DEFAULT_NUM_CLUSTERS, f"the default, since {why}"


# ---- Exported from notebooks/03_training.ipynb: edit the notebook, then run `make export`. ----
def predict_probabilities(model, images, flip=False, batch_size=32):
    """Class probabilities (N, H, W, C) of images (N, H, W, 3) in [0, 1]; `flip` averages in the mirror image."""
    batches = range(0, len(images), batch_size)
    return np.concatenate(
        [_probabilities(model, images[start : start + batch_size], flip) for start in batches]
    )


def predict_masks(model, images, flip=False, batch_size=32):
    """The most probable class of every pixel: (N, H, W) integers."""
    batches = range(0, len(images), batch_size)
    return np.concatenate(
        [_probabilities(model, images[start : start + batch_size], flip).argmax(-1) for start in batches]
    )


def _probabilities(model, images, flip):
    images = np.asarray(images, dtype=np.float32)
    if flip:  # one call for the images and their mirror images
        images = np.concatenate([images, images[:, :, ::-1]])
    logits = np.asarray(model.predict_on_batch(images), dtype=np.float64)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    if flip:
        count = len(probabilities) // 2
        probabilities = (probabilities[:count] + probabilities[count:, :, ::-1]) / 2
    return probabilities


# ---- End of the code exported from notebooks/03_training.ipynb. ----


#: Feature extractors already built, per model: reusing one keeps Keras from building and tracing a
#: new model for every photo. An entry vanishes with its model.
_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def segment_image(photo, model=None, num_clusters=None, flip=True, seed=config.DEFAULT_SEED):
    """A :class:`SegmentationResult` of ``photo`` (a file, or an RGB array: uint8 or float in [0, 1]).

    ``model`` defaults to the saved one, ``num_clusters`` to :func:`chosen_num_clusters`; ``flip``
    averages in the mirror image. The model sees a copy squashed to its input size, as in training;
    mask and clusters come back by nearest neighbour, so their edges follow the model's pixel grid.
    """
    model = training.load_trained_model() if model is None else model
    if isinstance(photo, (str, os.PathLike)):
        photo = load_photo(photo)
    photo = np.ascontiguousarray(visualization.to_uint8_rgb(photo, "photo"))
    height, width = photo.shape[:2]
    size = _model_size(model)
    k = chosen_num_clusters()[0] if num_clusters is None else num_clusters
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= size * size:
        raise ValueError(f"num_clusters must be a whole number from 1 to {size * size}; got {k!r}.")
    image, probabilities = _model_view(model, photo, flip)
    mask = _full_size(probabilities.argmax(-1).astype(np.uint8), height, width)
    clusters = _full_size(_cluster_pixels(model, image, int(k), seed), height, width)
    overlay = _overlay_full_size(photo, mask, outline_thickness(height, width))
    return SegmentationResult(mask, clusters, overlay, probabilities, int(k))


def segment_frame(model: keras.Model, frame: np.ndarray, flip: bool = False) -> np.ndarray:
    """The U-Net's class mask of one video frame (or photo), ``(H, W)`` uint8 classes of
    ``config.dataset_classes()`` at the frame's own size, without the clustering of :func:`segment_image`.

    ``model`` is a Keras model, or anything with its ``input_shape`` and ``predict_on_batch``; ``frame``
    is RGB ``(H, W, 3)``, uint8 or float in [0, 1]; ``flip`` averages in the mirror image (twice the work). The model sees the frame squashed to its input size, as :func:`segment_image`
    shows it a photo, and the mask comes back by nearest neighbour; both give the same mask.
    """
    frame = visualization.to_uint8_rgb(frame, "frame")
    probabilities = _model_view(model, frame, flip)[1]
    return _full_size(probabilities.argmax(-1).astype(np.uint8), *frame.shape[:2])


def _model_size(model: keras.Model) -> int:
    """The side ``S`` of the square images the model takes."""
    return int(model.input_shape[1] or config.get_profile().image_size)


def _model_view(model: keras.Model, photo: np.ndarray, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(image, probabilities)``: the uint8 RGB ``photo`` squashed to the model's input size as float32
    in [0, 1], ``(S, S, 3)``, and the model's float32 class probabilities ``(S, S, C)`` for it."""
    size = _model_size(model)
    # INTER_AREA averages every pixel a model pixel covers; enlarging with it would copy pixels.
    shrinking = photo.shape[0] > size or photo.shape[1] > size
    small = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    image = small.astype(np.float32) / 255.0
    return image, predict_probabilities(model, image[None], flip=flip)[0].astype(np.float32)


def _full_size(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """A model-size label map enlarged or shrunk to ``height x width`` by nearest neighbour."""
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def _cluster_pixels(model: keras.Model, image: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means labels ``(S, S)`` int32 of the hypercolumns of one model-size image, largest cluster first."""
    if model not in _EXTRACTORS:
        _EXTRACTORS[model] = features.feature_extractor(model, features.DEFAULT_LAYERS)
    size = image.shape[0]
    pixels = features.hypercolumns(_EXTRACTORS[model], image[None], size).reshape(size * size, -1)
    pca = decomposition.PCA(min(PCA_COMPONENTS, pixels.shape[1]), random_state=seed)
    reduced = pipeline.make_pipeline(preprocessing.StandardScaler(), pca).fit_transform(pixels)
    labels = cluster.KMeans(k, n_init="auto", random_state=seed).fit_predict(reduced)
    # k-means numbers clusters arbitrarily; numbering them by size makes colours comparable between photos.
    renumber = np.empty(k, dtype=np.int32)
    renumber[np.argsort(-np.bincount(labels, minlength=k), kind="stable")] = np.arange(k)
    return renumber[labels].reshape(size, size)


def outline_thickness(height: int, width: int) -> int:
    """One pixel of outline per 1000 pixels of the long side, so outlines stay visible on a shrunk view."""
    return max(1, round(max(height, width) / 1000))


def _overlay_full_size(photo: np.ndarray, mask: np.ndarray, thickness: int) -> np.ndarray:
    """``visualization.overlay`` of the whole photo, drawn band by band with the same result: an outline
    pixel depends only on rows within ``thickness`` of it, so each band sees that many more (and two)."""
    draw = functools.partial(visualization.overlay, contour_thickness=thickness)
    return _by_bands(draw, (photo, mask), margin=thickness + 2)


def _by_bands(draw: Callable[..., np.ndarray], arrays: tuple, margin: int = 0) -> np.ndarray:
    """``draw(*arrays)``, an ``(H, W, 3)`` uint8 picture, computed a band of rows at a time to keep
    memory flat; each band is drawn with ``margin`` extra rows on both sides, which are then dropped."""
    height, width = arrays[0].shape[:2]
    result = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, BAND_PIXELS // width, 4 * margin)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        start, stop = max(0, top - margin), min(height, bottom + margin)
        result[top:bottom] = draw(*(array[start:stop] for array in arrays))[top - start : bottom - start]
    return result


def save_outputs(result: SegmentationResult, out_dir, stem: str, overwrite: bool = False) -> dict[str, Path]:
    """Write ``<stem>_mask.png`` (class colours), ``<stem>_clusters.png``, ``<stem>_overlay.jpg`` and
    ``<stem>_mask_labels.png`` (class indices as 8-bit grey) into ``out_dir``; returns ``{name: path}``.

    Unless ``overwrite``, no earlier file is replaced: when any of the four exists, all four take the
    first free name of ``<stem>_2``, ``<stem>_3``, ...
    """
    stem = str(stem)
    if not stem or stem in (".", "..") or "/" in stem or "\\" in stem:
        raise ValueError(f"stem must be a plain file name without folders; got {stem!r}.")
    out_dir = Path(out_dir)
    free = _free_stem(out_dir, stem, _SUFFIXES.values(), overwrite)
    pictures = {  # painted one at a time, so that one full-size colour picture exists at once
        "mask": lambda: _by_bands(visualization.colorize_mask, (result.mask,)),
        "clusters": lambda: _by_bands(visualization.colorize_clusters, (result.clusters,)),
        "overlay": lambda: result.overlay,
        "mask_labels": lambda: result.mask.astype(np.uint8),
    }
    return {
        name: visualization.save_image(out_dir / f"{free}{_SUFFIXES[name]}", paint())
        for name, paint in pictures.items()
    }


def _free_stem(out_dir: Path, stem: str, suffixes: Iterable[str], overwrite: bool = False) -> str:
    """``stem``, or unless ``overwrite`` the first of ``<stem>_2``, ``<stem>_3``, ... for which no
    ``out_dir/<stem><suffix>`` exists, for every one of ``suffixes``."""
    suffixes, free, number = tuple(suffixes), stem, 2
    while not overwrite and any((out_dir / f"{free}{suffix}").exists() for suffix in suffixes):
        free, number = f"{stem}_{number}", number + 1
    return free


# ---- Videos and folders of frames: the class mask only, frame by frame ----


@dataclasses.dataclass
class VideoResult:
    """What :func:`segment_video` or :func:`segment_frame_folder` did with one video or folder of frames."""

    source: Path  #: the input video or folder
    path: Path  #: the segmented video, or the folder of ``<frame>_overlay.jpg`` pictures
    frames: int  #: frames segmented and written
    seconds: float  #: time spent reading, segmenting and writing them, after one warm-up prediction
    skipped: list[str] = dataclasses.field(default_factory=list)  #: why files of a folder were skipped

    @property
    def frames_per_second(self) -> float:
        """The rate reached: :attr:`frames` over :attr:`seconds`."""
        return self.frames / self.seconds if self.seconds > 0 else math.inf


def is_video(path: str | Path) -> bool:
    """Whether ``path`` is read as a video: its extension is one of :data:`VIDEO_SUFFIXES`, in any case."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _frame_overlay(model: keras.Model, frame: np.ndarray, flip: bool) -> np.ndarray:
    """The uint8 RGB ``frame`` with its class mask blended over it and outlined, as photos get it."""
    mask = segment_frame(model, frame, flip=flip)
    return _overlay_full_size(frame, mask, outline_thickness(*mask.shape))


def _warm_up(model: keras.Model, flip: bool) -> None:
    """One prediction of a blank image before the clock starts: the first call traces and compiles the
    model's graph, which takes seconds and would drag down the frames per second of a short clip."""
    size = _model_size(model)
    predict_probabilities(model, np.zeros((1, size, size, 3), np.float32), flip=flip)


def _progress(frames: Iterable, total: int | None, source: Path) -> tqdm:
    return tqdm(frames, total=total, desc=source.name, file=sys.stderr, unit="frame")


def segment_video(
    model: keras.Model, path, out_dir, flip: bool = True, overwrite: bool = False
) -> VideoResult:
    """Write ``out_dir/<stem>_segmented.mp4`` (creating ``out_dir``): every frame of the video ``path`` with its class mask
    (:func:`segment_frame`) blended over it and outlined, at the input's frame rate
    (:data:`DEFAULT_FPS` when unknown) and size. Frames are read, segmented and written one at a time,
    with a progress bar on stderr.

    Unless ``overwrite``, an earlier video is kept and the new one numbered ``<stem>_segmented_2.mp4``,
    ... MPEG-4 stores only even sizes: an odd width or height loses its last column or row. Raises
    :class:`PhotoError` for a file OpenCV cannot read as a video or that holds no frames.
    """
    path, out_dir = Path(path), Path(out_dir)
    _check_file(path, "video")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        frames = _video_frames(capture)
        first = next(frames, None) if capture.isOpened() else None
        if first is None:
            raise PhotoError(
                f"{path} cannot be read as a video: OpenCV finds no frames in it; check that it plays."
            )
        _warm_up(model, flip)
        started = time.perf_counter()
        target = out_dir / f"{_free_stem(out_dir, f'{path.stem}_segmented', ['.mp4'], overwrite)}.mp4"
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        progress = _progress(itertools.chain([first], frames), int(count) if count > 0 else None, path)
        written = _write_video(model, progress, target, _frames_per_second(fps), flip)
        return VideoResult(path, target, written, time.perf_counter() - started)
    finally:
        capture.release()


def _video_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """The frames of an open capture as uint8 RGB, read one at a time."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _frames_per_second(reported: float) -> float:
    """The frame rate a video reports, or :data:`DEFAULT_FPS` when it reports none (0 or NaN)."""
    return float(reported) if math.isfinite(reported) and reported > 0 else DEFAULT_FPS


def _write_video(
    model: keras.Model, frames: Iterable[np.ndarray], target: Path, fps: float, flip: bool
) -> int:
    """Write the overlays of ``frames`` (uint8 RGB, all of the first one's size) to the MP4 ``target``;
    returns how many. A video left unfinished by an error is removed."""
    writer, written = None, 0
    try:
        for frame in frames:
            height, width = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
            if writer is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise OSError(
                        f"{target} cannot be written: OpenCV cannot open an MP4 video writer there."
                    )
            overlay = _frame_overlay(model, frame, flip)[:height, :width]
            writer.write(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            written += 1
    except BaseException:
        if writer is not None:
            writer.release()
            target.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.release()
    return written


def segment_frame_folder(
    model: keras.Model, folder, out_dir, flip: bool = True, overwrite: bool = False
) -> VideoResult:
    """Write ``out_dir/<folder name>_segmented/<frame>_overlay.jpg`` for every image file of ``folder``
    (taken in name order, one at a time): the frame with its class mask (:func:`segment_frame`)
    blended over it and outlined, with a progress bar on stderr. Hidden files and subfolders are
    ignored; a file :func:`load_photo` refuses is skipped, and :attr:`VideoResult.skipped` says why.

    Unless ``overwrite``, an earlier output folder is kept and the new one numbered
    ``<folder name>_segmented_2``, ... Raises :class:`PhotoError` when no file of ``folder`` is an image.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    files = sorted(file for file in folder.iterdir() if file.is_file() and not file.name.startswith("."))
    target = out_dir / _free_stem(out_dir, f"{folder.resolve().name or 'frames'}_segmented", [""], overwrite)
    _warm_up(model, flip)
    started, written, skipped = time.perf_counter(), 0, []
    for file in _progress(files, len(files), folder):
        try:
            frame = load_photo(file)
        except PhotoError as error:
            skipped.append(str(error))
            continue
        target.mkdir(parents=True, exist_ok=True)
        name = f"{_free_stem(target, file.stem, ['_overlay.jpg'])}_overlay.jpg"
        visualization.save_image(target / name, _frame_overlay(model, frame, flip))
        written += 1
    if not written:
        why = f"none of its {len(files)} files can be read as an image" if files else "it holds no files"
        raise PhotoError(f"{folder} is a folder without frames: {why}.")
    return VideoResult(folder, target, written, time.perf_counter() - started, skipped)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Segment photos with the U-Net of notebooks/03_training.ipynb and cluster their pixel "
        "features. Writes NAME_mask.png, NAME_clusters.png, NAME_overlay.jpg and NAME_mask_labels.png into "
        "--out for a photo, NAME_segmented.mp4 for a video, and a folder NAME_segmented of FRAME_overlay.jpg "
        "for a folder of frames (videos and frames get the class mask only, without clustering), numbering "
        "NAME rather than replacing earlier outputs.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help=f"photo files (JPEG, PNG, GIF, ...), videos ({' '.join(VIDEO_SUFFIXES)}) or folders of frames",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the outputs")
    parser.add_argument("--model", type=Path, metavar="PATH", help="default: artifacts/unet.keras")
    parser.add_argument(
        "--clusters", type=int, metavar="K", help="k of k-means for photos (default: notebook 05's)"
    )
    parser.add_argument(
        "--no-flip", action="store_true", help="skip the mirror image, for photos and frames (twice as fast)"
    )
    return parser


def _out_problem(out: Path) -> str | None:
    """Why pictures cannot go into ``out``, found without creating it (the model may yet be missing)."""
    existing = next((folder for folder in (out, *out.parents) if folder.exists()), None)
    if existing == out and not out.is_dir():
        return f"--out {out} is a file, not a folder."
    if existing is not None and not existing.is_dir():
        return f"--out {out} lies under {existing}, which is a file, not a folder."
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        return f"--out {out} cannot be {'written' if existing == out else 'created'}: permission denied."
    return None


def _error(message: object) -> int:
    print(f"{PROGRAM}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def _segment_input(
    model: keras.Model, source: Path, arguments: argparse.Namespace, k
) -> tuple[str, list[str]]:
    """Segment one photo, video or folder of frames into ``arguments.out``; returns the line that says
    what was written, and why any files of a folder were skipped."""
    flip = not arguments.no_flip
    if source.is_dir() or is_video(source):
        segment = segment_frame_folder if source.is_dir() else segment_video
        result = segment(model, source, arguments.out, flip=flip)
        rate = f"{result.frames} frame{'s' * (result.frames != 1)}, {result.frames_per_second:.1f} frames/s"
        return f"{source} -> {result.path} ({rate})", result.skipped
    written = save_outputs(segment_image(source, model, k, flip=flip), arguments.out, source.stem)
    stem = written["mask"].name.removesuffix(_SUFFIXES["mask"])
    kept = "" if stem == source.stem else f" (numbered {stem}: earlier {source.stem}_* outputs are kept)"
    return f"{source} -> {', '.join(str(path) for path in written.values())}{kept}", []


def main(argv: list[str] | None = None) -> int:
    """The command line (see ``--help``): when there are photos, the ``k`` used and why; then one line per
    input with what was written (for a video or folder of frames, also the frames per second reached).
    An input that fails is reported in one line and the others go on. Returns 0, or 2 on errors."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.clusters is not None and arguments.clusters < 1:
        parser.error(f"argument --clusters: {arguments.clusters} is not a positive number of clusters")
    problem = _out_problem(arguments.out)
    if problem:  # before the model loads, which takes seconds
        return _error(problem)
    try:
        model = training.load_trained_model(arguments.model)
        arguments.out.mkdir(parents=True, exist_ok=True)
    except (OSError, training.IncompatibleModelError) as error:  # MissingArtifactError is an OSError
        return _error(error)
    sources = [Path(name) for name in arguments.inputs]
    k, reason = arguments.clusters, "set by --clusters"
    if any(not (source.is_dir() or is_video(source)) for source in sources):  # frames are not clustered
        if k is None:
            k, reason = chosen_num_clusters(arguments.model)
        print(f"Clustering each photo's pixels into k={k} clusters ({reason}).", flush=True)
    failures = 0
    for source in sources:
        try:
            line, skipped = _segment_input(model, source, arguments, k)
        except (OSError, ValueError) as error:  # PhotoError, k above the pixels, a full disk
            failures += 1
            _error(error if str(source) in str(error) else f"{source}: {error}")
            continue
        print(line, flush=True)
        failures += len(skipped)
        for message in skipped:
            _error(message)
    return 2 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
