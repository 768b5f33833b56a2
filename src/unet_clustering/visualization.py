"""Every picture the notebooks draw: masks, overlays, grids, curves and cluster plots.

Taught in ``06_visualization``; used by ``01_data``, ``03_training``, ``05_clustering`` and
``06_visualization``. Notebooks never copy plotting code: they call these functions.

Conventions of this module:

* One palette for the segmentation classes, :data:`CLASS_COLORS`, and one for clusters,
  :data:`CLUSTER_COLORS`, so the same colour means the same thing in every figure.
* Functions that draw return a :class:`matplotlib.figure.Figure` and never call ``plt.show()``.
  In Jupyter, assign the result (``fig = show_overlay(...)``): the inline backend already shows
  every figure made in a cell, so a bare call on the last line would show it twice.
* Every figure that shows masks or clusters carries a legend.
* Images may be float in ``[0, 1]`` (the data contract) or ``uint8``; masks may be ``(H, W)``
  or ``(H, W, 1)``. Arrays from Keras (any backend) are accepted through ``numpy.asarray``.

No backend is selected here (``matplotlib.use`` is never called), so notebooks keep their
inline display; scripts and tests without a display get matplotlib's own ``Agg`` fallback.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from unet_clustering import config

# ---------------------------------------------------------------------------------------------
# Palettes
# ---------------------------------------------------------------------------------------------


def _read_only(array: np.ndarray) -> np.ndarray:
    # Palettes are shared by every figure; a notebook that edits one by accident should fail
    # loudly instead of silently recolouring later plots.
    array.flags.writeable = False
    return array


#: RGB colour of each class, in the order of ``config.CLASS_NAMES`` (pet, background, border).
#: Taken from the Okabe-Ito palette, which stays distinguishable with the common forms of colour
#: blindness: pet = orange, background = blue, border = yellow.
CLASS_COLORS: np.ndarray = _read_only(
    np.array(
        [
            (230, 159, 0),  # pet: orange
            (0, 114, 178),  # background: blue
            (240, 228, 66),  # border: yellow
        ],
        dtype=np.uint8,
    )
)

#: Colour of noise points (label ``-1``, as DBSCAN and HDBSCAN write it): a neutral grey
#: that appears nowhere in :data:`CLUSTER_COLORS`.
NOISE_COLOR: np.ndarray = _read_only(np.array((128, 128, 128), dtype=np.uint8))

# Matplotlib's qualitative "tab20" colours, strong shades first then their light partners, so
# that the first ten clusters get the most distinct colours. Its two greys are replaced by two
# colours of "tab20b", because grey is reserved for noise.
_CLUSTER_HEX: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#393b79",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#637939",
    "#dbdb8d",
    "#9edae5",
)

#: RGB colour of clusters 0, 1, 2, ... (20 fixed colours; labels beyond repeat them, with a warning).
CLUSTER_COLORS: np.ndarray = _read_only(
    np.array([tuple(int(code[i : i + 2], 16) for i in (1, 3, 5)) for code in _CLUSTER_HEX], dtype=np.uint8)
)

# Pixels of the image shown in full in a panel of ``per_cluster_view``; the rest is darkened
# to this fraction of its brightness.
_DIM_FACTOR = 0.2
_DEFAULT_PANEL_INCHES = 2.6
_IMAGE_EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


# ---------------------------------------------------------------------------------------------
# Input checking and conversion
# ---------------------------------------------------------------------------------------------


def to_uint8_rgb(image: Any, argument: str = "image") -> np.ndarray:
    """Return ``image`` as a ``(H, W, 3)`` ``uint8`` RGB array.

    Accepts float images in ``[0, 1]`` (the data contract) or ``uint8`` images, with shape
    ``(H, W, 3)``, ``(H, W, 1)`` or ``(H, W)`` (grey images are repeated into three channels).
    Taught in ``06_visualization``.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(
            f"{argument} must have shape (H, W, 3), (H, W, 1) or (H, W); got shape {array.shape}."
        )
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{argument} must be float in [0, 1] or uint8; got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"{argument} is an integer image with values in [{array.min()}, {array.max()}]; "
                "integer images must lie in [0, 255]."
            )
        return array.astype(np.uint8)
    finite = array[np.isfinite(array)]
    # A little slack for rounding errors of augmentations; more means a [0, 255] float image.
    if finite.size != array.size or (finite.size and (finite.min() < -1e-3 or finite.max() > 1 + 1e-3)):
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)
        raise ValueError(
            f"{argument} is a float image with values in [{low:.4g}, {high:.4g}] "
            f"(non-finite values: {array.size - finite.size}); float images must lie in [0, 1]. "
            "Divide a [0, 255] image by 255 or convert it to uint8."
        )
    return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def _as_label_map(labels: Any, argument: str) -> np.ndarray:
    """A ``(H, W)`` integer map from a ``(H, W)`` or ``(H, W, 1)`` array of whole numbers."""
    array = np.asarray(labels)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{argument} must have shape (H, W) or (H, W, 1); got shape {array.shape}.")
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        return array.astype(np.int64)
    if (
        np.issubdtype(array.dtype, np.floating)
        and np.all(np.isfinite(array))
        and np.all(array == np.round(array))
    ):
        return array.astype(np.int64)
    raise ValueError(
        f"{argument} must hold whole-number labels; got dtype {array.dtype}. "
        "Take the argmax over the class axis of the model output first."
    )


def _as_palette(colors: Any, argument: str = "colors") -> np.ndarray:
    palette = np.asarray(colors)
    if palette.ndim != 2 or palette.shape[-1] != 3 or len(palette) == 0:
        raise ValueError(f"{argument} must have shape (num_colors, 3); got shape {palette.shape}.")
    if palette.dtype != np.uint8:
        if palette.size and (palette.min() < 0 or palette.max() > 255):
            raise ValueError(f"{argument} must hold RGB values in [0, 255].")
        palette = palette.astype(np.uint8)
    return palette


def _check_same_size(image: np.ndarray, labels: np.ndarray, image_name: str, labels_name: str) -> None:
    if image.shape[:2] != labels.shape[:2]:
        raise ValueError(
            f"{labels_name} of shape {labels.shape} does not match {image_name} of shape {image.shape}: "
            "their height and width must be equal (resize the map with upsample_labels first)."
        )


def _color_float(color: Any) -> tuple[float, float, float]:
    """A uint8 RGB triple as matplotlib's floats in [0, 1]."""
    red, green, blue = (int(value) for value in np.asarray(color).reshape(3))
    return (red / 255.0, green / 255.0, blue / 255.0)


# ---------------------------------------------------------------------------------------------
# Colouring label maps
# ---------------------------------------------------------------------------------------------


def colorize_mask(mask: Any, colors: Any = CLASS_COLORS) -> np.ndarray:
    """Paint a class mask: ``(H, W)`` or ``(H, W, 1)`` class indices -> ``(H, W, 3)`` uint8 RGB.

    Class ``c`` gets ``colors[c]``; a label outside ``[0, len(colors))`` is a ValueError.
    Taught in ``06_visualization``; used by ``01_data`` and ``03_training``.
    """
    labels = _as_label_map(mask, "mask")
    palette = _as_palette(colors)
    if labels.size and (labels.min() < 0 or labels.max() >= len(palette)):
        found = sorted(int(value) for value in np.unique(labels) if value < 0 or value >= len(palette))
        raise ValueError(
            f"mask holds labels {found[:10]} outside [0, {len(palette) - 1}], "
            f"the classes that colors (length {len(palette)}) can paint. "
            "For cluster maps use colorize_clusters."
        )
    return palette[labels]


def cluster_color(label: int) -> np.ndarray:
    """The RGB colour of cluster ``label`` (grey :data:`NOISE_COLOR` for noise, ``-1``).

    Taught in ``05_clustering``.
    """
    label = int(label)
    if label == -1:
        return NOISE_COLOR
    if label < -1:
        raise ValueError(f"Cluster label {label} is invalid: labels are -1 (noise) or 0, 1, 2, ...")
    return CLUSTER_COLORS[label % len(CLUSTER_COLORS)]


def colorize_clusters(cluster_map: Any) -> np.ndarray:
    """Paint a cluster map: ``(H, W)`` labels -> ``(H, W, 3)`` uint8 RGB; noise (``-1``) is grey.

    Cluster ``k`` gets ``CLUSTER_COLORS[k]``. With more clusters than colours, the colours
    repeat and a warning says so. Taught in ``05_clustering``.
    """
    labels = _as_label_map(cluster_map, "cluster_map")
    if labels.size and labels.min() < -1:
        raise ValueError(
            f"cluster_map holds label {int(labels.min())}; labels must be -1 (noise) or 0, 1, 2, ..."
        )
    if labels.size and labels.max() >= len(CLUSTER_COLORS):
        warnings.warn(
            f"cluster_map has labels up to {int(labels.max())} but only {len(CLUSTER_COLORS)} cluster "
            "colours exist; colours repeat.",
            stacklevel=2,
        )
    painted = CLUSTER_COLORS[np.maximum(labels, 0) % len(CLUSTER_COLORS)]
    painted[labels == -1] = NOISE_COLOR
    return painted


def upsample_labels(label_map: Any, height: int, width: int) -> np.ndarray:
    """Resize a ``(h, w)`` label map to ``(height, width)`` by nearest neighbour (labels stay labels).

    Useful when clusters were computed on a coarser feature map than the image.
    Taught in ``05_clustering``.
    """
    labels = _as_label_map(label_map, "label_map")
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive; got {height} x {width}.")
    # cv2.resize works on int32, which holds every label a clustering produces.
    resized = cv2.resize(labels.astype(np.int32), (int(width), int(height)), interpolation=cv2.INTER_NEAREST)
    return resized.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Legends
# ---------------------------------------------------------------------------------------------


def class_legend_handles(
    names: Sequence[str] = config.CLASS_NAMES, colors: Any = CLASS_COLORS
) -> list[Patch]:
    """One coloured :class:`~matplotlib.patches.Patch` per name, for ``ax.legend(handles=...)``.

    ``names[i]`` is drawn in ``colors[i]``. Taught in ``06_visualization``.
    """
    palette = _as_palette(colors)
    names = list(names)
    if len(names) > len(palette):
        raise ValueError(f"{len(names)} names but only {len(palette)} colors; give one colour per name.")
    return [
        Patch(facecolor=_color_float(color), edgecolor="black", label=str(name))
        for name, color in zip(names, palette, strict=False)
    ]


def cluster_legend_handles(labels: Any) -> list[Patch]:
    """One :class:`~matplotlib.patches.Patch` per distinct cluster label in ``labels`` (noise last).

    ``labels`` is any array of cluster labels (a map or a list). Taught in ``05_clustering``.
    """
    unique = sorted(int(value) for value in np.unique(np.asarray(labels)))
    ordered = [label for label in unique if label != -1] + ([-1] if -1 in unique else [])
    return [
        Patch(facecolor=_color_float(cluster_color(label)), edgecolor="black", label=_cluster_name(label))
        for label in ordered
    ]


def _cluster_name(label: int) -> str:
    return "noise" if label == -1 else f"cluster {label}"


# ---------------------------------------------------------------------------------------------
# Overlays
# ---------------------------------------------------------------------------------------------


def overlay(
    image: Any,
    mask: Any,
    alpha: float = 0.45,
    contours: bool = True,
    colors: Any = None,
    clusters: bool = False,
    contour_thickness: int = 1,
) -> np.ndarray:
    """Blend a coloured mask over an image and outline each region; returns ``(H, W, 3)`` uint8 RGB.

    Every pixel becomes ``(1 - alpha) * image + alpha * colour``. With ``contours=True`` each
    region's outline (found with ``cv2.findContours``) is drawn in the region's own colour at full
    strength, on the region's edge pixels. The image frame is not a boundary between regions,
    so outline pixels on the outermost row and column are left out.

    ``image``: float ``[0, 1]`` or uint8, ``(H, W, 3)``. ``mask``: ``(H, W)`` or ``(H, W, 1)``.
    ``colors`` defaults to :data:`CLASS_COLORS`; with ``clusters=True`` the mask is a cluster map,
    painted with :data:`CLUSTER_COLORS` and grey noise (``colors`` is then ignored).
    Taught in ``06_visualization``; used by ``01_data`` and ``05_clustering``.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}.")
    if int(contour_thickness) < 1:
        raise ValueError(f"contour_thickness must be at least 1; got {contour_thickness}.")
    picture = to_uint8_rgb(image)
    labels = _as_label_map(mask, "mask")
    _check_same_size(picture, labels, "image", "mask")
    if clusters:
        painted = colorize_clusters(labels)
    else:
        painted = colorize_mask(labels, CLASS_COLORS if colors is None else colors)

    blended = (1.0 - alpha) * picture.astype(np.float32) + alpha * painted.astype(np.float32)
    result = np.round(blended).astype(np.uint8)
    if contours:
        outline = region_outlines(labels, thickness=contour_thickness)
        result[outline] = painted[outline]
    return result


def region_outlines(label_map: Any, thickness: int = 1) -> np.ndarray:
    """Boolean ``(H, W)`` map of the outline pixels of every labelled region.

    Each label's regions are traced with ``cv2.findContours`` (outer edges and holes) and drawn
    with ``cv2.drawContours``; pixels on the image frame are dropped because the frame is not
    a boundary between regions. Taught in ``06_visualization``.
    """
    labels = _as_label_map(label_map, "label_map")
    outline = np.zeros(labels.shape, dtype=bool)
    for label in np.unique(labels):
        region = np.ascontiguousarray((labels == label).astype(np.uint8))
        found, _ = cv2.findContours(region, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        canvas = np.zeros(labels.shape, dtype=np.uint8)
        cv2.drawContours(canvas, found, -1, 1, int(thickness))
        outline |= canvas.astype(bool)
    outline[0, :] = outline[-1, :] = False
    outline[:, 0] = outline[:, -1] = False
    return outline


def _subplots(rows: int, columns: int, panel_inches: float, **kwargs: Any) -> tuple[Figure, np.ndarray]:
    # Constrained layout leaves room for titles and for legends placed "outside" the axes.
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(panel_inches * columns, panel_inches * rows),
        squeeze=False,
        layout="constrained",
        **kwargs,
    )
    return figure, axes


def _image_axes(ax: Any) -> None:
    # Hide ticks and frame but keep the y label, which carries per-row labels.
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _add_figure_legend(figure: Figure, handles: list[Patch], title: str, below: bool = False) -> None:
    # "outside" places the legend beside the grid, where it cannot hide any pixel. A second
    # legend goes below the grid so that the two never overlap.
    if below:
        figure.legend(
            handles=handles, title=title, loc="outside lower center", ncols=len(handles), frameon=False
        )
    else:
        figure.legend(handles=handles, title=title, loc="outside right upper", frameon=False)


def show_overlay(
    image: Any,
    mask: Any,
    title: str | None = None,
    clusters: bool = False,
    alpha: float = 0.45,
    panel_inches: float = 4.0,
) -> Figure:
    """One panel: ``mask`` overlaid on ``image`` (see :func:`overlay`), with a legend.

    ``clusters=True`` treats ``mask`` as a cluster map. Returns the Figure (one axes).
    Taught in ``06_visualization``.
    """
    picture = overlay(image, mask, alpha=alpha, clusters=clusters)
    figure, axes = _subplots(1, 1, panel_inches)
    ax = axes[0, 0]
    ax.imshow(picture, interpolation="nearest")
    _image_axes(ax)
    if title:
        ax.set_title(title)
    if clusters:
        _add_figure_legend(figure, cluster_legend_handles(_as_label_map(mask, "mask")), "clusters")
    else:
        _add_figure_legend(figure, class_legend_handles(), "classes")
    return figure


# ---------------------------------------------------------------------------------------------
# Grids of images and masks
# ---------------------------------------------------------------------------------------------


def _as_image_list(images: Any, argument: str) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) or hasattr(images, "shape"):
        array = np.asarray(images)
        if array.ndim not in (3, 4):
            raise ValueError(
                f"{argument} must be a batch (N, H, W, 3) or a list of images; got shape {array.shape}."
            )
        if array.ndim == 3 and array.shape[-1] in (1, 3):
            # A single image passed without its batch axis would otherwise be read as N rows.
            raise ValueError(
                f"{argument} has shape {array.shape}; pass a batch (N, H, W, 3) or a list of images "
                "(add a batch axis with images[None] for a single image)."
            )
        return [array[index] for index in range(array.shape[0])]
    return [np.asarray(item) for item in images]


def _as_map_list(maps: Any, argument: str) -> list[np.ndarray]:
    if isinstance(maps, np.ndarray) or hasattr(maps, "shape"):
        array = np.asarray(maps)
        if array.ndim not in (3, 4):
            raise ValueError(
                f"{argument} must be a batch (N, H, W) / (N, H, W, 1) or a list of maps; got shape {array.shape}."
            )
        return [array[index] for index in range(array.shape[0])]
    return [np.asarray(item) for item in maps]


def comparison_grid(
    images: Any,
    columns: Mapping[str, Any],
    cluster_columns: Sequence[str] = (),
    row_labels: Sequence[str] | None = None,
    as_overlay: bool = False,
    image_title: str = "image",
    panel_inches: float = _DEFAULT_PANEL_INCHES,
) -> Figure:
    """Rows of examples: the image, then one coloured map per named column.

    ``images``: ``(N, H, W, 3)`` or a list of N images. ``columns``: name -> N masks
    (``(N, H, W)`` / ``(N, H, W, 1)`` or a list), e.g. ``{"ground truth": y, "U-Net mask": p,
    "clustered map": c}``. Columns named in ``cluster_columns`` hold cluster maps and get cluster
    colours and their own legend; the rest are class masks. ``row_labels`` (N strings, e.g.
    file name and foreground IoU) label each row. ``as_overlay=True`` blends the maps over the
    images instead of showing them plain. Returns the Figure with ``N * (1 + len(columns))`` axes.
    Taught in ``06_visualization``; used by ``03_training`` and ``05_clustering``.
    """
    image_list = _as_image_list(images, "images")
    count = len(image_list)
    if count == 0:
        raise ValueError("images is empty; give at least one example.")
    if not columns:
        raise ValueError("columns is empty; give at least one named column of masks.")
    unknown = [name for name in cluster_columns if name not in columns]
    if unknown:
        raise ValueError(f"cluster_columns names {unknown} that are not in columns {list(columns)}.")
    column_maps: dict[str, list[np.ndarray]] = {}
    for name, maps in columns.items():
        map_list = _as_map_list(maps, f"columns[{name!r}]")
        if len(map_list) != count:
            raise ValueError(
                f"columns[{name!r}] has {len(map_list)} maps but images has {count}; they must match."
            )
        column_maps[name] = map_list
    if row_labels is not None and len(row_labels) != count:
        raise ValueError(f"row_labels has {len(row_labels)} entries but images has {count}.")

    figure, axes = _subplots(count, 1 + len(column_maps), panel_inches)
    cluster_labels_seen: list[np.ndarray] = []
    for row, image in enumerate(image_list):
        picture = to_uint8_rgb(image, f"images[{row}]")
        axes[row, 0].imshow(picture)
        for column, (name, map_list) in enumerate(column_maps.items(), start=1):
            labels = _as_label_map(map_list[row], f"columns[{name!r}][{row}]")
            _check_same_size(picture, labels, f"images[{row}]", f"columns[{name!r}][{row}]")
            is_cluster = name in cluster_columns
            if is_cluster:
                cluster_labels_seen.append(np.unique(labels))
            if as_overlay:
                shown = overlay(picture, labels, clusters=is_cluster)
            else:
                shown = colorize_clusters(labels) if is_cluster else colorize_mask(labels)
            axes[row, column].imshow(shown, interpolation="nearest")
        if row_labels is not None:
            axes[row, 0].set_ylabel(str(row_labels[row]), fontsize="small")
    for ax in axes.ravel():
        _image_axes(ax)
    for column, name in enumerate([image_title, *column_maps]):
        axes[0, column].set_title(name)

    if any(name not in cluster_columns for name in column_maps):
        _add_figure_legend(figure, class_legend_handles(), "classes", below=bool(cluster_labels_seen))
    if cluster_labels_seen:
        _add_figure_legend(figure, cluster_legend_handles(np.concatenate(cluster_labels_seen)), "clusters")
    return figure


def image_mask_grid(
    images: Any,
    masks: Any,
    n: int | None = 4,
    row_labels: Sequence[str] | None = None,
    panel_inches: float = _DEFAULT_PANEL_INCHES,
) -> Figure:
    """``n`` rows of image | coloured mask | overlay, with a class legend.

    ``images``: ``(N, H, W, 3)`` or a list; ``masks``: ``(N, H, W)`` / ``(N, H, W, 1)`` or a list.
    ``n=None`` shows all N. Returns the Figure with ``3 * rows`` axes. Taught in ``01_data``.
    """
    image_list = _as_image_list(images, "images")
    mask_list = _as_map_list(masks, "masks")
    if len(image_list) != len(mask_list):
        raise ValueError(
            f"images has {len(image_list)} examples but masks has {len(mask_list)}; they must match."
        )
    if n is not None and n < 1:
        raise ValueError(f"n must be at least 1 (or None for all); got {n}.")
    rows = len(image_list) if n is None else min(n, len(image_list))
    if rows == 0:
        raise ValueError("images is empty; give at least one example.")
    if row_labels is not None and len(row_labels) < rows:
        raise ValueError(f"row_labels has {len(row_labels)} entries but {rows} rows are shown.")

    figure, axes = _subplots(rows, 3, panel_inches)
    for row in range(rows):
        picture = to_uint8_rgb(image_list[row], f"images[{row}]")
        labels = _as_label_map(mask_list[row], f"masks[{row}]")
        _check_same_size(picture, labels, f"images[{row}]", f"masks[{row}]")
        axes[row, 0].imshow(picture)
        axes[row, 1].imshow(colorize_mask(labels), interpolation="nearest")
        axes[row, 2].imshow(overlay(picture, labels))
        if row_labels is not None:
            axes[row, 0].set_ylabel(str(row_labels[row]), fontsize="small")
    for ax in axes.ravel():
        _image_axes(ax)
    for column, title in enumerate(("image", "mask", "overlay")):
        axes[0, column].set_title(title)
    _add_figure_legend(figure, class_legend_handles(), "classes")
    return figure


def augmentation_grid(
    pairs: Sequence[tuple[Any, Any]],
    titles: Sequence[str] | None = None,
    panel_inches: float = _DEFAULT_PANEL_INCHES,
) -> Figure:
    """Top row: images; bottom row: their masks, for an original and its augmented copies.

    ``pairs``: ``[(image, mask), ...]`` with the original first. ``titles`` default to
    ``"original", "augmented 1", ...``. Returns the Figure with ``2 * len(pairs)`` axes and a
    class legend. Taught in ``01_data``.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs is empty; give at least the original (image, mask) pair.")
    if titles is None:
        titles = ["original", *(f"augmented {index}" for index in range(1, len(pairs)))]
    if len(titles) != len(pairs):
        raise ValueError(f"titles has {len(titles)} entries but pairs has {len(pairs)}.")

    figure, axes = _subplots(2, len(pairs), panel_inches)
    for column, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"pairs[{column}] must be an (image, mask) pair; got {len(pair)} items.")
        picture = to_uint8_rgb(pair[0], f"pairs[{column}] image")
        labels = _as_label_map(pair[1], f"pairs[{column}] mask")
        _check_same_size(picture, labels, f"pairs[{column}] image", f"pairs[{column}] mask")
        axes[0, column].imshow(picture)
        axes[0, column].set_title(titles[column])
        axes[1, column].imshow(colorize_mask(labels), interpolation="nearest")
    for ax in axes.ravel():
        _image_axes(ax)
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("mask")
    _add_figure_legend(figure, class_legend_handles(), "classes")
    return figure


def per_cluster_view(
    image: Any,
    cluster_map: Any,
    columns: int = 4,
    dim: float = _DIM_FACTOR,
    panel_inches: float = _DEFAULT_PANEL_INCHES,
) -> Figure:
    """One panel per cluster (noise last, if any): that cluster's pixels shown, the rest dimmed.

    Each panel is framed and titled in the cluster's colour, with the cluster's share of the
    pixels. ``image``: ``(H, W, 3)``; ``cluster_map``: ``(H, W)`` or ``(H, W, 1)`` of the same size.
    Other pixels are darkened to ``dim`` of their brightness. Returns the Figure with one axes per
    cluster and a cluster legend. Taught in ``05_clustering``.
    """
    if not 0.0 <= float(dim) <= 1.0:
        raise ValueError(f"dim must be in [0, 1]; got {dim}.")
    if columns < 1:
        raise ValueError(f"columns must be at least 1; got {columns}.")
    picture = to_uint8_rgb(image)
    labels = _as_label_map(cluster_map, "cluster_map")
    _check_same_size(picture, labels, "image", "cluster_map")
    handles = cluster_legend_handles(labels)
    ordered = [int(value) for value in np.unique(labels) if value != -1]
    if (labels == -1).any():
        ordered.append(-1)

    panel_columns = min(columns, len(ordered))
    panel_rows = math.ceil(len(ordered) / panel_columns)
    figure, axes = _subplots(panel_rows, panel_columns, panel_inches)
    dimmed = np.round(picture.astype(np.float32) * dim).astype(np.uint8)
    for index, ax in enumerate(axes.ravel()):
        if index >= len(ordered):
            # Empty grid cells would count as panels; remove them.
            figure.delaxes(ax)
            continue
        label = ordered[index]
        inside = labels == label
        shown = np.where(inside[..., None], picture, dimmed)
        color = _color_float(cluster_color(label))
        ax.imshow(shown, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(4)
        ax.set_title(f"{_cluster_name(label)} ({inside.mean():.0%})", color=color, fontweight="bold")
    _add_figure_legend(figure, handles, "clusters")
    return figure


# ---------------------------------------------------------------------------------------------
# Plots of numbers
# ---------------------------------------------------------------------------------------------


def confusion_heatmap(
    cm: Any,
    row_names: Sequence[str],
    col_names: Sequence[str],
    normalize: str | None = "true",
    title: str | None = None,
    xlabel: str = "predicted",
    ylabel: str = "true",
) -> Figure:
    """An annotated seaborn heatmap of a confusion (or contingency) matrix.

    ``cm``: ``(len(row_names), len(col_names))`` counts, rows = true classes. ``normalize``:
    ``"true"`` divides each row by its sum (rows sum to 1; an empty row stays 0), ``"pred"``
    each column, ``"all"`` the whole matrix, ``None`` shows raw counts. Returns the Figure
    (heatmap axes and colour-bar axes). Taught in ``03_training``; used by ``05_clustering``.
    """
    matrix = np.asarray(cm, dtype=np.float64)
    expected = (len(row_names), len(col_names))
    if matrix.shape != expected:
        raise ValueError(
            f"cm has shape {matrix.shape} but row_names and col_names give {expected}; they must match."
        )
    if normalize not in ("true", "pred", "all", None):
        raise ValueError(f"normalize must be 'true', 'pred', 'all' or None; got {normalize!r}.")
    if normalize is None:
        shown = matrix
        is_whole = np.all(matrix == np.round(matrix))
        number_format = "g" if is_whole else ".3g"
    else:
        if normalize == "true":
            totals = matrix.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            totals = matrix.sum(axis=0, keepdims=True)
        else:
            totals = np.array(matrix.sum())
        # An empty row (a class that never occurs) has no rate: show 0, not a division warning.
        shown = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals != 0)
        number_format = ".2f"

    side = 1.0 + 0.9 * max(expected)
    figure, ax = plt.subplots(figsize=(side + 1.5, side), layout="constrained")
    sns.heatmap(
        shown,
        annot=True,
        fmt=number_format,
        cmap="Blues",
        xticklabels=list(col_names),
        yticklabels=list(row_names),
        vmin=0.0,
        vmax=1.0 if normalize is not None else None,
        square=True,
        cbar_kws={"label": "fraction" if normalize is not None else "count"},
        ax=ax,
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="y", rotation=0)
    if title:
        ax.set_title(title)
    return figure


def _history_to_dict(history: Any) -> dict[str, list[float]]:
    if hasattr(history, "history") and isinstance(history.history, Mapping):
        history = history.history  # a keras.callbacks.History
    elif hasattr(history, "to_dict") and hasattr(history, "columns"):
        history = history.to_dict(orient="list")  # a pandas DataFrame, e.g. history.csv
    if not isinstance(history, Mapping) or not history:
        raise ValueError("history must be a non-empty dict of name -> list of values per epoch.")
    return {str(name): [float(value) for value in values] for name, values in history.items()}


def learning_curves(history: Any, panel_inches: float = 3.2, max_columns: int = 3) -> Figure:
    """One subplot per quantity (loss, each metric, ...): train and, if present, ``val_`` curves.

    ``history``: dict name -> values per epoch (``History.history``, or a DataFrame read from
    ``history.csv``; an ``epoch`` column, if any, is the x axis). A learning rate (``lr`` or
    ``learning_rate``) is drawn on a log scale. Returns the Figure with one axes per quantity.
    Taught in ``03_training``.
    """
    values = _history_to_dict(history)
    epochs = values.pop("epoch", None)
    quantities: list[str] = []
    for name in values:
        base = name[len("val_") :] if name.startswith("val_") else name
        if base not in quantities:
            quantities.append(base)
    if not quantities:
        raise ValueError("history holds only an 'epoch' column; nothing to plot.")
    lengths = {len(series) for series in values.values()}
    if len(lengths) != 1:
        raise ValueError(f"Every history entry must have one value per epoch; got lengths {sorted(lengths)}.")
    length = lengths.pop()
    if epochs is None:
        x_values = np.arange(1, length + 1)
    else:
        # Keras' CSVLogger counts epochs from 0; people count from 1.
        x_values = np.asarray(epochs) + 1

    panel_columns = min(max_columns, len(quantities))
    panel_rows = math.ceil(len(quantities) / panel_columns)
    figure, axes = plt.subplots(
        panel_rows,
        panel_columns,
        figsize=(panel_inches * 1.3 * panel_columns, panel_inches * panel_rows),
        squeeze=False,
        layout="constrained",
    )
    for index, ax in enumerate(axes.ravel()):
        if index >= len(quantities):
            figure.delaxes(ax)
            continue
        quantity = quantities[index]
        if quantity in values:
            ax.plot(x_values, values[quantity], marker=".", label="train")
        if f"val_{quantity}" in values:
            ax.plot(x_values, values[f"val_{quantity}"], marker=".", label="validation")
        if quantity in ("lr", "learning_rate"):
            ax.set_yscale("log")
        ax.set_title(quantity)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return figure


def elbow_silhouette_plot(
    k_values: Sequence[int],
    inertias: Sequence[float],
    silhouettes: Sequence[float],
    chosen_k: int | None = None,
) -> Figure:
    """Two panels against k: k-means inertia (look for the elbow) and silhouette score (higher is better).

    ``chosen_k``, if given, must be one of ``k_values``; it is marked on both panels and named in
    their legends. A silhouette of ``None``/NaN (k=1 has none) is skipped. Returns the Figure
    (two axes). Taught in ``05_clustering``.
    """
    ks = np.asarray(k_values)
    inertia = np.asarray(inertias, dtype=np.float64)
    silhouette = np.array([np.nan if value is None else value for value in silhouettes], dtype=np.float64)
    if not len(ks) == len(inertia) == len(silhouette):
        raise ValueError(
            f"k_values, inertias and silhouettes must have equal lengths; got {len(ks)}, {len(inertia)}, {len(silhouette)}."
        )
    if chosen_k is not None and chosen_k not in ks.tolist():
        raise ValueError(f"chosen_k={chosen_k} is not one of k_values {ks.tolist()}.")

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5), squeeze=False, layout="constrained")
    inertia_ax, silhouette_ax = axes[0]
    inertia_ax.plot(ks, inertia, marker="o", label="inertia")
    inertia_ax.set_ylabel("inertia (within-cluster sum of squares)")
    inertia_ax.set_title("elbow")
    valid = np.isfinite(silhouette)
    silhouette_ax.plot(ks[valid], silhouette[valid], marker="o", color="tab:green", label="silhouette")
    silhouette_ax.set_ylabel("silhouette score")
    silhouette_ax.set_title("silhouette")
    for ax in (inertia_ax, silhouette_ax):
        if chosen_k is not None:
            ax.axvline(chosen_k, color="tab:red", linestyle="--", label=f"chosen k = {chosen_k}")
        ax.set_xlabel("number of clusters k")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
        ax.legend()
    return figure


def k_distance_plot(distances: Any, eps: float | None = None, k: int | None = None) -> Figure:
    """Sorted distance of every point to its k-th nearest neighbour, to choose DBSCAN's ``eps``.

    ``distances``: one value per point (any order; sorted here). The knee of the curve is a
    good ``eps``; ``eps``, if given, is drawn as a horizontal line. Returns the Figure (one axes
    with a legend). Taught in ``05_clustering``.
    """
    values = np.sort(np.asarray(distances, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("distances is empty.")
    neighbour = f"{k}-th" if k is not None else "k-th"
    figure, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.plot(np.arange(values.size), values, label=f"distance to {neighbour} neighbour")
    if eps is not None:
        ax.axhline(eps, color="tab:red", linestyle="--", label=f"eps = {eps:.3g}")
    ax.set_xlabel("points, sorted by distance")
    ax.set_ylabel("distance")
    ax.set_title("k-distance plot")
    ax.grid(alpha=0.3)
    ax.legend()
    return figure


def explained_variance_plot(ratio: Any, title: str | None = None) -> Figure:
    """Bars of each principal component's share of the variance, and their running total.

    ``ratio``: the explained-variance ratio of each component, largest first (as
    ``features.explained_variance_report`` returns it). Returns the Figure (one axes with a
    legend). Taught in ``04_feature_extraction``.
    """
    values = np.asarray(ratio, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("ratio is empty.")
    components = np.arange(1, values.size + 1)
    figure, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.bar(components, values, color="tab:blue", label="component")
    ax.plot(components, np.cumsum(values), color="tab:orange", marker="o", label="cumulative")
    ax.set_xlabel("principal component")
    ax.set_ylabel("share of variance")
    ax.set_ylim(0, 1.05)
    ax.set_title(title or "PCA explained variance")
    ax.grid(alpha=0.3)
    ax.legend()
    return figure


def _name_lookup(names: Any) -> Mapping[int, str]:
    if names is None:
        return {}
    if isinstance(names, Mapping):
        return {int(key): str(value) for key, value in names.items()}
    return {index: str(value) for index, value in enumerate(names)}


def embedding_scatter(
    points_2d: Any,
    colour_by: Mapping[str, Any],
    label_names: Mapping[str, Any] | None = None,
    point_size: float = 4.0,
    panel_inches: float = 4.0,
) -> Figure:
    """Scatter 2-D points (PCA / t-SNE / UMAP of pixel features), once per colouring.

    ``points_2d``: ``(N, 2)``. ``colour_by``: title -> N integer labels, e.g.
    ``{"true class": y, "k-means": clusters}``. ``label_names``: title -> names of the labels
    (a sequence indexed by label, or a dict label -> name). A colouring named with
    ``config.CLASS_NAMES`` uses :data:`CLASS_COLORS`; any other uses :data:`CLUSTER_COLORS`, with
    noise (``-1``) grey. Returns the Figure with one axes per colouring, each with a legend.
    Taught in ``05_clustering``.
    """
    points = np.asarray(points_2d, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points_2d must have shape (N, 2); got {points.shape}.")
    if not colour_by:
        raise ValueError("colour_by is empty; give at least one title -> labels colouring.")
    label_names = dict(label_names or {})
    unknown = [title for title in label_names if title not in colour_by]
    if unknown:
        raise ValueError(f"label_names has titles {unknown} that are not in colour_by {list(colour_by)}.")

    figure, axes = plt.subplots(
        1,
        len(colour_by),
        figsize=(panel_inches * len(colour_by) + 1.5, panel_inches),
        squeeze=False,
        layout="constrained",
    )
    for ax, (title, labels) in zip(axes[0], colour_by.items(), strict=True):
        label_array = np.asarray(labels).ravel()
        if label_array.shape[0] != points.shape[0]:
            raise ValueError(
                f"colour_by[{title!r}] has {label_array.shape[0]} labels but points_2d has {points.shape[0]} points."
            )
        label_array = label_array.astype(np.int64)
        given_names = label_names.get(title)
        names = _name_lookup(given_names)
        uses_classes = (
            given_names is not None and tuple(str(name) for name in given_names) == config.CLASS_NAMES
        )
        unique = [int(value) for value in np.unique(label_array)]
        # Noise first, so that the clusters are drawn on top of it.
        for label in sorted(unique, key=lambda value: (value != -1, value)):
            if uses_classes:
                if not 0 <= label < len(CLASS_COLORS):
                    raise ValueError(f"colour_by[{title!r}] holds label {label}, which is not a class index.")
                color = CLASS_COLORS[label]
            else:
                color = cluster_color(label)
            chosen = label_array == label
            default_name = str(label) if uses_classes else _cluster_name(label)
            ax.scatter(
                points[chosen, 0],
                points[chosen, 1],
                s=point_size,
                color=[_color_float(color)],
                label=names.get(label, default_name),
                linewidths=0,
            )
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(markerscale=3, fontsize="small", loc="best")
    return figure


def class_balance_bar(
    counts: Any, names: Sequence[str] = config.CLASS_NAMES, title: str | None = None
) -> Figure:
    """Bars of the pixel count of each class, coloured with :data:`CLASS_COLORS`, labelled with shares.

    ``counts``: an array aligned with ``names``, or a dict keyed by class name or class index.
    Returns the Figure (one axes, with a class legend). Taught in ``01_data``.
    """
    names = [str(name) for name in names]
    if isinstance(counts, Mapping):
        values = np.zeros(len(names), dtype=np.float64)
        for key, value in counts.items():
            if isinstance(key, str):
                if key not in names:
                    raise ValueError(f"counts has key {key!r}, which is not one of names {names}.")
                values[names.index(key)] = value
            else:
                if not 0 <= int(key) < len(names):
                    raise ValueError(f"counts has key {key}, which is not a class index below {len(names)}.")
                values[int(key)] = value
    else:
        values = np.asarray(counts, dtype=np.float64).ravel()
        if values.shape[0] != len(names):
            raise ValueError(
                f"counts has {values.shape[0]} entries but names has {len(names)}; they must match."
            )
    if np.any(values < 0):
        raise ValueError("counts must not be negative.")

    palette = _as_palette(CLASS_COLORS if len(names) <= len(CLASS_COLORS) else CLUSTER_COLORS)
    colors = [_color_float(palette[index % len(palette)]) for index in range(len(names))]
    total = values.sum()
    figure, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 3.5), layout="constrained")
    bars = ax.bar(names, values, color=colors, edgecolor="black")
    shares = values / total if total > 0 else np.zeros_like(values)
    ax.bar_label(bars, labels=[f"{share:.1%}" for share in shares], padding=2)
    ax.set_ylabel("pixels")
    ax.margins(y=0.15)
    ax.set_title(title or "class balance")
    ax.legend(
        handles=class_legend_handles(names, [palette[index % len(palette)] for index in range(len(names))])
    )
    return figure


def size_histogram(widths: Any, heights: Any, bins: int = 30) -> Figure:
    """Original image sizes: histograms of widths and heights, and width against height.

    ``widths`` and ``heights``: one value per image, in pixels. The scatter's diagonal marks
    square images; points off it are distorted by resizing to a square. Returns the Figure
    (two axes, each with a legend). Taught in ``01_data``.
    """
    width_values = np.asarray(widths, dtype=np.float64).ravel()
    height_values = np.asarray(heights, dtype=np.float64).ravel()
    if width_values.shape != height_values.shape:
        raise ValueError(
            f"widths has {width_values.size} values but heights has {height_values.size}; give one pair per image."
        )
    if width_values.size == 0:
        raise ValueError("widths and heights are empty.")

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False, layout="constrained")
    histogram_ax, scatter_ax = axes[0]
    histogram_ax.hist(width_values, bins=bins, alpha=0.6, label="width")
    histogram_ax.hist(height_values, bins=bins, alpha=0.6, label="height")
    histogram_ax.set_xlabel("pixels")
    histogram_ax.set_ylabel("images")
    histogram_ax.set_title("image sizes")
    histogram_ax.legend()
    scatter_ax.scatter(width_values, height_values, s=6, alpha=0.5, label="image")
    low = min(width_values.min(), height_values.min())
    high = max(width_values.max(), height_values.max())
    scatter_ax.plot([low, high], [low, high], color="tab:red", linestyle="--", label="square")
    scatter_ax.set_xlabel("width (pixels)")
    scatter_ax.set_ylabel("height (pixels)")
    scatter_ax.set_title("width against height")
    scatter_ax.legend()
    return figure


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def _image_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _IMAGE_EXTENSIONS:
        raise ValueError(
            f"Cannot save {path.name!r}: the extension must be one of {sorted(_IMAGE_EXTENSIONS)}."
        )
    return _IMAGE_EXTENSIONS[suffix]


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG or JPEG (chosen by the extension), atomically; returns the path.

    The figure is rendered in memory, then written with ``config.atomic_write_bytes``, so an
    interrupted run never leaves half an image; missing folders are created. The figure stays
    open (close it with ``plt.close(fig)`` when done). Taught in ``06_visualization``.
    """
    path = Path(path)
    image_format = _image_format(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=image_format, dpi=dpi, bbox_inches="tight", facecolor="white")
    return config.atomic_write_bytes(path, buffer.getvalue())


def save_image(path: str | Path, array: Any) -> Path:
    """Write an image array (RGB ``(H, W, 3)``, or grey ``(H, W)``) as PNG or JPEG, atomically.

    ``array`` is uint8, or float in ``[0, 1]``. OpenCV stores channels as BGR, so RGB is
    reordered before encoding. Returns the path. Taught in ``06_visualization``.
    """
    path = Path(path)
    _image_format(path)
    raw = np.asarray(array)
    is_grey = raw.ndim == 2 or (raw.ndim == 3 and raw.shape[-1] == 1)
    picture = to_uint8_rgb(raw, "array")
    encoded_input = picture[..., 0] if is_grey else cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    success, encoded = cv2.imencode(path.suffix.lower(), encoded_input)
    if not success:
        raise ValueError(f"OpenCV could not encode an image of shape {picture.shape} as {path.suffix}.")
    return config.atomic_write_bytes(path, encoded.tobytes())
