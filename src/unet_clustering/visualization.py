"""Every picture the notebooks draw: masks, overlays, grids, curves and cluster plots.

One palette for the classes, :func:`class_colors` (from the classes of the data that ``01_data``
chose), and one for clusters, :data:`CLUSTER_COLORS`, so a colour means the same thing in every
figure, and every figure of masks or clusters has a legend. Functions that draw return a
:class:`matplotlib.figure.Figure` and never call ``plt.show()``: in Jupyter, assign the result
(``figure = comparison_grid(...)``), since the inline backend already shows every figure a cell
makes. Images may be float in ``[0, 1]`` or ``uint8``; masks ``(H, W)`` or ``(H, W, 1)``; arrays
from any Keras backend pass through ``numpy.asarray``.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from unet_clustering import config

_PANEL_INCHES = 2.6


def to_uint8_rgb(image: Any, argument: str = "image") -> np.ndarray:
    """``image`` (float in ``[0, 1]`` or integers in ``[0, 255]``; ``(H, W, 3)``, ``(H, W, 1)`` or grey
    ``(H, W)``) as ``(H, W, 3)`` uint8 RGB; ``argument`` names it in error messages."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{argument} must have shape (H, W, 3), (H, W, 1) or (H, W); got {array.shape}.")
    if array.dtype == np.uint8:
        return array
    top = 255 if np.issubdtype(array.dtype, np.integer) else 1
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    # A little slack absorbs the rounding errors of augmentations; NaN fails both comparisons.
    if not (low >= -1e-3 and high <= top + 1e-3):
        raise ValueError(
            f"{argument} has values in [{low:.4g}, {high:.4g}]; images must be float in [0, 1] or "
            "integers in [0, 255]. Divide a [0, 255] float image by 255."
        )
    return np.round(np.clip(array, 0, top) * (255 / top)).astype(np.uint8)


def upsample_labels(label_map: Any, height: int, width: int) -> np.ndarray:
    """Resize a ``(h, w)`` label map to ``(height, width)`` by nearest neighbour, so labels stay
    labels: for clusters computed on a coarser feature map than the image."""
    labels = _label_map(label_map, "label_map")
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive; got {height} x {width}.")
    # cv2.resize works on int32, which holds every label a clustering produces.
    resized = cv2.resize(labels.astype(np.int32), (int(width), int(height)), interpolation=cv2.INTER_NEAREST)
    return resized.astype(np.int64)


# ---- Legends and grids of pictures ----
def _cluster_look(label: int) -> tuple[str, np.ndarray]:
    """Name and RGB colour (floats in [0, 1], as matplotlib takes them) of cluster ``label``."""
    if label == -1:
        return "noise", NOISE_COLOR / 255
    return f"cluster {label}", CLUSTER_COLORS[label % len(CLUSTER_COLORS)] / 255


def _add_legend(figure: Figure, cluster_labels: Any = None, below: bool = False) -> None:
    """Add a legend of the classes, or of the clusters in ``cluster_labels`` (noise last)."""
    if cluster_labels is None:
        classes = config.dataset_classes()
        title, entries = "classes", list(zip(classes.names, class_colors(classes) / 255, strict=True))
    else:
        ordered = sorted(np.unique(cluster_labels).tolist(), key=lambda label: (label == -1, label))
        title, entries = "clusters", [_cluster_look(label) for label in ordered]
    handles = [Patch(facecolor=color, edgecolor="black", label=name) for name, color in entries]
    # "outside" puts the legend beside the grid, where it hides no pixel; a second legend goes
    # below the grid so that the two never overlap.
    location, ncols = ("outside lower center", len(handles)) if below else ("outside right upper", 1)
    figure.legend(handles=handles, title=title, loc=location, ncols=ncols, frameon=False)


def _panel_grid(
    panels: list[list[np.ndarray]], titles: Sequence[str], row_labels: Any, inches: float
) -> Figure:
    """Show RGB pictures ``panels[row][column]`` without ticks, ``titles`` over the top row and
    ``row_labels`` (or None) beside the first; grid cells that short rows leave empty are removed."""
    rows, columns = len(panels), len(panels[0])
    size = (inches * columns, inches * rows)
    figure, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, layout="constrained")
    for row, axes_row in enumerate(axes):
        for ax, picture in zip(axes_row, panels[row], strict=False):
            # Nearest neighbour keeps label colours pure instead of blending them at region edges.
            ax.imshow(picture, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            ax.spines[:].set_visible(False)
        if row_labels is not None:
            axes_row[0].set_ylabel(str(row_labels[row]), fontsize="small")
    for ax, title in zip(axes[0], titles, strict=False):
        ax.set_title(title)
    for ax in axes.flat:
        if not ax.images:
            ax.remove()
    return figure


def _paint(
    picture: np.ndarray, label_map: Any, name: str, clusters: bool = False, blend: bool = False
) -> np.ndarray:
    """``label_map`` coloured, or blended over ``picture``, after checking that their sizes match."""
    labels = _label_map(label_map, name, picture)
    if blend:
        return overlay(picture, labels, clusters=clusters)
    return colorize_clusters(labels) if clusters else colorize_mask(labels)


def comparison_grid(
    images: Any,
    columns: Mapping[str, Any],
    cluster_columns: Sequence[str] = (),
    row_labels: Sequence[str] | None = None,
    as_overlay: bool = False,
    image_title: str = "image",
    panel_inches: float = _PANEL_INCHES,
) -> Figure:
    """Rows of examples: the image (column title ``image_title``), then one coloured map per column.

    ``images``: ``(N, H, W, 3)`` or a list of N images. ``columns``: name -> N maps, e.g.
    ``{"ground truth": y, "U-Net mask": p, "clustered map": c}``. Columns named in
    ``cluster_columns`` hold cluster maps, painted in cluster colours with their own legend; the
    rest are class masks. ``row_labels`` (N strings) label the rows. ``as_overlay=True`` blends
    the maps over the images. Returns the Figure with ``N * (1 + len(columns))`` axes.
    """
    pictures = [to_uint8_rgb(image, "images") for image in images]
    maps = {name: list(column) for name, column in columns.items()}
    if not pictures or not maps:
        raise ValueError("comparison_grid needs at least one image and one named column of maps.")
    unknown = [name for name in cluster_columns if name not in maps]
    if unknown:
        raise ValueError(f"cluster_columns names {unknown} that are not in columns {list(maps)}.")
    if row_labels is not None and len(row_labels) != len(pictures):
        raise ValueError(f"row_labels has {len(row_labels)} entries but images has {len(pictures)}.")
    panels = [[picture] for picture in pictures]
    for name, column in maps.items():
        if len(column) != len(pictures):
            raise ValueError(f"columns[{name!r}] has {len(column)} maps but images has {len(pictures)}.")
        for row, (picture, label_map) in enumerate(zip(pictures, column, strict=True)):
            argument = f"columns[{name!r}][{row}]"
            panels[row].append(_paint(picture, label_map, argument, name in cluster_columns, as_overlay))
    figure = _panel_grid(panels, [image_title, *maps], row_labels, panel_inches)
    cluster_maps = [np.ravel(label_map) for name in set(cluster_columns) for label_map in maps[name]]
    if len(set(cluster_columns)) < len(maps):
        _add_legend(figure, below=bool(cluster_maps))
    if cluster_maps:
        _add_legend(figure, np.concatenate(cluster_maps))
    return figure


def image_mask_grid(
    images: Any,
    masks: Any,
    n: int | None = 4,
    row_labels: Sequence[str] | None = None,
    panel_inches: float = _PANEL_INCHES,
) -> Figure:
    """``n`` rows (``None``: all) of image | coloured mask | overlay, with a class legend.

    ``images``: ``(N, H, W, 3)`` or a list; ``masks``: ``(N, H, W)`` / ``(N, H, W, 1)`` or a list.
    """
    images, masks = list(images), list(masks)
    if len(images) != len(masks):
        raise ValueError(f"images has {len(images)} examples but masks has {len(masks)}; they must match.")
    if not images or (n is not None and n < 1):
        raise ValueError(f"Give at least one example and n >= 1 or None; got {len(images)} and n={n}.")
    panels = []
    for row, (image, mask) in enumerate(zip(images[:n], masks[:n], strict=True)):
        picture = to_uint8_rgb(image, f"images[{row}]")
        panels.append([picture, _paint(picture, mask, f"masks[{row}]"), overlay(picture, mask)])
    figure = _panel_grid(panels, ("image", "mask", "overlay"), row_labels, panel_inches)
    _add_legend(figure)
    return figure


def augmentation_grid(
    pairs: Sequence[tuple[Any, Any]], titles: Sequence[str] | None = None, panel_inches: float = _PANEL_INCHES
) -> Figure:
    """Images over their masks, for ``pairs`` ``[(image, mask), ...]`` (an original, then its
    augmented copies), with a class legend; ``titles`` default to ``"original", "augmented 1", ...``."""
    pictures = [to_uint8_rgb(image, f"pairs[{index}] image") for index, (image, _) in enumerate(pairs)]
    if not pictures:
        raise ValueError("pairs is empty; give at least the original (image, mask) pair.")
    titles = titles or ["original", *(f"augmented {index}" for index in range(1, len(pictures)))]
    if len(titles) != len(pictures):
        raise ValueError(f"titles has {len(titles)} entries but pairs has {len(pictures)}.")
    masks = [_paint(picture, pairs[i][1], f"pairs[{i}] mask") for i, picture in enumerate(pictures)]
    figure = _panel_grid([pictures, masks], titles, ("image", "mask"), panel_inches)
    _add_legend(figure)
    return figure


def per_cluster_view(
    image: Any, cluster_map: Any, columns: int = 4, dim: float = 0.2, panel_inches: float = _PANEL_INCHES
) -> Figure:
    """One panel per cluster (noise last), framed in its colour: its pixels shown, the rest dimmed.

    ``cluster_map``: ``(H, W)`` or ``(H, W, 1)``, the size of ``image``. Other pixels are darkened
    to ``dim`` of their brightness; each title gives the cluster's share of the pixels.
    """
    if not 0 <= dim <= 1 or columns < 1:
        raise ValueError(f"dim must be in [0, 1] and columns at least 1; got dim={dim}, columns={columns}.")
    picture = to_uint8_rgb(image)
    labels = _label_map(cluster_map, "cluster_map", picture)
    ordered = sorted(np.unique(labels).tolist(), key=lambda label: (label == -1, label))
    dimmed = np.round(picture * dim).astype(np.uint8)
    shown = [np.where((labels == label)[..., None], picture, dimmed) for label in ordered]
    rows = [shown[start : start + columns] for start in range(0, len(shown), columns)]
    figure = _panel_grid(rows, (), None, panel_inches)
    for ax, label in zip(figure.axes, ordered, strict=True):
        name, color = _cluster_look(label)
        ax.spines[:].set_visible(True)
        ax.spines[:].set_edgecolor(color)
        ax.spines[:].set_linewidth(4)
        ax.set_title(f"{name} ({np.mean(labels == label):.0%})", color=color, fontweight="bold")
    _add_legend(figure, labels)
    return figure


# ---- Plots of numbers ----
def confusion_heatmap(
    cm: Any,
    row_names: Sequence[str],
    col_names: Sequence[str],
    normalize: str | None = "true",
    title: str | None = None,
    xlabel: str = "predicted",
    ylabel: str = "true",
) -> Figure:
    """An annotated seaborn heatmap of a confusion (or contingency) matrix, rows = true classes.

    ``normalize``: ``"true"`` divides each row by its sum (an empty row stays 0), ``"pred"`` each
    column, ``"all"`` the whole matrix; ``None`` shows raw counts.
    """
    matrix = np.asarray(cm, dtype=np.float64)
    expected = (len(row_names), len(col_names))
    if matrix.shape != expected:
        raise ValueError(f"cm has shape {matrix.shape} but row_names and col_names give {expected}.")
    axis = {"true": 1, "pred": 0, "all": None}
    if normalize is not None and normalize not in axis:
        raise ValueError(f"normalize must be 'true', 'pred', 'all' or None; got {normalize!r}.")
    if normalize is None:
        shown, vmax, number_format = matrix, None, "g" if np.all(matrix == np.round(matrix)) else ".3g"
    else:
        totals = matrix.sum(axis=axis[normalize], keepdims=True)
        # An empty row (a class that never occurs) has no rate: show 0, not a division warning.
        shown = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals != 0)
        vmax, number_format = 1, ".2f"
    side = 1.0 + 0.9 * max(expected)
    figure, ax = plt.subplots(figsize=(side + 1.5, side), layout="constrained")
    frame = pd.DataFrame(shown, index=list(row_names), columns=list(col_names))
    sns.heatmap(frame, annot=True, fmt=number_format, cmap="Blues", vmin=0, vmax=vmax, square=True, ax=ax)
    ax.collections[0].colorbar.set_label("count" if normalize is None else "fraction")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "")
    ax.tick_params(axis="y", rotation=0)
    return figure


def learning_curves(history: Any, panel_inches: float = 3.2, max_columns: int = 3) -> Figure:
    """One panel per quantity (loss, each metric, ...): train and, if present, ``val_`` curves.

    ``history``: a ``keras.callbacks.History``, a dict name -> values per epoch, or a DataFrame of
    ``history.csv`` (its ``epoch`` column is the x axis). Learning rates get a log scale.
    """
    history = getattr(history, "history", history)  # a keras History keeps its dict in .history
    values = {str(name): np.asarray(history[name], dtype=np.float64) for name in history}
    epochs = values.pop("epoch", None)
    lengths = sorted({len(series) for series in values.values()})
    if len(lengths) != 1:
        raise ValueError(f"history needs one value per epoch for each quantity; got lengths {lengths}.")
    # Keras' CSVLogger counts epochs from 0; people count from 1.
    x_values = np.arange(1, lengths[0] + 1) if epochs is None else epochs + 1
    quantities = list(dict.fromkeys(name.removeprefix("val_") for name in values))
    columns = min(max_columns, len(quantities))
    rows = math.ceil(len(quantities) / columns)
    size = (panel_inches * 1.3 * columns, panel_inches * rows)
    figure, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, layout="constrained")
    for ax in axes.flat[len(quantities) :]:
        ax.remove()
    for ax, quantity in zip(axes.flat, quantities, strict=False):
        for name, label in ((quantity, "train"), (f"val_{quantity}", "validation")):
            if name in values:
                ax.plot(x_values, values[name], marker=".", label=label)
        if quantity in ("lr", "learning_rate"):
            ax.set_yscale("log")
        ax.set(title=quantity, xlabel="epoch")
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
    """Two panels against k: k-means inertia (look for the elbow) and silhouette (higher is better).

    ``chosen_k``, if given, must be one of ``k_values``; it is marked and named on both panels.
    A silhouette of ``None``/NaN (k=1 has none) is skipped.
    """
    ks = np.asarray(k_values)
    inertia = np.asarray(inertias, dtype=np.float64)
    silhouette = np.array([np.nan if value is None else value for value in silhouettes], dtype=np.float64)
    lengths = (len(ks), len(inertia), len(silhouette))
    if len(set(lengths)) != 1:
        raise ValueError(f"k_values, inertias and silhouettes need equal lengths; got {lengths}.")
    if chosen_k is not None and chosen_k not in ks.tolist():
        raise ValueError(f"chosen_k={chosen_k} is not one of k_values {ks.tolist()}.")
    figure, (inertia_ax, silhouette_ax) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    inertia_ax.plot(ks, inertia, marker="o", label="inertia")
    inertia_ax.set(ylabel="inertia (within-cluster sum of squares)", title="elbow")
    valid = np.isfinite(silhouette)
    silhouette_ax.plot(ks[valid], silhouette[valid], marker="o", color="tab:green", label="silhouette")
    silhouette_ax.set(ylabel="silhouette score", title="silhouette")
    for ax in (inertia_ax, silhouette_ax):
        if chosen_k is not None:
            ax.axvline(chosen_k, color="tab:red", linestyle="--", label=f"chosen k = {chosen_k}")
        ax.set(xlabel="number of clusters k", xticks=ks)
        ax.grid(alpha=0.3)
        ax.legend()
    return figure


def k_distance_plot(distances: Any, eps: float | None = None, k: int | None = None) -> Figure:
    """Sorted distance of every point to its k-th nearest neighbour, to choose DBSCAN's ``eps``
    (the knee of the curve); ``eps``, if given, is drawn as a horizontal line."""
    values = np.sort(np.asarray(distances, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("distances is empty.")
    figure, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.plot(values, label=f"distance to {'k' if k is None else k}-th neighbour")
    if eps is not None:
        ax.axhline(eps, color="tab:red", linestyle="--", label=f"eps = {eps:.3g}")
    ax.set(xlabel="points, sorted by distance", ylabel="distance", title="k-distance plot")
    ax.grid(alpha=0.3)
    ax.legend()
    return figure


def explained_variance_plot(ratio: Any, title: str | None = None) -> Figure:
    """Bars of each principal component's share of the variance (``ratio``, largest first), and
    their running total."""
    values = np.asarray(ratio, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("ratio is empty.")
    components = np.arange(1, values.size + 1)
    figure, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.bar(components, values, color="tab:blue", label="component")
    ax.plot(components, np.cumsum(values), color="tab:orange", marker="o", label="cumulative")
    ax.set(xlabel="principal component", ylabel="share of variance", ylim=(0, 1.05))
    ax.set_title(title or "PCA explained variance")
    ax.grid(alpha=0.3)
    ax.legend()
    return figure


def embedding_scatter(
    points_2d: Any,
    colour_by: Mapping[str, Any],
    label_names: Mapping[str, Any] | None = None,
    point_size: float = 4.0,
    panel_inches: float = 4.0,
) -> Figure:
    """Scatter 2-D points (PCA / t-SNE / UMAP of features), one panel per colouring, with legends.

    ``points_2d``: ``(N, 2)``. ``colour_by``: title -> N integer labels, e.g. ``{"true class": y,
    "k-means": clusters}``. ``label_names``: title -> names of the labels (a sequence indexed by
    label, or a dict label -> name). A colouring named with the data's class names uses
    :func:`class_colors`; any other uses :data:`CLUSTER_COLORS`, with noise (``-1``) grey.
    """
    points = np.asarray(points_2d, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points_2d must have shape (N, 2); got {points.shape}.")
    size = (panel_inches * len(colour_by) + 1.5, panel_inches)
    figure, axes = plt.subplots(1, len(colour_by), figsize=size, squeeze=False, layout="constrained")
    for ax, (title, labels) in zip(axes[0], colour_by.items(), strict=True):
        labels = np.asarray(labels).ravel().astype(np.int64)
        if len(labels) != len(points):
            raise ValueError(f"colour_by[{title!r}]: {len(labels)} labels but points_2d has {len(points)}.")
        names = (label_names or {}).get(title)
        classes = config.dataset_classes()
        is_class = names is not None and tuple(map(str, names)) == classes.names
        palette = class_colors(classes) / 255
        names = dict(names) if isinstance(names, Mapping) else dict(enumerate(names or ()))
        # Noise first, so that the clusters are drawn on top of it.
        for label in sorted(np.unique(labels).tolist(), key=lambda value: (value != -1, value)):
            default, color = (str(label), palette[label]) if is_class else _cluster_look(label)
            x, y = points[labels == label].T
            ax.scatter(x, y, s=point_size, color=[color], label=str(names.get(label, default)), linewidths=0)
        ax.set(title=title, xticks=[], yticks=[])
        ax.legend(markerscale=3, fontsize="small")
    return figure


def class_balance_bar(counts: Any, names: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Bars of the pixel count of each class in :func:`class_colors`, labelled with their shares.

    ``counts``: an array aligned with ``names`` (default: the data's class names), or a dict keyed by
    class name or class index. Names other than the data's classes get the cluster colours.
    """
    classes = config.dataset_classes()
    names = [str(name) for name in (classes.names if names is None else names)]
    if isinstance(counts, Mapping):
        unknown = [key for key in counts if key not in names and key not in range(len(names))]
        if unknown:
            raise ValueError(f"counts has keys {unknown}, neither in names {names} nor class indices.")
        counts = [counts.get(name, counts.get(index, 0)) for index, name in enumerate(names)]
    values = np.asarray(counts, dtype=np.float64).ravel()
    if values.shape != (len(names),):
        raise ValueError(f"counts has {values.size} entries but names has {len(names)}; they must match.")
    palette = class_colors(classes) if tuple(names) == classes.names else CLUSTER_COLORS
    colors = palette[np.arange(len(names)) % len(palette)] / 255
    figure, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 3.5), layout="constrained")
    bars = ax.bar(names, values, color=colors, edgecolor="black", label=names)
    shares = values / values.sum() if values.sum() > 0 else np.zeros_like(values)
    ax.bar_label(bars, labels=[f"{share:.1%}" for share in shares], padding=2)
    ax.set(ylabel="pixels", title=title or "class balance")
    ax.margins(y=0.15)
    ax.legend()
    return figure


def size_histogram(widths: Any, heights: Any, bins: int = 30) -> Figure:
    """Original image sizes: histograms of widths and heights, and width against height (points
    off the diagonal are images that resizing to a square distorts)."""
    width, height = np.ravel(widths).astype(np.float64), np.ravel(heights).astype(np.float64)
    if width.shape != height.shape or width.size == 0:
        raise ValueError(f"widths ({width.size}) and heights ({height.size}) need one pair per image.")
    figure, (histogram_ax, scatter_ax) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    histogram_ax.hist([width, height], bins=bins, alpha=0.6, label=["width", "height"], histtype="stepfilled")
    histogram_ax.set(xlabel="pixels", ylabel="images", title="image sizes")
    scatter_ax.scatter(width, height, s=6, alpha=0.5, label="image")
    low, high = min(width.min(), height.min()), max(width.max(), height.max())
    scatter_ax.plot([low, high], [low, high], color="tab:red", linestyle="--", label="square")
    scatter_ax.set(xlabel="width (pixels)", ylabel="height (pixels)", title="width against height")
    for ax in (histogram_ax, scatter_ax):
        ax.legend()
    return figure


# ---- Saving ----
def _image_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"Cannot save {path.name!r}: the extension must be .png, .jpg or .jpeg.")
    return path


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG or JPEG (by the extension), atomically, creating missing folders;
    returns the path. The figure stays open (close it with ``plt.close(fig)``)."""
    path, buffer = _image_path(path), io.BytesIO()
    fig.savefig(buffer, format=path.suffix[1:].lower(), dpi=dpi, bbox_inches="tight", facecolor="white")
    return config.atomic_write_bytes(path, buffer.getvalue())


def save_image(path: str | Path, array: Any) -> Path:
    """Write an RGB ``(H, W, 3)`` or grey ``(H, W)`` image, uint8 or float in ``[0, 1]``, as PNG
    or JPEG (by the extension), atomically, creating missing folders; returns the path."""
    path = _image_path(path)
    picture = to_uint8_rgb(array, "array")
    is_grey = np.ndim(array) == 2 or np.shape(array)[-1] == 1
    # OpenCV stores channels as BGR, so RGB is reordered before encoding.
    pixels = picture[..., 0] if is_grey else cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    success, encoded = cv2.imencode(path.suffix.lower(), pixels)
    if not success:
        raise ValueError(f"OpenCV could not encode an image of shape {picture.shape} as {path}.")
    return config.atomic_write_bytes(path, encoded.tobytes())


# ---- Exported from notebooks/06_visualization.ipynb: edit the notebook, then run `make export`. ----
#: RGB colour of the background class, and of the other classes in turn (Okabe and Ito's colour-blind-safe set).
BACKGROUND_COLOR = np.array((0, 114, 178), dtype=np.uint8)
FOREGROUND_COLORS = np.array(
    [(230, 159, 0), (240, 228, 66), (86, 180, 233), (0, 158, 115), (213, 94, 0), (204, 121, 167)],
    dtype=np.uint8,
)

#: RGB colour of noise (label -1, as DBSCAN and HDBSCAN write it): a grey that no cluster gets.
NOISE_COLOR = np.array((128, 128, 128), dtype=np.uint8)

# Matplotlib's "tab20", strong shades first and then their light partners, so that the first ten clusters differ
# most; its two greys give way to two "tab20b" colours, because grey means noise.
_tab20, _tab20b = matplotlib.colormaps["tab20"].colors, matplotlib.colormaps["tab20b"].colors
_strong, _light = list(_tab20[0::2]), list(_tab20[1::2])
_strong[7], _light[7] = _tab20b[0], _tab20b[4]

#: RGB colour of clusters 0, 1, 2, ... (20 colours; labels beyond repeat them, with a warning).
CLUSTER_COLORS = np.round(255 * np.array(_strong + _light)).astype(np.uint8)

# Every figure shares the palettes: editing one by accident fails loudly instead of recolouring later plots.
for _palette in (BACKGROUND_COLOR, FOREGROUND_COLORS, NOISE_COLOR, CLUSTER_COLORS):
    _palette.setflags(write=False)


def class_colors(classes=None):
    """RGB colour of each class of `classes` (default: the data's): the background blue, the others in turn."""
    classes = classes or config.dataset_classes()
    others = np.concatenate([FOREGROUND_COLORS, CLUSTER_COLORS])  # past six classes, the cluster colours
    colors = np.empty((classes.num_classes, 3), np.uint8)
    colors[classes.background] = BACKGROUND_COLOR
    colors[list(classes.foreground)] = others[np.arange(len(classes.foreground)) % len(others)]
    return colors


def _label_map(labels, argument, image=None):
    """`labels` as an (H, W) integer array, checked to fit the (H, W, 3) `image` if one is given."""
    array = np.asarray(labels)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{argument} must have shape (H, W) or (H, W, 1); got shape {array.shape}.")
    if image is not None and image.shape != (*array.shape, 3):
        raise ValueError(f"{argument} of shape {array.shape} does not fit image of shape {image.shape}.")
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise ValueError(f"{argument} must hold whole-number labels; take the argmax of the model's scores.")
    return array.astype(np.int64)


def colorize_mask(mask, colors=None):
    """Paint a class mask (H, W) as (H, W, 3) uint8 RGB: class c in colors[c] (default: `class_colors()`)."""
    labels = _label_map(mask, "mask")
    palette = np.asarray(class_colors() if colors is None else colors, dtype=np.uint8)
    outside = (labels < 0) | (labels >= len(palette))
    if outside.any():
        raise ValueError(
            f"mask holds labels {np.unique(labels[outside]).tolist()[:10]} outside [0, {len(palette) - 1}], "
            "the classes that colors can paint. For cluster maps use colorize_clusters."
        )
    return palette[labels]


def colorize_clusters(cluster_map):
    """Paint a cluster map (H, W) as (H, W, 3) uint8 RGB: cluster k in CLUSTER_COLORS[k], noise (-1) grey."""
    labels = _label_map(cluster_map, "cluster_map")
    if np.any(labels < -1):
        raise ValueError(f"cluster_map holds label {labels.min()}; labels must be -1 (noise) or 0, 1, 2, ...")
    if np.any(labels >= len(CLUSTER_COLORS)):
        message = f"cluster_map has labels up to {labels.max()}, more than the {len(CLUSTER_COLORS)} colours"
        warnings.warn(f"{message}; colours repeat.", stacklevel=2)
    painted = CLUSTER_COLORS[labels % len(CLUSTER_COLORS)]
    painted[labels == -1] = NOISE_COLOR
    return painted


def overlay(image, mask, alpha=0.45, contours=True, clusters=False, contour_thickness=1):
    """Blend a coloured mask (or, with `clusters`, a cluster map) over an image and outline each region.

    `image` is (H, W, 3), float in [0, 1] or uint8. Returns (H, W, 3) uint8 RGB; the outlines are about
    `contour_thickness + 1` pixels wide, half on each side of a boundary.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}.")
    photo = np.asarray(image)
    if photo.dtype != np.uint8:
        if not (photo.min() >= -1e-3 and photo.max() <= 1 + 1e-3):
            raise ValueError(f"A float image must lie in [0, 1]; got values up to {photo.max():.4g}.")
        photo = np.round(np.clip(photo, 0, 1) * 255).astype(np.uint8)
    labels = _label_map(mask, "mask", photo)
    painted = colorize_clusters(labels) if clusters else colorize_mask(labels)
    blended = np.round((1 - alpha) * photo.astype(np.float32) + alpha * painted).astype(np.uint8)
    if contours:
        square = np.ones((contour_thickness + 2, contour_thickness + 2), np.uint8)
        edges = cv2.morphologyEx(labels.astype(np.float32), cv2.MORPH_GRADIENT, square) > 0
        blended[edges] = painted[edges]
    return blended


# ---- End of the code exported from notebooks/06_visualization.ipynb. ----
