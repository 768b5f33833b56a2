"""Segment your own photo: the trained U-Net's class mask plus an unsupervised cluster map.

Taught in ``06_visualization``. From a terminal (after ``03_training`` has saved the model)::

    python -m unet_clustering.predict my_cat.jpg --out predictions
    unet-clustering-predict a.jpg b.png --out predictions --clusters 4 --no-tta

What happens to one photo (:func:`segment_image`):

1. :func:`load_photo` reads any file Pillow can open (JPEG, PNG, GIF, grey, RGBA, CMYK, 16-bit),
   turns it upright as its EXIF tag says, and returns it as ``uint8`` RGB at full size.
2. A copy is resized to the model's input size (the same squash to a square that training used)
   and the U-Net predicts a class for every pixel (pet, background, border).
3. The hypercolumns of that one image (see ``04_feature_extraction``) are standardised, reduced
   with PCA and clustered with k-means (see ``05_clustering``).
4. Mask and cluster map are brought back to the photo's own size by nearest neighbour, so every
   pixel keeps a real label, and the mask is drawn over the full-size photo.

Memory stays modest even for an 8000 x 6000 photo: the photo is kept as ``uint8``, floats exist
only at model size, and full-size colour pictures are painted a band of rows at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import keras
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unet_clustering import clustering, config, features, metrics, training, visualization

#: Photos with more pixels than this are refused (200 megapixels, four times a large camera's
#: 48 MP). Pillow's own guard against "decompression bombs" (tiny files that expand to gigabytes)
#: would warn from 89 MP; an 8000 x 6000 photo is an ordinary input here.
MAX_PHOTO_PIXELS = 200_000_000

#: Number of clusters when neither ``num_clusters`` nor ``clustering_metrics.json`` says.
DEFAULT_NUM_CLUSTERS = 3

#: Artifact of ``05_clustering`` whose key ``"chosen_k"`` gives the default number of clusters.
CLUSTERING_METRICS_FILE = "clustering_metrics.json"

#: Pixels converted, painted or blended at a time for full-size pictures. Bands of rows this large
#: keep temporary float copies to a few tens of megabytes whatever the photo's size.
BAND_PIXELS = 1_000_000

#: One pixel of outline thickness per this many pixels of the photo's long side, so outlines stay
#: visible when a large photo is shown shrunk to a screen.
OUTLINE_PIXELS_PER_THICKNESS = 1000

#: The first bytes of HEIC / HEIF / AVIF files (the iPhone's default format) name one of these
#: brands after ``ftyp``; Pillow cannot decode them without an extra plug-in.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")

#: Pillow modes holding one channel of integers or floats wider than 8 bits.
_WIDE_GREY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


class PhotoError(ValueError):
    """A photo file cannot be used: missing, empty, not an image, damaged or far too large."""


# --------------------------------------------------------------------------------------------
# Reading a photo
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _pixel_limit(limit: int) -> Iterator[None]:
    """Let Pillow open photos up to ``limit`` pixels; this function checks the limit itself.

    ``Image.MAX_IMAGE_PIXELS`` is a process-wide setting, so it is restored on the way out.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _too_large(path: Path, width: int, height: int) -> PhotoError:
    return PhotoError(
        f"{path} is {width} x {height} = {width * height / 1e6:.0f} megapixels, more than the "
        f"{MAX_PHOTO_PIXELS / 1e6:.0f} megapixel limit (MAX_PHOTO_PIXELS); shrink it before segmenting it."
    )


def _not_an_image(path: Path) -> PhotoError:
    with open(path, "rb") as stream:
        head = stream.read(12)
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        kind = "looks like a HEIC/HEIF photo (the iPhone's default format), which "
    else:
        kind = ""
    return PhotoError(f"{path} {kind}cannot be read as an image; convert it to JPEG or PNG.")


def _grey_scale(picture: Image.Image) -> Callable[[np.ndarray], np.ndarray]:
    """How to turn the values of a wide grey picture (16-bit, 32-bit or float) into 0..255."""
    high = 65535 if picture.mode.startswith("I;16") else picture.getextrema()[1]
    if picture.mode.startswith("I;16"):
        top = 65535.0
    elif picture.mode == "F" and high <= 1.0:
        top = 1.0  # a float picture in [0, 1]
    elif high <= 255:
        top = 255.0
    elif high <= 65535:
        top = 65535.0  # a 16-bit picture that Pillow opened as 32-bit integers
    else:
        top = float(high)
    return lambda values: np.round(np.clip(values.astype(np.float32), 0.0, top) * (255.0 / top))


def _rgb_pixels(picture: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of a loaded picture of any mode; alpha is dropped.

    Converted one band of rows at a time, so that no full-size copy of the picture in another
    mode (or as Pillow's intermediate bytes) exists beside the result.
    """
    width, height = picture.size
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    scale = _grey_scale(picture) if picture.mode in _WIDE_GREY_MODES else None
    # Palette pictures with a transparent colour go through RGBA, which is how Pillow wants
    # their transparency handled; the alpha channel is then dropped like any other.
    via = "RGBA" if picture.mode in ("P", "PA") and "transparency" in picture.info else "RGB"
    rows = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows):
        band = picture.crop((0, top, width, min(height, top + rows)))
        if scale is not None:
            pixels[top : top + band.height] = scale(np.asarray(band))[..., None]
        else:
            pixels[top : top + band.height] = np.asarray(band.convert(via))[..., :3]
    return pixels


def load_photo(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Read a photo file as ``uint8`` RGB ``(H, W, 3)``, upright as its EXIF orientation says.

    Any file Pillow can open works, whatever its extension claims: JPEG, PNG, the first frame of
    a GIF, grey, RGBA (alpha is dropped), CMYK, 16-bit PNG (scaled to 0..255). ``max_side``
    (optional) shrinks the photo to at most that many pixels on its long side; JPEGs are then
    decoded at reduced size directly (``Image.draft``), which is much faster for previews.

    Raises:
        PhotoError: the file is missing, empty, not an image (for example a text file, or a HEIC
            photo Pillow cannot read), truncated or damaged, or larger than
            :data:`MAX_PHOTO_PIXELS`. The message names the file.

    Taught in ``06_visualization``.
    """
    path = Path(path)
    if max_side is not None and (isinstance(max_side, bool) or int(max_side) < 1):
        raise ValueError(f"max_side must be a positive number of pixels or None; got {max_side!r}.")
    if not path.exists():
        raise PhotoError(f"{path} does not exist; check the file name.")
    if path.is_dir():
        raise PhotoError(f"{path} is a folder, not a photo file.")
    if path.stat().st_size == 0:
        raise PhotoError(f"{path} is empty (0 bytes); it holds no image.")
    with _pixel_limit(MAX_PHOTO_PIXELS):
        try:
            picture = Image.open(path)
        except Image.DecompressionBombError:
            # Only far above the limit does Pillow refuse before we can read the size ourselves.
            raise PhotoError(
                f"{path} is far more than the {MAX_PHOTO_PIXELS / 1e6:.0f} megapixel limit "
                "(MAX_PHOTO_PIXELS); shrink it before segmenting it."
            ) from None
        except PermissionError:
            raise PhotoError(f"{path} cannot be opened: permission denied.") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise _not_an_image(path) from None
        with picture:
            width, height = picture.size
            if width * height > MAX_PHOTO_PIXELS:
                raise _too_large(path, width, height)
            try:
                if max_side is not None:
                    picture.draft("RGB", (int(max_side), int(max_side)))
                picture.load()
                ImageOps.exif_transpose(picture, in_place=True)
            except MemoryError:
                raise
            except Exception as error:  # noqa: BLE001 - every decoding failure means a damaged file
                raise PhotoError(
                    f"{path} is truncated or damaged and cannot be decoded ({error}); "
                    "copy or export the photo again."
                ) from None
            if max_side is not None and max(picture.size) > max_side:
                picture.thumbnail((int(max_side), int(max_side)), Image.Resampling.BILINEAR)
            try:
                return _rgb_pixels(picture)
            except ValueError as error:
                raise PhotoError(
                    f"{path} uses the colour mode {picture.mode!r}, which cannot be turned into RGB "
                    f"({error}); convert it to JPEG or PNG."
                ) from None


# --------------------------------------------------------------------------------------------
# Segmenting
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SegmentationResult:
    """What :func:`segment_image` found in one photo.

    Attributes:
        mask: ``(H, W)`` uint8 class indices (``config.CLASS_NAMES``) at the photo's own size.
        clusters: ``(H, W)`` int32 cluster labels ``0 .. num_clusters - 1`` at the photo's size;
            cluster 0 is the largest at model resolution, cluster 1 the next, and so on.
        overlay: ``(H, W, 3)`` uint8 RGB photo with the class mask blended over it and outlined.
        probabilities: ``(S, S, num_classes)`` float32 class probabilities at model resolution.
        image_size: ``S``, the side of the square the model saw.
        num_clusters: the ``k`` of k-means.

    Taught in ``06_visualization``.
    """

    mask: np.ndarray
    clusters: np.ndarray
    overlay: np.ndarray
    probabilities: np.ndarray | None
    image_size: int
    num_clusters: int

    @property
    def size(self) -> tuple[int, int]:
        """The photo's ``(height, width)``."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])


def default_num_clusters() -> int:
    """The ``k`` to use when none is given: ``"chosen_k"`` of ``clustering_metrics.json``, else 3.

    ``05_clustering`` writes that file into ``config.artifacts_dir()`` after choosing ``k`` with
    the elbow and silhouette scores; before that notebook has run, :data:`DEFAULT_NUM_CLUSTERS`
    (one cluster per class) is used. Taught in ``06_visualization``.
    """
    path = config.artifacts_dir(create=False) / CLUSTERING_METRICS_FILE
    if not path.is_file():
        return DEFAULT_NUM_CLUSTERS
    try:
        chosen = config.read_json(path).get("chosen_k")
    except (OSError, ValueError, AttributeError) as error:
        warnings.warn(
            f"{path} cannot be read ({error}); using k={DEFAULT_NUM_CLUSTERS}.", RuntimeWarning, stacklevel=2
        )
        return DEFAULT_NUM_CLUSTERS
    if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen < 1:
        warnings.warn(
            f"{path} has no usable 'chosen_k' (found {chosen!r}); using k={DEFAULT_NUM_CLUSTERS}.",
            RuntimeWarning,
            stacklevel=2,
        )
        return DEFAULT_NUM_CLUSTERS
    return chosen


def _check_num_clusters(num_clusters: int, num_pixels: int) -> int:
    if isinstance(num_clusters, bool) or not isinstance(num_clusters, (int, np.integer)) or num_clusters < 1:
        raise ValueError(f"num_clusters must be a positive integer; got {num_clusters!r}.")
    if num_clusters > num_pixels:
        raise ValueError(
            f"num_clusters={num_clusters} is more than the {num_pixels} pixels the model sees; "
            f"choose num_clusters <= {num_pixels}."
        )
    return int(num_clusters)


def _model_input_size(model: keras.Model) -> int:
    size = model.input_shape[1]
    # A model built without a fixed input size accepts any multiple of 2**depth; use the size
    # the run profile trains at.
    return int(size) if size is not None else config.get_profile().image_size


def _resize_for_model(photo: np.ndarray, image_size: int) -> np.ndarray:
    """The photo squashed to ``(S, S, 3)`` float32 in [0, 1], as ``data.py`` prepares training images.

    ``INTER_AREA`` averages all the pixels a model pixel covers (antialiasing) when shrinking;
    for enlarging a small photo it would copy pixels, so bilinear interpolation is used there.
    """
    height, width = photo.shape[:2]
    shrinking = height > image_size or width > image_size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    small = cv2.resize(photo, (image_size, image_size), interpolation=interpolation)
    return small.astype(np.float32) / 255.0


def _to_photo_size(label_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a model-size label map to the photo's size (labels stay labels)."""
    return cv2.resize(label_map, (width, height), interpolation=cv2.INTER_NEAREST)


#: Feature extractors already built, per model and tuple of layer names. Reusing one keeps Keras
#: from compiling a new prediction function for every photo; entries vanish with their model.
_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _extractor(model: keras.Model, layers: Sequence[str]) -> keras.Model:
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    built = _EXTRACTORS.setdefault(model, {})
    if layers not in built:
        built[layers] = features.feature_extractor(model, layers)
    return built[layers]


def _cluster_pixels(
    model: keras.Model, image: np.ndarray, layers: Sequence[str], num_clusters: int, seed: int
) -> np.ndarray:
    """k-means labels ``(S, S)`` of the hypercolumns of one model-size image, largest cluster first."""
    pixel_features = features.image_pixel_features(_extractor(model, layers), image)
    reduced = features.make_reducer(features.DEFAULT_PCA_COMPONENTS, seed=seed).fit_transform(pixel_features)
    labels = clustering.kmeans(reduced, num_clusters, seed=seed).labels_
    # k-means numbers clusters arbitrarily; numbering them by size makes colours comparable
    # between photos (cluster 0, the first colour, is always the largest).
    by_size = np.argsort(-np.bincount(labels, minlength=num_clusters), kind="stable")
    renumber = np.empty(num_clusters, dtype=np.int32)
    renumber[by_size] = np.arange(num_clusters, dtype=np.int32)
    return renumber[labels].reshape(image.shape[:2])


def outline_thickness(height: int, width: int) -> int:
    """Outline thickness in pixels for a photo of this size: 1 per 1000 px of its long side, at least 1.

    Taught in ``06_visualization``.
    """
    return max(1, round(max(height, width) / OUTLINE_PIXELS_PER_THICKNESS))


def _bands(height: int, width: int, margin: int = 0) -> Iterator[tuple[int, int, int, int]]:
    """Bands of rows ``[top, bottom)`` of about :data:`BAND_PIXELS` pixels, each widened by
    ``margin`` rows on both sides: yields ``(top, bottom, margin_top, margin_bottom)``."""
    rows = max(1, BAND_PIXELS // max(1, width), 4 * margin)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        yield top, bottom, max(0, top - margin), min(height, bottom + margin)


def _overlay_full_size(photo: np.ndarray, mask: np.ndarray, thickness: int) -> np.ndarray:
    """``visualization.overlay(photo, mask)`` computed band by band, with the same result.

    A whole-photo call would hold several float32 copies of a 48 MP photo (gigabytes). An outline
    pixel depends only on its neighbours within ``thickness`` rows, so each band is drawn with a
    margin of extra rows above and below, and only its own rows are kept.
    """
    height, width = mask.shape
    result = np.empty((height, width, 3), dtype=np.uint8)
    for top, bottom, outer_top, outer_bottom in _bands(height, width, margin=thickness + 2):
        drawn = visualization.overlay(
            photo[outer_top:outer_bottom], mask[outer_top:outer_bottom], contour_thickness=thickness
        )
        result[top:bottom] = drawn[top - outer_top : bottom - outer_top]
    return result


def _paint_full_size(label_map: np.ndarray, paint: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``paint(label_map)`` (a colouring function) applied band by band to keep memory flat."""
    height, width = label_map.shape[:2]
    result = np.empty((height, width, 3), dtype=np.uint8)
    for top, bottom, _, _ in _bands(height, width):
        result[top:bottom] = paint(label_map[top:bottom])
    return result


def segment_image(
    path_or_array: str | Path | np.ndarray,
    model: keras.Model | None = None,
    model_path: str | Path | None = None,
    num_clusters: int | None = None,
    layers: Sequence[str] = features.DEFAULT_LAYERS,
    tta_flip: bool = True,
    seed: int = config.DEFAULT_SEED,
) -> SegmentationResult:
    """Segment one photo with the trained U-Net and cluster its pixel features.

    Args:
        path_or_array: a photo file (read with :func:`load_photo`), or an RGB array ``(H, W, 3)``,
            uint8 or float in [0, 1].
        model: a loaded U-Net; when ``None``, ``training.load_trained_model(model_path)`` loads
            ``artifacts/unet.keras`` (or ``model_path``) made by ``03_training``.
        model_path: where the saved model is, when ``model`` is not given.
        num_clusters: ``k`` of k-means; ``None`` means :func:`default_num_clusters` (the ``k``
            chosen in ``05_clustering``, else 3).
        layers: layers whose outputs form the hypercolumns that are clustered.
        tta_flip: average the prediction with that of the mirrored photo (a little more accurate,
            twice the work).
        seed: seed of PCA and k-means, so the same photo gives the same clusters.

    Returns:
        A :class:`SegmentationResult` whose ``mask``, ``clusters`` and ``overlay`` have the
        photo's own height and width. The model sees the photo squashed to ``S x S`` (its input
        size), as in training; the labels are enlarged back by nearest neighbour, so on a large
        photo their edges follow the model's pixel grid (steps of ``H / S`` by ``W / S`` pixels).

    The overlay is drawn at full size, a band of rows at a time. Measured on a 2-core CPU for an
    8000 x 6000 JPEG and the ``quick`` profile's model: about 8 s in all (3 s of it the overlay),
    and about 0.6 GB of memory above what TensorFlow and the model already use.

    Raises:
        PhotoError: the file cannot be read (see :func:`load_photo`).
        config.MissingArtifactError: no model given and none saved (run ``03_training``).
        training.IncompatibleModelError: the saved model cannot be used.

    Taught in ``06_visualization``.
    """
    if model is not None and model_path is not None:
        raise ValueError("Give either model or model_path, not both.")
    if model is None:
        model = training.load_trained_model(model_path)
    if isinstance(path_or_array, (str, Path)):
        photo = load_photo(path_or_array)
    else:
        photo = visualization.to_uint8_rgb(path_or_array, "path_or_array")
    height, width = photo.shape[:2]
    image_size = _model_input_size(model)
    k = _check_num_clusters(
        default_num_clusters() if num_clusters is None else num_clusters, image_size * image_size
    )

    image = _resize_for_model(photo, image_size)
    probabilities = metrics.predict_probabilities(model, image[None], batch_size=1, tta_flip=tta_flip)[0]
    small_mask = np.argmax(probabilities, axis=-1).astype(np.uint8)
    small_clusters = _cluster_pixels(model, image, layers, k, seed)

    mask = _to_photo_size(small_mask, height, width)
    clusters = _to_photo_size(small_clusters, height, width)
    overlay = _overlay_full_size(photo, mask, outline_thickness(height, width))
    return SegmentationResult(
        mask=mask,
        clusters=clusters,
        overlay=overlay,
        probabilities=probabilities.astype(np.float32),
        image_size=image_size,
        num_clusters=k,
    )


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def save_outputs(result: SegmentationResult, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write the pictures of one segmented photo into ``out_dir``, each atomically.

    Files (all at the photo's size):

    * ``<stem>_mask.png``: the class mask in :data:`visualization.CLASS_COLORS`;
    * ``<stem>_clusters.png``: the cluster map in :data:`visualization.CLUSTER_COLORS`;
    * ``<stem>_overlay.jpg``: the photo with the class mask blended over it;
    * ``<stem>_mask_labels.png``: the raw class indices (0 = pet, 1 = background, 2 = border) as an
      8-bit grey PNG, for further processing (it looks almost black in a viewer).

    Returns ``{"mask": path, "clusters": path, "overlay": path, "mask_labels": path}``.
    Taught in ``06_visualization``.
    """
    stem = str(stem)
    if not stem or stem in (".", "..") or "/" in stem or "\\" in stem:
        raise ValueError(f"stem must be a plain file name without folders; got {stem!r}.")
    out_dir = Path(out_dir)
    written = {
        "mask": visualization.save_image(
            out_dir / f"{stem}_mask.png", _paint_full_size(result.mask, visualization.colorize_mask)
        ),
        "clusters": visualization.save_image(
            out_dir / f"{stem}_clusters.png",
            _paint_full_size(result.clusters, visualization.colorize_clusters),
        ),
        "overlay": visualization.save_image(out_dir / f"{stem}_overlay.jpg", result.overlay),
        "mask_labels": visualization.save_image(
            out_dir / f"{stem}_mask_labels.png", result.mask.astype(np.uint8)
        ),
    }
    return written


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of clusters")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet-clustering-predict",
        description=(
            "Segment your own photos with the U-Net trained in notebooks/03_training.ipynb and "
            "cluster their pixel features. Writes <name>_mask.png, <name>_clusters.png, "
            "<name>_overlay.jpg and <name>_mask_labels.png per photo."
        ),
    )
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="photo files (JPEG, PNG, GIF, ...)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the output pictures")
    parser.add_argument(
        "--model", metavar="PATH", default=None, help="saved model (default: artifacts/unet.keras)"
    )
    parser.add_argument(
        "--clusters",
        type=_positive_int,
        default=None,
        metavar="K",
        help="number of k-means clusters (default: chosen_k of artifacts/clustering_metrics.json, else 3)",
    )
    parser.add_argument(
        "--no-tta", action="store_true", help="skip averaging with the mirrored photo (twice as fast)"
    )
    return parser


def _unique_stem(photo: Path, used: set[str]) -> str:
    """The photo's file name without extension, numbered if an earlier photo had the same one."""
    stem, number = photo.stem, 2
    while stem in used:
        stem, number = f"{photo.stem}_{number}", number + 1
    used.add(stem)
    return stem


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m unet_clustering.predict PHOTO [PHOTO ...] --out DIR``.

    Prints one line per photo with the files written. A photo that cannot be used is reported on
    stderr in one line and the others are still processed; a missing or unusable model stops at
    once. Returns 0 when every photo was segmented, 2 otherwise (also for usage errors).
    Taught in ``06_visualization``.
    """
    arguments = _parser().parse_args(argv)
    program = "unet-clustering-predict"
    try:
        model = training.load_trained_model(arguments.model)
    except (config.MissingArtifactError, training.IncompatibleModelError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    failures, used_stems = 0, set()
    for photo in map(Path, arguments.photos):
        try:
            result = segment_image(
                photo, model=model, num_clusters=arguments.clusters, tta_flip=not arguments.no_tta
            )
        except ValueError as error:  # PhotoError, and photos k-means cannot split into K clusters
            print(f"{program}: error: {error}", file=sys.stderr)
            failures += 1
            continue
        written = save_outputs(result, arguments.out, _unique_stem(photo, used_stems))
        print(f"{photo} -> {', '.join(str(path) for path in written.values())}", flush=True)
    return 2 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
