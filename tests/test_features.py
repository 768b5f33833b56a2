"""Tests for unet_clustering.features: extractor, hypercolumns, sampling, reducer, saving, pooling.

A tiny functional model that follows the U-Net layer naming contract (enc1, enc2, bottleneck,
dec2, dec1, logits) stands in for the real U-Net, so these tests do not depend on unet.py and
run in seconds. Each layer has a different channel count so that a mix-up of layers shows.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import keras
import numpy as np
import pytest

from unet_clustering import clustering, config, features

IMAGE_SIZE = 16
#: Channels of the tiny model's layers; all different on purpose.
CHANNELS = {"enc1": 3, "enc2": 4, "bottleneck": 8, "dec2": 6, "dec1": 5}


def build_tiny_unet(image_size: int = IMAGE_SIZE) -> keras.Model:
    layers = keras.layers
    inputs = keras.Input((image_size, image_size, 3), name="image")
    enc1 = layers.Conv2D(CHANNELS["enc1"], 3, padding="same", activation="relu", name="enc1")(inputs)
    enc2 = layers.Conv2D(CHANNELS["enc2"], 3, padding="same", activation="relu", name="enc2")(
        layers.MaxPooling2D(name="pool1")(enc1)
    )
    bottleneck = layers.Conv2D(
        CHANNELS["bottleneck"], 3, padding="same", activation="relu", name="bottleneck"
    )(layers.MaxPooling2D(name="pool2")(enc2))
    up2 = layers.UpSampling2D(name="up2")(bottleneck)
    dec2 = layers.Conv2D(CHANNELS["dec2"], 3, padding="same", activation="relu", name="dec2")(
        layers.Concatenate(name="concat2")([up2, enc2])
    )
    up1 = layers.UpSampling2D(name="up1")(dec2)
    dec1 = layers.Conv2D(CHANNELS["dec1"], 3, padding="same", activation="relu", name="dec1")(
        layers.Concatenate(name="concat1")([up1, enc1])
    )
    logits = layers.Conv2D(config.NUM_CLASSES, 1, name="logits")(dec1)
    return keras.Model(inputs, logits, name="tiny_unet")


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_tiny_unet()


@pytest.fixture(scope="module")
def extractor(model: keras.Model) -> keras.Model:
    return features.feature_extractor(model, features.DEFAULT_LAYERS)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).random((5, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def striped_masks(num_images: int, rows_per_class: tuple[int, int, int]) -> np.ndarray:
    """Masks whose first rows are pet, the next background, the last border (per ``rows_per_class``)."""
    row_classes = np.repeat(np.arange(config.NUM_CLASSES), rows_per_class)
    assert row_classes.size == IMAGE_SIZE
    mask = np.repeat(row_classes[:, None], IMAGE_SIZE, axis=1)
    return np.repeat(mask[None], num_images, axis=0).astype(np.int32)


TOTAL_CHANNELS = sum(CHANNELS[name] for name in features.DEFAULT_LAYERS)

# ---------------------------------------------------------------------------- the extractor


def test_default_layers_follow_the_naming_contract():
    assert features.DEFAULT_LAYERS == ("bottleneck", "dec2", "dec1")


def test_extractor_returns_each_layer_at_its_resolution(extractor, images):
    maps = features.extract_feature_maps(extractor, images, batch_size=2)
    assert [feature_map.shape for feature_map in maps] == [
        (5, IMAGE_SIZE // 4, IMAGE_SIZE // 4, CHANNELS["bottleneck"]),
        (5, IMAGE_SIZE // 2, IMAGE_SIZE // 2, CHANNELS["dec2"]),
        (5, IMAGE_SIZE, IMAGE_SIZE, CHANNELS["dec1"]),
    ]
    assert all(feature_map.dtype == np.float32 for feature_map in maps)
    assert features.extractor_layer_names(extractor) == features.DEFAULT_LAYERS


def test_extracted_maps_equal_the_layers_of_the_model(model, extractor, images):
    # Independent path: one Keras model per layer, on all images at once.
    maps = features.extract_feature_maps(extractor, images, batch_size=3)
    for name, feature_map in zip(features.DEFAULT_LAYERS, maps, strict=True):
        single = keras.Model(model.input, model.get_layer(name).output)
        expected = keras.ops.convert_to_numpy(single(images, training=False))
        np.testing.assert_allclose(feature_map, expected, rtol=1e-5, atol=1e-6)


def test_single_layer_extractor_still_gives_a_list(model, images):
    extractor = features.feature_extractor(model, "dec1")
    maps = features.extract_feature_maps(extractor, images[:2])
    assert len(maps) == 1 and maps[0].shape == (2, IMAGE_SIZE, IMAGE_SIZE, CHANNELS["dec1"])


def test_unknown_layer_name_lists_the_available_layers(model):
    with pytest.raises(ValueError) as caught:
        features.feature_extractor(model, ["bottleneck", "decoder_1"])
    message = str(caught.value)
    assert "decoder_1" in message
    for name in ("enc1", "bottleneck", "dec2", "dec1", "logits"):
        assert name in message


def test_empty_and_repeated_layer_names_are_refused(model):
    with pytest.raises(ValueError, match="empty"):
        features.feature_extractor(model, [])
    with pytest.raises(ValueError, match="repeats"):
        features.feature_extractor(model, ["dec1", "dec1"])


def test_extract_refuses_a_single_unbatched_image(extractor, images):
    with pytest.raises(ValueError, match="images must have shape"):
        features.extract_feature_maps(extractor, images[0])
    with pytest.raises(ValueError, match="batch_size"):
        features.extract_feature_maps(extractor, images, batch_size=0)


# ---------------------------------------------------------------------------- upsampling


def test_upsample_nearest_repeats_each_cell():
    feature_map = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    upsampled = features.upsample_to(feature_map, 4, interpolation="nearest")
    expected = np.repeat(np.repeat(feature_map, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(upsampled, expected)


def test_upsample_bilinear_uses_half_pixel_centres():
    # A row [0, 2] doubled: output pixel centres fall at input positions -0.25, 0.25, 0.75, 1.25,
    # clamped to [0, 1], so the values are 0, 0.5, 1.5, 2.
    feature_map = np.array([[[0.0], [2.0]], [[0.0], [2.0]]], dtype=np.float32)
    upsampled = features.upsample_to(feature_map[None], (4, 4))
    assert upsampled.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(upsampled[0, 0, :, 0], [0.0, 0.5, 1.5, 2.0], atol=1e-6)


def test_upsample_leaves_a_map_already_at_size_alone_and_checks_arguments():
    feature_map = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(features.upsample_to(feature_map, (4, 4)), feature_map)
    with pytest.raises(ValueError, match="interpolation"):
        features.upsample_to(feature_map, 8, interpolation="cubic")
    with pytest.raises(ValueError, match="feature_map"):
        features.upsample_to(feature_map[..., 0], 8)


# ---------------------------------------------------------------------------- hypercolumns


def test_hypercolumn_channels_are_the_sum_of_layer_channels(extractor, images):
    columns = features.hypercolumns(extractor, images, batch_size=2)
    assert columns.shape == (5, IMAGE_SIZE, IMAGE_SIZE, TOTAL_CHANNELS)
    maps = features.extract_feature_maps(extractor, images)
    # The channel blocks are the layers in order, each resized to the image size.
    start = 0
    for feature_map in maps:
        stop = start + feature_map.shape[-1]
        np.testing.assert_allclose(
            columns[..., start:stop], features.upsample_to(feature_map, IMAGE_SIZE), rtol=1e-5, atol=1e-6
        )
        start = stop
    # dec1 is already at full resolution: copied exactly.
    np.testing.assert_array_equal(columns[..., -CHANNELS["dec1"] :], maps[-1])


def test_hypercolumns_at_another_size(extractor, images):
    columns = features.hypercolumns(extractor, images[:2], image_size=8)
    assert columns.shape == (2, 8, 8, TOTAL_CHANNELS)


def test_image_pixel_features_are_row_major_hypercolumns(extractor, images):
    rows = features.image_pixel_features(extractor, images[3])
    assert rows.shape == (IMAGE_SIZE * IMAGE_SIZE, TOTAL_CHANNELS)
    columns = features.hypercolumns(extractor, images[3:4])
    np.testing.assert_allclose(rows[IMAGE_SIZE * 2 + 5], columns[0, 2, 5], rtol=1e-6)
    np.testing.assert_allclose(rows, columns.reshape(-1, TOTAL_CHANNELS), rtol=1e-6)


# ---------------------------------------------------------------------------- sampling


def test_balanced_sampling_takes_equal_counts_per_class(extractor, images):
    masks = striped_masks(5, (6, 6, 4))  # 96, 96 and 64 pixels: all above the share of 10
    sample = features.sample_pixel_features(extractor, images, masks, pixels_per_image=30, seed=0)
    assert sample.features.shape == (150, TOTAL_CHANNELS)
    assert sample.features.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(sample.image_index), [30] * 5)
    np.testing.assert_array_equal(sample.class_counts, [50, 50, 50])
    for image in range(5):
        per_class = np.bincount(sample.labels[sample.image_index == image], minlength=3)
        np.testing.assert_array_equal(per_class, [10, 10, 10])
    assert sample.class_counts_by_name() == {"pet": 50, "background": 50, "border": 50}


def test_balanced_sampling_gives_a_rare_class_all_it_has(extractor, images):
    masks = striped_masks(5, (8, 8, 0))
    masks[:, 0, :4] = config.BORDER  # only 4 border pixels per image
    sample = features.sample_pixel_features(extractor, images, masks, pixels_per_image=30, seed=0)
    # The border's share of 10 is cut to its 4 pixels; the other 26 are split 13 / 13.
    for image in range(5):
        per_class = np.bincount(sample.labels[sample.image_index == image], minlength=3)
        np.testing.assert_array_equal(per_class, [13, 13, 4])


def test_proportional_sampling_follows_each_image_class_areas(extractor, images):
    masks = striped_masks(5, (8, 6, 2))  # 128, 96 and 32 of 256 pixels
    sample = features.sample_pixel_features(
        extractor, images, masks, pixels_per_image=32, seed=0, strategy="proportional"
    )
    for image in range(5):
        per_class = np.bincount(sample.labels[sample.image_index == image], minlength=3)
        np.testing.assert_array_equal(per_class, [16, 12, 4])


def test_sampled_rows_are_the_hypercolumns_of_the_sampled_pixels(extractor, images):
    masks = striped_masks(5, (5, 7, 4))[..., None]  # (N, H, W, 1) is accepted too
    sample = features.sample_pixel_features(
        extractor, images, masks, pixels_per_image=20, seed=3, batch_size=2
    )
    columns = features.hypercolumns(extractor, images).reshape(5, -1, TOTAL_CHANNELS)
    np.testing.assert_allclose(
        sample.features, columns[sample.image_index, sample.pixel_index], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(
        sample.labels, masks[..., 0].reshape(5, -1)[sample.image_index, sample.pixel_index]
    )
    # No pixel is taken twice from the same image.
    pairs = set(zip(sample.image_index.tolist(), sample.pixel_index.tolist(), strict=True))
    assert len(pairs) == 100


def test_sampling_does_not_depend_on_batch_size_and_follows_the_seed(extractor, images):
    masks = striped_masks(5, (5, 7, 4))
    one = features.sample_pixel_features(extractor, images, masks, 12, seed=7, batch_size=1)
    four = features.sample_pixel_features(extractor, images, masks, 12, seed=7, batch_size=4)
    other_seed = features.sample_pixel_features(extractor, images, masks, 12, seed=8, batch_size=4)
    np.testing.assert_array_equal(one.pixel_index, four.pixel_index)
    np.testing.assert_allclose(one.features, four.features, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(one.pixel_index, other_seed.pixel_index)


def test_sampling_more_pixels_than_an_image_has_takes_them_all(extractor, images):
    masks = striped_masks(2, (5, 7, 4))
    sample = features.sample_pixel_features(extractor, images[:2], masks, pixels_per_image=10_000, seed=0)
    assert sample.features.shape[0] == 2 * IMAGE_SIZE * IMAGE_SIZE
    np.testing.assert_array_equal(sample.class_counts, [2 * 5 * 16, 2 * 7 * 16, 2 * 4 * 16])


def test_sampling_refuses_bad_arguments(extractor, images):
    masks = striped_masks(5, (5, 7, 4))
    with pytest.raises(ValueError, match="strategy"):
        features.sample_pixel_features(extractor, images, masks, 10, strategy="stratified")
    with pytest.raises(ValueError, match="pixels_per_image"):
        features.sample_pixel_features(extractor, images, masks, 0)
    bad = masks.copy()
    bad[0, 0, 0] = 3
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\]"):
        features.sample_pixel_features(extractor, images, bad, 10)
    with pytest.raises(ValueError, match="4 masks but images holds 5"):
        features.sample_pixel_features(extractor, images, masks[:4], 10)


# ---------------------------------------------------------------------------- reducer


def test_reducer_clips_components_to_the_data():
    data = np.random.default_rng(0).normal(size=(5, 19))
    reducer = features.make_reducer(n_components=16, seed=0)
    reduced = reducer.fit_transform(data)
    assert reduced.shape == (5, 5)
    report = features.explained_variance_report(reducer)
    assert report["n_components"] == 5 and report["requested_n_components"] == 16
    # The parameter itself is left as given, so the pipeline can be cloned and refitted.
    assert reducer.named_steps["pca"].n_components == 16


def test_reducer_matches_a_scaler_then_pca_by_hand():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    data = rng.normal(size=(200, 10)) * np.arange(1, 11)
    reducer = features.make_reducer(n_components=4, seed=0).fit(data)
    expected = PCA(n_components=4, random_state=0).fit(StandardScaler().fit_transform(data))
    np.testing.assert_allclose(
        np.abs(reducer.transform(data)),
        np.abs(expected.transform(StandardScaler().fit_transform(data))),
        atol=1e-8,
    )
    report = features.explained_variance_report(reducer)
    np.testing.assert_allclose(report["ratio"], expected.explained_variance_ratio_)
    np.testing.assert_allclose(report["total"], expected.explained_variance_ratio_.sum())
    assert report["cumulative"] == sorted(report["cumulative"])


def test_reducer_refuses_bad_component_counts():
    for bad in (0, -3, 1.5, "16"):
        with pytest.raises(ValueError, match="n_components"):
            features.make_reducer(n_components=bad)
    with pytest.raises(ValueError, match="not fitted"):
        features.explained_variance_report(features.make_reducer())


# ---------------------------------------------------------------------------- saving and loading


@pytest.fixture()
def model_files(tmp_path):
    first = tmp_path / "first.keras"
    second = tmp_path / "second.keras"
    first.write_bytes(b"weights of the first model")
    second.write_bytes(b"weights of the second model")
    return first, second


def test_model_fingerprint_is_the_sha256_of_the_file(model_files):
    first, _ = model_files
    assert features.model_fingerprint(first) == hashlib.sha256(b"weights of the first model").hexdigest()
    with pytest.raises(FileNotFoundError):
        features.model_fingerprint(first.parent / "absent.keras")


def test_save_and_load_round_trip(tmp_path, model_files):
    first, _ = model_files
    rng = np.random.default_rng(0)
    stored_features = rng.normal(size=(7, 4)).astype(np.float32)
    labels = np.array([0, 0, 1, 2, 2, 2, 1])
    path = tmp_path / "out" / "features.npz"
    metadata = {"layers": list(features.DEFAULT_LAYERS), "image_size": 16, "model_path": first, "seed": 3}
    features.save_features(path, stored_features, labels, metadata, arrays={"image_index": np.arange(7)})

    arrays, loaded = features.load_features(path, expected_model=first)
    np.testing.assert_array_equal(arrays["features"], stored_features)
    np.testing.assert_array_equal(arrays["labels"], labels)
    np.testing.assert_array_equal(arrays["image_index"], np.arange(7))
    assert loaded["class_counts"] == {"pet": 2, "background": 2, "border": 3}
    assert loaded["model_sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert loaded["model_path"] == str(first)
    assert loaded["layers"] == list(features.DEFAULT_LAYERS)
    assert (loaded["n_samples"], loaded["feature_dim"], loaded["seed"]) == (7, 4, 3)
    # The readable copy says the same, and no temporary file is left behind.
    assert json.loads((path.parent / "features.json").read_text()) == loaded
    assert sorted(item.name for item in path.parent.iterdir()) == ["features.json", "features.npz"]


def test_features_from_another_model_are_refused(tmp_path, model_files):
    first, second = model_files
    path = tmp_path / "features.npz"
    features.save_features(path, np.zeros((2, 3)), np.array([0, 1]), {"model_path": first})
    with pytest.raises(features.StaleFeaturesError, match="04_feature_extraction.ipynb"):
        features.load_features(path, expected_model=second)
    # Re-training rewrites the file: the same path with new contents is stale too.
    first.write_bytes(b"retrained weights")
    with pytest.raises(features.StaleFeaturesError, match="different model file"):
        features.load_features(path, expected_model=first)
    assert issubclass(features.StaleFeaturesError, ValueError)


def test_features_without_a_fingerprint_cannot_be_checked(tmp_path, model_files):
    path = tmp_path / "features.npz"
    features.save_features(path, np.zeros((2, 3)), np.array([0, 1]), {"profile": "smoke"})
    arrays, metadata = features.load_features(path)  # fine without expected_model
    assert metadata["profile"] == "smoke" and arrays["features"].shape == (2, 3)
    with pytest.raises(features.StaleFeaturesError, match="does not record which model"):
        features.load_features(path, expected_model=model_files[0])


def test_missing_features_name_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ARTIFACTS_ENV, str(tmp_path / "artifacts"))
    with pytest.raises(config.MissingArtifactError, match="04_feature_extraction.ipynb"):
        features.load_features()
    with pytest.raises(config.MissingArtifactError, match="04_feature_extraction.ipynb"):
        features.load_features(tmp_path / "elsewhere.npz")


def test_save_refuses_mismatched_or_reserved_arrays(tmp_path):
    with pytest.raises(ValueError, match="labels must have shape"):
        features.save_features(tmp_path / "f.npz", np.zeros((3, 2)), np.zeros(4, int), {})
    with pytest.raises(ValueError, match="reserved"):
        features.save_features(
            tmp_path / "f.npz", np.zeros((3, 2)), np.zeros(3, int), {}, arrays={"labels": []}
        )


# ---------------------------------------------------------------------------- pooling


def test_masked_average_pool_by_hand():
    feature_map = np.array([[[1.0, 10.0], [2.0, 20.0]], [[3.0, 30.0], [4.0, 40.0]]])
    region = np.array([[True, False], [False, True]])
    np.testing.assert_allclose(features.masked_average_pool(feature_map, region), [2.5, 25.0])
    np.testing.assert_allclose(
        features.masked_average_pool(feature_map, np.ones((2, 2, 1), bool)), [2.5, 25.0]
    )
    with pytest.raises(features.EmptyRegionError):
        features.masked_average_pool(feature_map, np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="same H, W"):
        features.masked_average_pool(feature_map, np.ones((3, 2), bool))


def test_pool_segments_falls_back_to_the_whole_image_for_empty_regions(extractor, images):
    masks = striped_masks(5, (5, 7, 4))
    regions = masks == config.PET
    regions[2] = False  # no pet in image 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pooled, num_empty = features.pool_segments(
            extractor, images, regions, layer="bottleneck", batch_size=2
        )
    assert num_empty == 1
    assert any("1 of 5 region masks were empty" in str(warning.message) for warning in caught)
    assert pooled.shape == (5, CHANNELS["bottleneck"])
    bottleneck = features.upsample_to(features.extract_feature_maps(extractor, images)[0], IMAGE_SIZE)
    np.testing.assert_allclose(pooled[0], bottleneck[0][regions[0]].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(
        pooled[2], bottleneck[2].reshape(-1, CHANNELS["bottleneck"]).mean(axis=0), rtol=1e-5
    )
    with pytest.raises(ValueError, match="enc1"):
        features.pool_segments(extractor, images, regions, layer="enc1")


def test_pool_segments_by_layer_matches_one_layer_at_a_time(extractor, images):
    regions = striped_masks(5, (5, 7, 4)) == config.PET
    names = features.extractor_layer_names(extractor)
    pooled, num_empty = features.pool_segments_by_layer(extractor, images, regions, batch_size=2)
    assert num_empty == 0
    assert list(pooled) == list(names)
    for layer in names:
        alone, _ = features.pool_segments(extractor, images, regions, layer=layer, batch_size=3)
        np.testing.assert_allclose(pooled[layer], alone, rtol=1e-6)
    with pytest.raises(ValueError, match="enc1"):
        features.pool_segments_by_layer(extractor, images, regions, layers=["bottleneck", "enc1"])
    with pytest.raises(ValueError, match="empty"):
        features.pool_segments_by_layer(extractor, images, regions, layers=[])
    with pytest.raises(ValueError, match="N=5"):
        features.pool_segments_by_layer(extractor, images, regions[:3])


def test_masked_pool_mean_and_std_by_hand():
    feature_map = np.array([[[1.0, 10.0], [2.0, 20.0]], [[3.0, 30.0], [5.0, 40.0]]])
    region = np.array([[True, False], [False, True]])
    # Region values: channel 0 {1, 5} (mean 3, std 2), channel 1 {10, 40} (mean 25, std 15).
    np.testing.assert_allclose(features.masked_pool(feature_map, region, ("mean", "std")), [3, 25, 2, 15])
    np.testing.assert_allclose(features.masked_pool(feature_map, region, ("std", "mean")), [2, 15, 3, 25])
    np.testing.assert_allclose(features.masked_pool(feature_map, region, "mean"), [3, 25])
    np.testing.assert_allclose(features.masked_pool(feature_map, region[..., None], "std"), [2, 15])
    # A one-pixel region has no spread, not a NaN.
    one = np.zeros((2, 2), bool)
    one[1, 0] = True
    np.testing.assert_array_equal(features.masked_pool(feature_map, one, ("mean", "std")), [3, 30, 0, 0])
    with pytest.raises(features.EmptyRegionError):
        features.masked_pool(feature_map, np.zeros((2, 2), bool), ("mean", "std"))


@pytest.mark.parametrize("statistics", [(), ("mean", "mean"), ("median",), "var"])
def test_masked_pool_refuses_unknown_or_repeated_statistics(statistics):
    with pytest.raises(ValueError, match="statistics"):
        features.masked_pool(np.ones((2, 2, 1)), np.ones((2, 2), bool), statistics)


def test_check_statistics_accepts_one_name_or_several():
    assert features.check_statistics("std") == ("std",)
    assert features.check_statistics(["std", "mean"]) == ("std", "mean")


def test_pooling_with_std_appends_each_channel_spread(extractor, images):
    regions = striped_masks(5, (5, 7, 4)) == config.PET
    regions[1] = False  # the whole-image fallback must give the whole image's spread too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pooled, num_empty = features.pool_segments_by_layer(
            extractor, images, regions, batch_size=2, statistics=("mean", "std")
        )
        means, _ = features.pool_segments_by_layer(extractor, images, regions, batch_size=2)
    assert num_empty == 1
    maps = features.extract_feature_maps(extractor, images)
    for layer, feature_map in zip(features.extractor_layer_names(extractor), maps, strict=True):
        channels = CHANNELS[layer]
        assert pooled[layer].shape == (5, 2 * channels)
        np.testing.assert_allclose(pooled[layer][:, :channels], means[layer], rtol=1e-6)
        upsampled = features.upsample_to(feature_map, IMAGE_SIZE)
        np.testing.assert_allclose(
            pooled[layer][0, channels:], upsampled[0][regions[0]].std(axis=0), rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(
            pooled[layer][1, channels:], upsampled[1].reshape(-1, channels).std(axis=0), rtol=1e-4, atol=1e-6
        )
    alone, _ = features.pool_segments(extractor, images[:1], regions[:1], layer="dec1", statistics="std")
    np.testing.assert_allclose(alone[0], pooled["dec1"][0, CHANNELS["dec1"] :], rtol=1e-6)


def test_inner_encoder_stages_drop_the_first_stage_and_the_bottleneck():
    assert features.inner_encoder_stages(["enc1", "enc2", "enc3", "enc4", "bottleneck"]) == [
        "enc2",
        "enc3",
        "enc4",
    ]
    assert features.inner_encoder_stages(("enc1", "bottleneck")) == []


def test_segment_region_selects_the_predicted_classes():
    masks = striped_masks(2, (5, 7, 4))
    pet = features.segment_region(masks, "pet")
    assert pet.dtype == bool and pet.shape == masks.shape
    np.testing.assert_array_equal(pet, masks == config.PET)
    np.testing.assert_array_equal(
        features.segment_region(masks[..., None], "pet+border"), masks != config.BACKGROUND
    )
    with pytest.raises(ValueError, match="pet\\+border"):
        features.segment_region(masks, "background")
    with pytest.raises(ValueError, match="N, H, W"):
        features.segment_region(masks[0], "pet")


def test_segment_representations_hold_the_baseline_each_layer_and_the_stages_joined(model, images):
    extractor = features.feature_extractor(model, ["enc1", "enc2", "bottleneck", "dec1"])
    regions = striped_masks(5, (5, 7, 4)) == config.PET
    stages = ["enc1", "enc2", "bottleneck"]
    representations, num_empty = features.segment_representations(
        extractor, images, regions, stages, statistics=("mean", "std")
    )
    assert num_empty == 0
    assert list(representations) == [
        features.COLOUR_BASELINE,
        "enc1",
        "enc2",
        "bottleneck",
        "dec1",
        features.ENCODER_REPRESENTATION,
        features.INNER_ENCODER_REPRESENTATION,
        "encoder + colour",
        "inner encoder + colour",
    ]
    assert representations[features.COLOUR_BASELINE].shape == (5, 6)
    for layer in ("enc1", "dec1"):
        assert representations[layer].shape == (5, 2 * CHANNELS[layer])
    pooled, _ = features.pool_segments_by_layer(extractor, images, regions, statistics=("mean", "std"))
    np.testing.assert_allclose(
        representations["encoder"], features.combine_blocks([pooled[stage] for stage in stages]), atol=1e-6
    )
    # The inner stages leave out enc1 and the bottleneck: here only enc2, standardised.
    np.testing.assert_allclose(
        representations["inner encoder"], features.combine_blocks([pooled["enc2"]]), atol=1e-6
    )
    means, _ = features.segment_representations(extractor, images, regions, stages)
    assert means["encoder"].shape == (5, sum(CHANNELS[stage] for stage in stages))
    spreads, _ = features.segment_representations(extractor, images, regions, stages, statistics="std")
    np.testing.assert_allclose(
        spreads["enc2"], features.combine_blocks([pooled["enc2"][:, CHANNELS["enc2"] :]]), atol=1e-6
    )
    colour = clustering.region_colour_features(images, regions)
    np.testing.assert_allclose(
        representations["inner encoder + colour"],
        features.combine_blocks([pooled["enc2"], colour]),
        atol=1e-6,
    )
    # With no stage between the first and the bottleneck, there is no inner representation.
    shallow, _ = features.segment_representations(extractor, images, regions, ["enc1", "bottleneck"])
    assert "inner encoder" not in shallow and "inner encoder + colour" not in shallow
    assert "encoder + colour" in shallow
    with pytest.raises(ValueError, match="encoder_stages"):
        features.segment_representations(extractor, images, regions, ["enc1", "dec2"])
    with pytest.raises(ValueError, match="encoder_stages"):
        features.segment_representations(extractor, images, regions, [])


def test_combine_blocks_gives_each_block_the_same_weight():
    rng = np.random.default_rng(0)
    narrow = rng.normal(5.0, 3.0, size=(50, 2))
    wide = rng.normal(-1.0, 100.0, size=(50, 200))
    combined = features.combine_blocks({"narrow": narrow, "wide": wide})
    assert combined.shape == (50, 202) and combined.dtype == np.float32
    np.testing.assert_allclose(combined.mean(axis=0), 0.0, atol=1e-5)
    # Standardised columns divided by sqrt(width): each block's mean squared norm is exactly 1.
    for block in (combined[:, :2], combined[:, 2:]):
        np.testing.assert_allclose((block**2).sum(axis=1).mean(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        combined[:, 0], (narrow[:, 0] - narrow[:, 0].mean()) / narrow[:, 0].std() / np.sqrt(2), rtol=1e-5
    )
    constant = features.combine_blocks([np.ones((4, 3)), np.arange(4.0)[:, None]])
    assert np.isfinite(constant).all() and not constant[:, :3].any()
    # 298 copies of 0.1 have a float spread of about 1e-17; it must not be blown up to +-1.
    tenths = features.combine_blocks([np.full((298, 2), 0.1), rng.normal(size=(298, 1))])
    assert not tenths[:, :2].any()


@pytest.mark.parametrize(
    "blocks, message",
    [
        ([], "at least one"),
        ([np.ones((3, 2)), np.ones((4, 2))], "same N"),
        ([np.ones(3)], "same N"),
        ([np.ones((0, 2))], "empty"),
        ([np.ones((3, 0))], "empty"),
        ([np.array([[1.0, np.nan], [2.0, 3.0]])], "NaN"),
    ],
)
def test_combine_blocks_rejects_bad_blocks(blocks, message):
    with pytest.raises(ValueError, match=message):
        features.combine_blocks(blocks)


# ---------------------------------------------------------------------------- the real U-Net


def test_default_layers_exist_in_the_project_unet():
    unet = pytest.importorskip("unet_clustering.unet")
    model = unet.build_unet(image_size=32, num_classes=3, base_filters=4, depth=2)
    extractor = features.feature_extractor(model)
    expected_channels = sum(model.get_layer(name).output.shape[-1] for name in features.DEFAULT_LAYERS)
    columns = features.hypercolumns(extractor, np.zeros((1, 32, 32, 3), np.float32))
    assert columns.shape == (1, 32, 32, expected_channels)
