"""How well each description of whole pets clusters by species and breed: the grid behind 05's defaults.

For every region (``features.SEGMENT_REGIONS``: the predicted pet class alone, or pet + border)
and every set of pooled statistics (the mean, the standard deviation, or both), this pools each
stage of the trained U-Net inside each image's predicted region, builds the representations of
``features.segment_representations`` (the Lab colour baseline, each stage alone, all encoder
stages joined, the inner encoder stages joined, and those two again with the colour block),
clusters them with k-means (k = 2 for species, k = the number of breeds present) and prints one
JSON line per (split, region, statistics, representation, target) with ARI, NMI and purity. ``bench/RESULTS.md`` section 5
holds the figures and the rule that picked notebook 05's defaults from them.

Never choose on the test split: notebook ``05_clustering`` reports it, so choosing there would
tune on the figures it reports. The train split is biased too, because the U-Net was fitted on
those images; ``--skip N`` with a model trained on the first N trainval images only
(``bench/quality.py --max-train-examples N``) scores the images that model never saw.
Clustering is ``clustering.cluster_against``, as in the notebook,
run once for each of ``--seeds`` consecutive seeds from the notebook's; each line gives the
mean and the range over those seeds.

Usage::

    python bench/segments.py                    # train split, the model in artifacts/
    python bench/segments.py --split train --split test
    python bench/segments.py --model half.keras --skip 150   # images 151-300 of trainval only

Needs ``artifacts/unet.keras`` (notebook ``03_training``) and the dataset.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import numpy as np

from unet_clustering import clustering, config, data, features, metrics, training, unet

STATISTICS_CHOICES: dict[str, tuple[str, ...]] = {
    "mean": ("mean",),
    "std": ("std",),
    "mean+std": ("mean", "std"),
}


def score_split(
    model, profile: config.Profile, split: str, seeds: list[int], max_examples: int | None, skip: int = 0
) -> list[dict]:
    limit = None if max_examples is None else skip + max_examples
    arrays = data.split_arrays(split, profile, max_examples=limit)
    arrays = {key: values[skip:] for key, values in arrays.items()}
    images = arrays["image"]
    predicted = metrics.predict_masks(model, images, tta_flip=profile.tta_flip)
    targets = {"species": arrays["species"], "breed": arrays["label"]}
    extractor = features.feature_extractor(model, unet.model_stage_names(model))
    encoder_stages = unet.encoder_stage_names(model)
    rows = []
    for region in features.SEGMENT_REGIONS:
        masks = features.segment_region(predicted, region)
        for statistics_name, statistics in STATISTICS_CHOICES.items():
            representations, num_empty = features.segment_representations(
                extractor, images, masks, encoder_stages, statistics=statistics
            )
            for name, vectors in representations.items():
                for target, truth in targets.items():
                    results = [clustering.cluster_against(vectors, truth, seed=seed) for seed in seeds]
                    if results[0] is None:
                        continue
                    scores = [score for _, score in results]
                    nmi = [score["nmi"] for score in scores]
                    rows.append(
                        {
                            "split": split,
                            "region": region,
                            "statistics": statistics_name,
                            "representation": name,
                            "target": target,
                            "k": scores[0]["k"],
                            "nmi": round(float(np.mean(nmi)), 4),
                            "nmi_min": round(min(nmi), 4),
                            "nmi_max": round(max(nmi), 4),
                            "ari": round(float(np.mean([score["ari"] for score in scores])), 4),
                            "purity": round(float(np.mean([score["purity"] for score in scores])), 4),
                            "images": len(vectors),
                            "empty_regions": num_empty,
                        }
                    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile", default=None, help="smoke, quick or full (default: $UNET_PROFILE or quick)"
    )
    parser.add_argument(
        "--split", action="append", choices=("train", "test"), help="repeat for several (default: train)"
    )
    parser.add_argument("--seeds", type=int, default=5, help="k-means seeds to average over (default: 5)")
    parser.add_argument(
        "--max-examples", type=int, default=None, help="use only the first N images of each split"
    )
    parser.add_argument(
        "--skip",
        type=int,
        default=0,
        help="leave out the first N images of each split, e.g. those a model from "
        "bench/quality.py --max-train-examples N was trained on",
    )
    parser.add_argument("--model", default=None, help="model file (default: artifacts/unet.keras)")
    arguments = parser.parse_args(argv)
    if arguments.seeds < 1:
        parser.error("--seeds must be at least 1")
    if arguments.skip < 0:
        parser.error("--skip must be 0 or more")
    if arguments.max_examples is not None and arguments.max_examples < 4:
        parser.error("--max-examples must be at least 4: k-means needs more pets than clusters")

    profile = config.get_profile(arguments.profile)
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            model_path = arguments.model or config.require_artifact("unet.keras")
            model = training.load_trained_model(model_path, image_size=profile.image_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"segments.py: {error}", file=sys.stderr)
        return 2
    seeds = [config.DEFAULT_SEED + offset for offset in range(arguments.seeds)]
    for split in arguments.split or ["train"]:
        with contextlib.redirect_stdout(sys.stderr):
            rows = score_split(model, profile, split, seeds, arguments.max_examples, arguments.skip)
        for row in rows:
            line = {"profile": profile.name, **row, "skipped": arguments.skip, "model": str(model_path)}
            print(json.dumps(line), flush=True)
    print(f"done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
