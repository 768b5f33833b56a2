"""Tests of unet_clustering.visualization: palettes, overlays, figures and saving."""

from __future__ import annotations

import warnings

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from unet_clustering import config
from unet_clustering import visualization as viz

# Tests never open windows, whatever display the machine has.
plt.switch_backend("Agg")

#: The palette of Oxford-IIIT Pet's classes, which the tests' masks use.
CLASS_COLORS = viz.class_colors(config.OXFORD_PET_CLASSES)
SIZE = 16
# The pet square occupies rows and columns TOP..BOTTOM-1 of a background image.
TOP, BOTTOM = 4, 12


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def square_mask() -> np.ndarray:
    mask = np.full((SIZE, SIZE), config.BACKGROUND, dtype=np.int32)
    mask[TOP:BOTTOM, TOP:BOTTOM] = config.PET
    return mask


def gradient_image() -> np.ndarray:
    """A uint8 image whose pixels differ from every palette colour."""
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([rows * 7 + 3, columns * 5 + 11, (rows + columns) * 3 + 40], axis=-1)
    return image.astype(np.uint8)


def boundary_pixels(mask: np.ndarray) -> np.ndarray:
    """Pixels with an 8-neighbour of another class, worked out independently of OpenCV."""
    padded = np.pad(mask, 1, mode="edge")
    differs = np.zeros(mask.shape, dtype=bool)
    for row_shift in (-1, 0, 1):
        for column_shift in (-1, 0, 1):
            neighbour = padded[
                1 + row_shift : 1 + row_shift + SIZE, 1 + column_shift : 1 + column_shift + SIZE
            ]
            differs |= neighbour != mask
    return differs


def legend_labels(legend) -> list[str]:
    return [text.get_text() for text in legend.get_texts()]


# --------------------------------------------------------------------------------------------- palettes


def test_palettes_have_one_distinct_colour_per_class_and_cluster():
    assert CLASS_COLORS.shape == (config.OXFORD_PET_CLASSES.num_classes, 3)
    assert CLASS_COLORS.dtype == np.uint8
    assert len({tuple(color) for color in CLASS_COLORS}) == config.OXFORD_PET_CLASSES.num_classes
    assert len(viz.CLUSTER_COLORS) >= 20
    assert len({tuple(color) for color in viz.CLUSTER_COLORS}) == len(viz.CLUSTER_COLORS)
    assert tuple(viz.NOISE_COLOR) not in {tuple(color) for color in viz.CLUSTER_COLORS}
    # No cluster is grey, the colour of noise; the first is matplotlib's tab20 blue.
    assert not any(red == green == blue for red, green, blue in viz.CLUSTER_COLORS.tolist())
    np.testing.assert_array_equal(viz.CLUSTER_COLORS[0], (31, 119, 180))
    # Strong shades first, then their light partners; tab20's greys give way to two tab20b colours.
    np.testing.assert_array_equal(
        viz.CLUSTER_COLORS[[7, 10, 17]], [(57, 59, 121), (174, 199, 232), (99, 121, 57)]
    )
    with pytest.raises(ValueError):
        viz.FOREGROUND_COLORS[0, 0] = 1  # read-only, so no notebook can recolour later figures
    with pytest.raises(ValueError):
        viz.CLUSTER_COLORS[0, 0] = 1


def test_to_uint8_rgb_scales_floats_repeats_grey_and_rejects_wrong_input():
    image = np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32)
    np.testing.assert_array_equal(viz.to_uint8_rgb(image), [[[0, 128, 255]]])
    grey = viz.to_uint8_rgb(np.array([[0.0, 1.0]]))
    assert grey.shape == (1, 2, 3) and grey.dtype == np.uint8
    np.testing.assert_array_equal(grey[0, 1], (255, 255, 255))
    np.testing.assert_array_equal(viz.to_uint8_rgb(np.full((1, 1, 1), 7, dtype=np.int32)), [[[7, 7, 7]]])
    with pytest.raises(ValueError, match=r"photo has values in \[0, 255\].*Divide"):
        viz.to_uint8_rgb(np.array([[[0.0, 128.0, 255.0]]]), "photo")
    with pytest.raises(ValueError, match=r"\(2, 2, 4\)"):
        viz.to_uint8_rgb(np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="nan"):
        viz.to_uint8_rgb(np.full((1, 1, 3), np.nan))


def test_colorize_mask_maps_each_class_to_its_palette_colour():
    mask = np.array([[0, 1], [2, 0]])
    painted = viz.colorize_mask(mask)
    assert painted.shape == (2, 2, 3) and painted.dtype == np.uint8
    np.testing.assert_array_equal(painted[0, 0], (230, 159, 0))
    np.testing.assert_array_equal(painted[0, 1], (0, 114, 178))
    np.testing.assert_array_equal(painted[1, 0], (240, 228, 66))
    for class_index in range(config.OXFORD_PET_CLASSES.num_classes):
        np.testing.assert_array_equal(
            painted[mask == class_index],
            np.tile(CLASS_COLORS[class_index], (np.sum(mask == class_index), 1)),
        )
    np.testing.assert_array_equal(viz.colorize_mask(mask[..., None]), painted)
    own_colors = np.array([(1, 2, 3), (4, 5, 6), (7, 8, 9)], dtype=np.uint8)
    np.testing.assert_array_equal(viz.colorize_mask(mask, own_colors)[1, 0], (7, 8, 9))


def test_colorize_mask_rejects_labels_without_a_colour():
    with pytest.raises(ValueError, match=r"\[3\]"):
        viz.colorize_mask(np.array([[0, 3]]))
    with pytest.raises(ValueError, match="shape"):
        viz.colorize_mask(np.zeros((2, 2, 3), dtype=int))
    with pytest.raises(ValueError, match="whole-number"):
        viz.colorize_mask(np.array([[0.5, 1.0]]))


def test_colorize_clusters_paints_noise_grey_and_clusters_with_their_colour():
    cluster_map = np.array([[-1, 0], [1, 19]])
    painted = viz.colorize_clusters(cluster_map)
    red, green, blue = (int(value) for value in painted[0, 0])
    assert red == green == blue, "noise must be grey"
    np.testing.assert_array_equal(painted[0, 0], viz.NOISE_COLOR)
    np.testing.assert_array_equal(painted[0, 1], viz.CLUSTER_COLORS[0])
    np.testing.assert_array_equal(painted[1, 0], viz.CLUSTER_COLORS[1])
    np.testing.assert_array_equal(painted[1, 1], viz.CLUSTER_COLORS[19])
    with pytest.raises(ValueError, match="-2"):
        viz.colorize_clusters(np.array([[-2, 0]]))


def test_colorize_clusters_repeats_colours_with_a_warning_beyond_the_palette():
    beyond = len(viz.CLUSTER_COLORS)
    with pytest.warns(UserWarning, match="repeat"):
        painted = viz.colorize_clusters(np.array([[beyond, 1]]))
    np.testing.assert_array_equal(painted[0, 0], viz.CLUSTER_COLORS[0])


def test_upsample_labels_repeats_each_label_as_a_block():
    small = np.array([[0, 1], [2, -1]])
    expected = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, -1, -1], [2, 2, -1, -1]])
    np.testing.assert_array_equal(viz.upsample_labels(small, 4, 4), expected)
    np.testing.assert_array_equal(viz.upsample_labels(small[..., None], 4, 4), expected)
    np.testing.assert_array_equal(viz.upsample_labels(small, 2, 6)[1], [2, 2, 2, -1, -1, -1])
    with pytest.raises(ValueError, match="positive"):
        viz.upsample_labels(small, 0, 4)


# --------------------------------------------------------------------------------------------- overlay


def test_overlay_with_alpha_zero_is_the_image_except_on_region_boundaries():
    image, mask = gradient_image(), square_mask()
    result = viz.overlay(image, mask, alpha=0.0)
    away = ~boundary_pixels(mask)
    np.testing.assert_array_equal(result[away], image[away])
    # Without contours the whole image comes back unchanged.
    np.testing.assert_array_equal(viz.overlay(image, mask, alpha=0.0, contours=False), image)


def test_overlay_with_alpha_one_is_the_colour_mask_away_from_contours():
    image, mask = gradient_image(), square_mask()
    colour_mask = viz.colorize_mask(mask)
    result = viz.overlay(image, mask, alpha=1.0)
    away = ~boundary_pixels(mask)
    np.testing.assert_array_equal(result[away], colour_mask[away])
    np.testing.assert_array_equal(viz.overlay(image, mask, alpha=1.0, contours=False), colour_mask)


def test_overlay_blends_by_alpha():
    image = np.full((SIZE, SIZE, 3), 100, dtype=np.uint8)
    result = viz.overlay(image, square_mask(), alpha=0.2, contours=False)
    # Pet colour (230, 159, 0): 0.8 * 100 + 0.2 * colour.
    np.testing.assert_array_equal(result[8, 8], (126, 112, 80))


def test_overlay_draws_each_region_contour_on_its_boundary_in_the_region_colour():
    image, mask = gradient_image(), square_mask()
    result = viz.overlay(image, mask, alpha=0.0)
    pet_color, background_color = CLASS_COLORS[config.PET], CLASS_COLORS[config.BACKGROUND]
    middle = (TOP + BOTTOM) // 2
    for row, column in [(TOP, middle), (BOTTOM - 1, middle), (middle, TOP), (middle, BOTTOM - 1)]:
        np.testing.assert_array_equal(result[row, column], pet_color, err_msg=f"pet edge at {(row, column)}")
    for row, column in [(TOP - 1, middle), (BOTTOM, middle), (middle, TOP - 1), (middle, BOTTOM)]:
        np.testing.assert_array_equal(
            result[row, column], background_color, err_msg=f"background edge at {(row, column)}"
        )
    # Inside the square and on the image frame there is no boundary, so no contour.
    np.testing.assert_array_equal(result[middle, middle], image[middle, middle])
    np.testing.assert_array_equal(result[0, middle], image[0, middle])


def test_overlay_outlines_exactly_the_boundary_pixels_even_where_they_meet_the_frame():
    image = gradient_image()
    halves = np.full((SIZE, SIZE), config.BACKGROUND, dtype=np.int32)
    halves[:, SIZE // 2 :] = config.PET
    for mask in (square_mask(), halves):
        result = viz.overlay(image, mask, alpha=0.0)
        boundary = boundary_pixels(mask)
        np.testing.assert_array_equal(result[boundary], viz.colorize_mask(mask)[boundary])
        np.testing.assert_array_equal(result[~boundary], image[~boundary])
    assert boundary_pixels(halves)[0, SIZE // 2]  # the frame row is outlined where the halves meet


def test_overlay_contour_thickness_widens_the_outline_on_both_sides():
    image, mask = gradient_image(), square_mask()
    result = viz.overlay(image, mask, alpha=0.0, contour_thickness=3)
    middle = (TOP + BOTTOM) // 2
    pet_color, background_color = CLASS_COLORS[config.PET], CLASS_COLORS[config.BACKGROUND]
    # Thickness 3 draws an outline 4 pixels wide: 2 rows inside the square and 2 outside.
    for row in (TOP, TOP + 1):
        np.testing.assert_array_equal(result[row, middle], pet_color)
    for row in (TOP - 2, TOP - 1):
        np.testing.assert_array_equal(result[row, middle], background_color)
    for row in (TOP - 3, TOP + 2):
        np.testing.assert_array_equal(result[row, middle], image[row, middle])


def test_overlay_accepts_float_images_and_masks_with_a_channel_axis():
    image, mask = gradient_image(), square_mask()
    from_uint8 = viz.overlay(image, mask)
    from_float = viz.overlay(image.astype(np.float32) / 255.0, mask[..., None])
    np.testing.assert_array_equal(from_float, from_uint8)
    assert from_float.dtype == np.uint8 and from_float.shape == (SIZE, SIZE, 3)


def test_overlay_rejects_mismatched_shapes_and_bad_values():
    with pytest.raises(ValueError, match=r"\(6, 6\).*\(8, 8, 3\)"):
        viz.overlay(np.zeros((8, 8, 3), dtype=np.float32), np.zeros((6, 6), dtype=np.int32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        viz.overlay(np.full((4, 4, 3), 255.0), np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(np.zeros((4, 4, 3)), np.zeros((4, 4), dtype=np.int32), alpha=1.5)
    with pytest.raises(ValueError, match="whole-number"):
        viz.overlay(np.zeros((4, 4, 3)), np.full((4, 4), 0.3))
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 4\)"):
        viz.overlay(np.zeros((4, 4)), np.zeros((4, 4), dtype=np.int32))  # a grey image has no channels


def test_overlay_of_clusters_paints_noise_grey():
    cluster_map = np.zeros((SIZE, SIZE), dtype=int)
    cluster_map[:, SIZE // 2 :] = -1
    result = viz.overlay(np.zeros((SIZE, SIZE, 3), dtype=np.uint8), cluster_map, alpha=1.0, clusters=True)
    np.testing.assert_array_equal(result[5, SIZE - 3], viz.NOISE_COLOR)
    np.testing.assert_array_equal(result[5, 2], viz.CLUSTER_COLORS[0])


# --------------------------------------------------------------------------------------------- figures


def test_comparison_grid_layout_titles_row_labels_and_legends():
    count = 2
    images = np.random.default_rng(0).random((count, SIZE, SIZE, 3)).astype(np.float32)
    masks = np.stack([square_mask()] * count)[..., None]
    clusters = np.stack([square_mask() - 1] * count)  # labels -1 and 0
    figure = viz.comparison_grid(
        images,
        {"ground truth": masks, "U-Net mask": list(masks[..., 0]), "clustered map": clusters},
        cluster_columns=("clustered map",),
        row_labels=["a.jpg IoU 0.91", "b.jpg IoU 0.75"],
    )
    assert len(figure.axes) == count * 4
    top_titles = [figure.axes[column].get_title() for column in range(4)]
    assert top_titles == ["image", "ground truth", "U-Net mask", "clustered map"]
    assert figure.axes[4].get_ylabel() == "b.jpg IoU 0.75"
    legend_titles = sorted(legend.get_title().get_text() for legend in figure.legends)
    assert legend_titles == ["classes", "clusters"]
    cluster_legend = next(legend for legend in figure.legends if legend.get_title().get_text() == "clusters")
    assert legend_labels(cluster_legend) == ["cluster 0", "noise"]
    np.testing.assert_allclose(cluster_legend.legend_handles[1].get_facecolor()[:3], viz.NOISE_COLOR / 255.0)
    class_legend = next(legend for legend in figure.legends if legend.get_title().get_text() == "classes")
    assert legend_labels(class_legend) == list(config.OXFORD_PET_CLASSES.names)
    for handle, color in zip(class_legend.legend_handles, CLASS_COLORS, strict=True):
        np.testing.assert_allclose(handle.get_facecolor()[:3], color / 255.0)
    # The ground-truth panel shows exactly the coloured mask.
    np.testing.assert_array_equal(figure.axes[1].images[0].get_array(), viz.colorize_mask(square_mask()))


def test_comparison_grid_without_cluster_columns_has_only_the_class_legend():
    figure = viz.comparison_grid(gradient_image()[None], {"ground truth": square_mask()[None]})
    assert len(figure.axes) == 2
    assert [legend.get_title().get_text() for legend in figure.legends] == ["classes"]


def test_comparison_grid_as_overlay_blends_each_map_over_its_image():
    clusters = square_mask() - 1
    figure = viz.comparison_grid(
        [gradient_image()],
        {"mask": [square_mask()], "clusters": [clusters]},
        cluster_columns=["clusters"],
        as_overlay=True,
        image_title="photo.jpg",
    )
    assert [ax.get_title() for ax in figure.axes] == ["photo.jpg", "mask", "clusters"]
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), gradient_image())
    np.testing.assert_array_equal(
        figure.axes[1].images[0].get_array(), viz.overlay(gradient_image(), square_mask())
    )
    np.testing.assert_array_equal(
        figure.axes[2].images[0].get_array(), viz.overlay(gradient_image(), clusters, clusters=True)
    )


def test_comparison_grid_rejects_inconsistent_input():
    images = np.zeros((2, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="1 maps but images has 2"):
        viz.comparison_grid(images, {"ground truth": square_mask()[None]})
    with pytest.raises(ValueError, match="cluster_columns"):
        viz.comparison_grid(images, {"a": np.stack([square_mask()] * 2)}, cluster_columns=("b",))
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        viz.comparison_grid(images, {"a": np.zeros((2, 8, 8), dtype=int)})
    with pytest.raises(ValueError, match="row_labels"):
        viz.comparison_grid(images, {"a": np.stack([square_mask()] * 2)}, row_labels=["only one"])


def test_image_mask_grid_shows_n_rows_of_three_panels():
    images = np.stack([gradient_image()] * 3)
    masks = np.stack([square_mask()] * 3)
    figure = viz.image_mask_grid(images, masks, n=2)
    assert len(figure.axes) == 2 * 3
    assert [figure.axes[column].get_title() for column in range(3)] == ["image", "mask", "overlay"]
    assert legend_labels(figure.legends[0]) == list(config.OXFORD_PET_CLASSES.names)
    np.testing.assert_array_equal(figure.axes[2].images[0].get_array(), viz.overlay(images[0], masks[0]))
    with pytest.raises(ValueError, match="3 examples but masks has 2"):
        viz.image_mask_grid(images, masks[:2])
    assert len(viz.image_mask_grid(images, masks, n=None).axes) == 3 * 3
    with pytest.raises(ValueError, match="n >= 1"):
        viz.image_mask_grid(images, masks, n=0)


def test_augmentation_grid_has_an_image_and_a_mask_row():
    pairs = [(gradient_image(), square_mask()), (gradient_image()[::-1], square_mask()[::-1])]
    figure = viz.augmentation_grid(pairs)
    assert len(figure.axes) == 4
    assert [figure.axes[column].get_title() for column in range(2)] == ["original", "augmented 1"]
    assert [figure.axes[0].get_ylabel(), figure.axes[2].get_ylabel()] == ["image", "mask"]
    np.testing.assert_array_equal(
        figure.axes[3].images[0].get_array(), viz.colorize_mask(square_mask()[::-1])
    )
    assert len(figure.legends) == 1
    with pytest.raises(ValueError, match="titles"):
        viz.augmentation_grid(pairs, titles=["only one"])


def test_per_cluster_view_has_one_framed_panel_per_cluster_showing_its_pixels():
    image = gradient_image()
    cluster_map = np.zeros((SIZE, SIZE), dtype=int)
    cluster_map[:, 4:8] = 1
    cluster_map[:, 8:12] = 3
    cluster_map[:, 12:] = -1
    figure = viz.per_cluster_view(image, cluster_map, columns=3, dim=0.0)
    assert len(figure.axes) == 4  # clusters 0, 1, 3 and noise; the empty grid cells are removed
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["cluster 0 (25%)", "cluster 1 (25%)", "cluster 3 (25%)", "noise (25%)"]
    shown = figure.axes[1].images[0].get_array()
    np.testing.assert_array_equal(shown[:, 4:8], image[:, 4:8])
    assert not np.any(shown[:, :4]) and not np.any(shown[:, 8:])  # dim=0 blacks out the rest
    frame = figure.axes[1].spines["top"].get_edgecolor()[:3]
    np.testing.assert_allclose(frame, viz.CLUSTER_COLORS[1] / 255.0)
    assert legend_labels(figure.legends[0]) == ["cluster 0", "cluster 1", "cluster 3", "noise"]
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        viz.per_cluster_view(image, np.zeros((8, 8), dtype=int))


@pytest.mark.parametrize(
    "draw",
    [
        lambda: viz.comparison_grid([gradient_image()], {"mask": [square_mask()]}),
        lambda: viz.image_mask_grid([gradient_image()], [square_mask()]),
        lambda: viz.augmentation_grid([(gradient_image(), square_mask())]),
        lambda: viz.per_cluster_view(gradient_image(), square_mask()),
        lambda: viz.confusion_heatmap(np.eye(2), ["a", "b"], ["a", "b"]),
        lambda: viz.learning_curves({"loss": [1.0, 0.5]}),
        lambda: viz.elbow_silhouette_plot([2, 3], [2.0, 1.0], [None, 0.5]),
        lambda: viz.k_distance_plot([0.2, 0.1]),
        lambda: viz.explained_variance_plot([0.6, 0.3]),
        lambda: viz.embedding_scatter(np.zeros((2, 2)), {"k-means": [0, 1]}),
        lambda: viz.class_balance_bar([1, 2, 3]),
        lambda: viz.size_histogram([1, 2], [2, 1]),
    ],
)
def test_every_plotting_function_returns_a_figure(draw):
    assert isinstance(draw(), Figure)


def test_confusion_heatmap_normalises_rows_and_annotates():
    counts = np.array([[3, 1], [0, 4], [0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the empty row must not divide by zero
        figure = viz.confusion_heatmap(counts, ["pet", "background", "border"], ["c0", "c1"], title="t")
    assert len(figure.axes) == 2  # the heatmap and its colour bar
    annotations = [text.get_text() for text in figure.axes[0].texts]
    assert annotations == ["0.75", "0.25", "0.00", "1.00", "0.00", "0.00"]
    assert figure.axes[0].get_title() == "t"
    assert figure.axes[1].get_ylabel() == "fraction"
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == ["pet", "background", "border"]
    by_column = viz.confusion_heatmap(counts, ["pet", "background", "border"], ["c0", "c1"], normalize="pred")
    assert [text.get_text() for text in by_column.axes[0].texts] == [
        "1.00",
        "0.20",
        "0.00",
        "0.80",
        "0.00",
        "0.00",
    ]
    raw = viz.confusion_heatmap(counts, ["pet", "background", "border"], ["c0", "c1"], normalize=None)
    assert [text.get_text() for text in raw.axes[0].texts] == ["3", "1", "0", "4", "0", "0"]
    assert raw.axes[1].get_ylabel() == "count"
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        viz.confusion_heatmap(counts, ["pet", "background"], ["c0", "c1"])
    with pytest.raises(ValueError, match="normalize"):
        viz.confusion_heatmap(counts, ["a", "b", "c"], ["c0", "c1"], normalize="rows")


def test_learning_curves_one_panel_per_quantity_with_validation_where_present():
    history = {"loss": [1.0, 0.5, 0.25], "val_loss": [1.2, 0.7, 0.6], "iou": [0.1, 0.3, 0.4]}
    figure = viz.learning_curves(history)
    assert len(figure.axes) == 2
    loss_ax, iou_ax = figure.axes
    assert loss_ax.get_title() == "loss" and iou_ax.get_title() == "iou"
    assert legend_labels(loss_ax.get_legend()) == ["train", "validation"]
    assert legend_labels(iou_ax.get_legend()) == ["train"]
    np.testing.assert_array_equal(loss_ax.lines[1].get_ydata(), [1.2, 0.7, 0.6])
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [1, 2, 3])


def test_learning_curves_reads_a_keras_history_and_puts_the_learning_rate_on_a_log_scale():
    class History:  # what keras.callbacks.History offers: the dict in .history
        history = {"loss": [1.0, 0.5], "learning_rate": [1e-3, 1e-4]}

    figure = viz.learning_curves(History())
    assert [ax.get_title() for ax in figure.axes] == ["loss", "learning_rate"]
    assert figure.axes[1].get_yscale() == "log" and figure.axes[0].get_yscale() == "linear"


def test_learning_curves_reads_a_history_csv_dataframe():
    frame = pd.DataFrame({"epoch": [0, 1], "loss": [0.9, 0.4], "val_loss": [1.0, 0.8]})
    figure = viz.learning_curves(frame)
    assert len(figure.axes) == 1
    np.testing.assert_array_equal(figure.axes[0].lines[0].get_xdata(), [1, 2])
    with pytest.raises(ValueError, match="lengths"):
        viz.learning_curves({"loss": [1.0, 0.5], "val_loss": [1.0]})


def test_elbow_silhouette_plot_marks_the_chosen_k():
    figure = viz.elbow_silhouette_plot([2, 3, 4], [90.0, 40.0, 35.0], [0.3, 0.6, 0.4], chosen_k=3)
    assert len(figure.axes) == 2
    for ax in figure.axes:
        assert "chosen k = 3" in legend_labels(ax.get_legend())
    with pytest.raises(ValueError, match="chosen_k=7"):
        viz.elbow_silhouette_plot([2, 3], [1.0, 0.5], [0.2, 0.3], chosen_k=7)
    with pytest.raises(ValueError, match="equal lengths"):
        viz.elbow_silhouette_plot([2, 3], [1.0], [0.2, 0.3])


def test_k_distance_plot_sorts_distances_and_shows_eps():
    figure = viz.k_distance_plot([0.5, 0.1, 0.3], eps=0.3, k=4)
    assert len(figure.axes) == 1
    ax = figure.axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [0.1, 0.3, 0.5])
    assert legend_labels(ax.get_legend()) == ["distance to 4-th neighbour", "eps = 0.3"]


def test_embedding_scatter_one_panel_per_colouring_with_legends():
    points = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [3.0, 1.0]])
    figure = viz.embedding_scatter(
        points,
        {"true class": [0, 1, 2, 0], "DBSCAN": [0, 0, -1, 1]},
        label_names={"true class": config.OXFORD_PET_CLASSES.names},
    )
    assert len(figure.axes) == 2
    class_ax, cluster_ax = figure.axes
    assert legend_labels(class_ax.get_legend()) == list(config.OXFORD_PET_CLASSES.names)
    assert legend_labels(cluster_ax.get_legend()) == ["noise", "cluster 0", "cluster 1"]
    pet_points = class_ax.collections[0]
    np.testing.assert_array_equal(pet_points.get_offsets(), [[0.0, 0.0], [3.0, 1.0]])
    np.testing.assert_allclose(pet_points.get_facecolor()[0][:3], CLASS_COLORS[config.PET] / 255.0)
    noise_points = cluster_ax.collections[0]
    np.testing.assert_array_equal(noise_points.get_offsets(), [[2.0, 0.0]])
    np.testing.assert_allclose(noise_points.get_facecolor()[0][:3], viz.NOISE_COLOR / 255.0)
    breeds = viz.embedding_scatter(points, {"breed": [0, 1, 1, 0]}, label_names={"breed": {0: "Abyssinian"}})
    assert legend_labels(breeds.axes[0].get_legend()) == ["Abyssinian", "cluster 1"]
    with pytest.raises(ValueError, match="3 labels but points_2d has 4"):
        viz.embedding_scatter(points, {"bad": [0, 1, 2]})


def test_class_balance_bar_accepts_dicts_and_arrays():
    by_name = viz.class_balance_bar({"pet": 30, "background": 60, "border": 10})
    by_array = viz.class_balance_bar(np.array([30, 60, 10]))
    for figure in (by_name, by_array):
        ax = figure.axes[0]
        assert len(figure.axes) == 1
        assert [patch.get_height() for patch in ax.patches] == [30.0, 60.0, 10.0]
        assert legend_labels(ax.get_legend()) == list(config.OXFORD_PET_CLASSES.names)
        assert [text.get_text() for text in ax.texts] == ["30.0%", "60.0%", "10.0%"]
        for patch, color in zip(ax.patches, CLASS_COLORS, strict=True):
            np.testing.assert_allclose(patch.get_facecolor()[:3], color / 255.0)
    by_index = viz.class_balance_bar({2: 5, 0: 15})
    assert [patch.get_height() for patch in by_index.axes[0].patches] == [15.0, 0.0, 5.0]
    with pytest.raises(ValueError, match="cat"):
        viz.class_balance_bar({"cat": 3})


def test_size_histogram_has_two_panels_with_legends():
    figure = viz.size_histogram([500, 375, 400], [375, 500, 400])
    assert len(figure.axes) == 2
    assert all(ax.get_legend() is not None for ax in figure.axes)
    scatter = figure.axes[1].collections[0]
    np.testing.assert_array_equal(scatter.get_offsets(), [[500, 375], [375, 500], [400, 400]])
    with pytest.raises(ValueError, match="one pair per image"):
        viz.size_histogram([1, 2], [1])


# --------------------------------------------------------------------------------------------- saving


def test_save_figure_writes_a_readable_png_and_leaves_no_temporary_file(tmp_path):
    figure, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    target = tmp_path / "new" / "folder" / "plot.png"
    assert viz.save_figure(figure, target, dpi=50) == target
    with Image.open(target) as saved:
        assert saved.format == "PNG"
        assert saved.size[0] > 0 and saved.size[1] > 0
    assert [path.name for path in target.parent.iterdir()] == ["plot.png"]


def test_save_figure_writes_jpeg_and_rejects_other_extensions(tmp_path):
    figure, ax = plt.subplots(figsize=(2, 2))
    viz.save_figure(figure, tmp_path / "plot.jpg", dpi=50)
    with Image.open(tmp_path / "plot.jpg") as saved:
        assert saved.format == "JPEG"
    with pytest.raises(ValueError, match=".gif"):
        viz.save_figure(figure, tmp_path / "plot.gif")


def test_save_image_keeps_rgb_order_and_values(tmp_path):
    picture = np.zeros((4, 5, 3), dtype=np.uint8)
    picture[..., 0] = 255  # pure red
    picture[0, 0] = (10, 20, 30)
    target = viz.save_image(tmp_path / "sub" / "red.png", picture)
    with Image.open(target) as saved:
        np.testing.assert_array_equal(np.asarray(saved.convert("RGB")), picture)
    # OpenCV reads BGR: the red channel is last.
    np.testing.assert_array_equal(cv2.imread(str(target))[0, 1], (0, 0, 255))
    assert [path.name for path in target.parent.iterdir()] == ["red.png"]
    grey = viz.save_image(tmp_path / "grey.png", np.full((3, 3), 0.5, dtype=np.float32))
    with Image.open(grey) as saved:
        assert saved.mode == "L"  # one channel, as label maps are saved
        assert np.asarray(saved)[1, 1] == 128


def test_save_image_writes_jpeg_and_rejects_other_extensions(tmp_path):
    picture = np.full((8, 8, 3), (200, 40, 10), dtype=np.uint8)
    target = viz.save_image(tmp_path / "photo.JPG", picture)
    with Image.open(target) as saved:
        assert saved.format == "JPEG"
        # JPEG is lossy: a flat colour comes back within a few levels.
        np.testing.assert_allclose(np.asarray(saved)[4, 4], (200, 40, 10), atol=4)
    with pytest.raises(ValueError, match=r"\.png, \.jpg or \.jpeg"):
        viz.save_image(tmp_path / "photo.bmp", picture)
    assert not (tmp_path / "photo.bmp").exists()


def test_explained_variance_plot_shows_bars_and_running_total() -> None:
    figure = viz.explained_variance_plot([0.5, 0.3, 0.1])
    (ax,) = figure.axes
    np.testing.assert_allclose([patch.get_height() for patch in ax.patches], [0.5, 0.3, 0.1])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.5, 0.8, 0.9])
    assert ax.get_legend() is not None
    plt.close(figure)
    with pytest.raises(ValueError, match="empty"):
        viz.explained_variance_plot([])
