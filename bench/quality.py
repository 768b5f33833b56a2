"""Train the profile's U-Net from scratch and print its test metrics as one JSON line.

    python bench/quality.py --profile quick
    python bench/quality.py --profile full --epochs 400
    python bench/quality.py --seed 1 --save-model /tmp/unet-seed1.keras   # keep the model, e.g. for bench/segments.py
    python bench/quality.py --profile full --run-dir outputs/full-run   # run again to resume a killed run
    python bench/quality.py --max-train-examples 150 --score-held-out --augment strong   # compare recipes
    python bench/quality.py --low-res-epochs 0 --epochs 40 --learning-rate 2e-3   # quick without its 64 px phase
    KERAS_BACKEND=jax python bench/quality.py --profile full \
        --npz .npz/pets-128.npz --low-res-npz .npz/pets-64.npz   # no TensorFlow (the GPU machine)

Needs the dataset (tfds download, or $OXFORD_PETS_DIR), or ``--npz`` files written by
``bench/make_npz.py``: then neither tfds nor TensorFlow is imported, and ``arrays.Batches``
augments with the same random transforms as the tfds pipelines. Metrics are computed on the
whole ``test`` split (298 images in the shared sample) at the profile's image size; see
``unet_clustering.metrics`` for the definitions.

A profile with a low-resolution phase (``quick``: 80 epochs at 64 px before 20 at 128 px) trains
it first (``training.fit_low_res``). ``train_s`` is the time of both phases, ``low_res_train_s``
that of the first; ``epochs``, ``best_epoch`` and ``images_per_s`` are those of the full-size phase.

With ``--run-dir``, a run that resumes says ``"resumed": true``; its ``train_s`` and
``images_per_s`` then cover only the epochs this call trained, while ``epochs`` counts them all.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras

from unet_clustering import arrays, config, metrics, training


@dataclasses.dataclass
class Source:
    """One image size of the data: batches for ``fit`` and data for ``metrics.evaluate``."""

    train: Iterable
    validation: Iterable
    test: Any
    counts: dict[str, int]
    kind: str
    #: Trainval images after the first ``max_train_examples`` (``--score-held-out``), else None.
    held_out: Any = None


def tfds_source(
    profile: config.Profile, seed: int | None, augment: str, image_size: int, held_out: bool
) -> Source:
    """The project's tf.data pipelines (``data.make_datasets``) at ``image_size``."""
    from unet_clustering import data  # imports TensorFlow: only on this path

    datasets = data.make_datasets(
        profile, seed=seed, image_size=image_size, augment=config.AUGMENTATIONS[augment]
    )
    unseen = None
    if held_out:
        (trainval,), _, _ = data.load(["train"])
        unseen = data.make_pipeline(trainval.skip(profile.max_train_examples), image_size, profile.batch_size)
    return Source(
        datasets.train, datasets.validation, datasets.test, datasets.counts, datasets.source.kind, unseen
    )


def npz_source(
    path: Path, profile: config.Profile, seed: int | None, augment: str, image_size: int, held_out: bool
) -> Source:
    """Arrays from ``bench/make_npz.py`` (``arrays.make_splits``), without TensorFlow."""
    splits = arrays.make_splits(
        path,
        config.with_overrides(profile, image_size=image_size),
        config.get_seed(seed),
        augment=config.AUGMENTATIONS[augment],
    )
    if held_out and splits.held_out is None:
        raise ValueError(
            f"--score-held-out: {path} has no trainval image after the first {profile.max_train_examples}."
        )
    return Source(
        splits.train,
        splits.validation,
        (splits.test_images, splits.test_masks),
        splits.counts,
        f"npz {path}",
        splits.held_out,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile", default=None, help="smoke, quick or full (default: $UNET_PROFILE or quick)"
    )
    parser.add_argument("--epochs", type=int, help="override the profile's epochs (at full size)")
    parser.add_argument(
        "--low-res-epochs",
        type=int,
        help="override the profile's epochs at low resolution before the full-size ones (0: none)",
    )
    parser.add_argument("--low-res-size", type=int, help="override the profile's low-resolution image size")
    parser.add_argument(
        "--low-res-learning-rate", type=float, help="override the low-resolution phase's peak learning rate"
    )
    parser.add_argument("--base-filters", type=int, help="override the profile's base filters")
    parser.add_argument("--batch-size", type=int, help="override the profile's batch size")
    parser.add_argument("--learning-rate", type=float, help="override the profile's peak learning rate")
    parser.add_argument("--loss", choices=metrics.LOSS_KINDS, help="override the profile's loss")
    parser.add_argument("--schedule", choices=training.SCHEDULES, help="override the profile's schedule")
    parser.add_argument("--no-tta", action="store_true", help="evaluate without flip test-time augmentation")
    parser.add_argument(
        "--augment",
        choices=sorted(config.AUGMENTATIONS),
        default="standard",
        help="training augmentation strength (config.AUGMENTATIONS; default: standard, as in every profile)",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=training.WEIGHT_DECAY,
        help="AdamW weight decay (default: %(default)s)",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="dropout rate after the bottleneck and after each decoder concatenation (default: 0, none)",
    )
    parser.add_argument("--depth", type=int, help="override the profile's U-Net depth")
    parser.add_argument(
        "--upsampling", choices=("transpose", "bilinear"), default="transpose", help="decoder upsampling"
    )
    parser.add_argument(
        "--max-train-examples",
        type=int,
        help="train on the first N images of the trainval list only (the profile's validation "
        "fraction of them validate)",
    )
    parser.add_argument(
        "--score-held-out",
        action="store_true",
        help="with --max-train-examples N: also score the trainval images after the first N, which the "
        "model never saw (a place to compare recipes without looking at the test split)",
    )
    parser.add_argument(
        "--npz",
        type=Path,
        help="read the data from this file (bench/make_npz.py at the profile's image size) instead of "
        "tfds; TensorFlow is then not needed",
    )
    parser.add_argument(
        "--low-res-npz",
        type=Path,
        help="with --npz and a low-resolution phase: the file at the low-resolution size",
    )
    parser.add_argument("--precision", default="auto", help="Keras dtype policy (auto: mixed on a GPU)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--save-model", default=None, help="also save the best model to this .keras file")
    parser.add_argument(
        "--run-dir",
        default=None,
        help="train in this folder and keep its best model, history.csv and per-epoch backup there; "
        "the same command run again after a kill or a disconnect resumes from the last finished epoch "
        "(default: a temporary folder, deleted afterwards)",
    )
    arguments = parser.parse_args()
    if arguments.max_train_examples is not None and arguments.max_train_examples < 2:
        parser.error("--max-train-examples must be at least 2: one to train on, one to validate")
    if arguments.score_held_out and arguments.max_train_examples is None:
        parser.error("--score-held-out needs --max-train-examples: without it no trainval image is held out")
    if not 0.0 <= arguments.dropout < 1.0:
        parser.error(f"--dropout must be in [0, 1); got {arguments.dropout}")
    if arguments.save_model and not arguments.save_model.endswith(".keras"):
        parser.error(f"--save-model must name a .keras file; got {arguments.save_model!r}")
    if arguments.low_res_epochs is not None and arguments.low_res_epochs < 0:
        parser.error(
            f"--low-res-epochs must be 0 (no low-resolution phase) or more; got {arguments.low_res_epochs}"
        )

    profile = config.with_overrides(
        config.get_profile(arguments.profile),
        epochs=arguments.epochs,
        base_filters=arguments.base_filters,
        batch_size=arguments.batch_size,
        learning_rate=arguments.learning_rate,
        loss=arguments.loss,
        schedule=arguments.schedule,
        depth=arguments.depth,
        tta_flip=False if arguments.no_tta else None,
        max_train_examples=arguments.max_train_examples,
        low_res_epochs=arguments.low_res_epochs,
        low_res_image_size=arguments.low_res_size,
        low_res_learning_rate=arguments.low_res_learning_rate,
    )
    if profile.low_res_epochs:
        if not profile.low_res_image_size:
            parser.error("--low-res-epochs needs --low-res-size: this profile has no low-resolution size")
        if not 0 < profile.low_res_image_size < profile.image_size:
            parser.error(
                f"--low-res-size must be below the image size {profile.image_size}; got {profile.low_res_image_size}"
            )
    for option, path in (("--npz", arguments.npz), ("--low-res-npz", arguments.low_res_npz)):
        if path is not None and not path.is_file():
            parser.error(f"{option} {path}: no such file")
    if arguments.low_res_npz is not None and arguments.npz is None:
        parser.error("--low-res-npz needs --npz: the tfds source resizes for each phase itself")
    if arguments.npz is not None:
        sizes = {"--npz": (arguments.npz, profile.image_size)}
        if profile.low_res_epochs:
            if arguments.low_res_npz is None:
                parser.error(
                    f"with --npz, the {profile.low_res_epochs} epochs at {profile.low_res_image_size} px need "
                    f"--low-res-npz (bench/make_npz.py --image-size {profile.low_res_image_size}), "
                    "or --low-res-epochs 0"
                )
            sizes["--low-res-npz"] = (arguments.low_res_npz, profile.low_res_image_size)
        for option, (path, size) in sizes.items():
            stored = arrays.npz_image_size(path)
            if stored != size:
                parser.error(
                    f"{option} {path} holds {stored} px images but this run needs {size} px; write one "
                    f"with bench/make_npz.py --image-size {size}"
                )
    print(f"profile: {profile}", file=sys.stderr)
    # Progress (tfds, Keras) goes to stderr; stdout carries only the JSON line.
    unet_options = {
        "dropout": arguments.dropout,
        "dropout_in_decoder": arguments.dropout > 0,
        "upsampling": arguments.upsampling,
    }
    with contextlib.redirect_stdout(sys.stderr), contextlib.ExitStack() as stack:
        precision = training.configure_precision(arguments.precision)

        def load(image_size: int, npz: Path | None, held_out: bool = False) -> Source:
            if npz is not None:
                return npz_source(npz, profile, arguments.seed, arguments.augment, image_size, held_out)
            return tfds_source(profile, arguments.seed, arguments.augment, image_size, held_out)

        source = load(profile.image_size, arguments.npz, held_out=arguments.score_held_out)
        model = training.build_for_profile(
            profile,
            source.counts["train"],
            seed=arguments.seed,
            weight_decay=arguments.weight_decay,
            **unet_options,
        )
        low_res_result = None
        if profile.low_res_epochs:
            low_res = load(profile.low_res_image_size, arguments.low_res_npz)
            # Without --run-dir nothing is kept, as with the full-size phase in fit_and_load.
            low_res_dir = arguments.run_dir or stack.enter_context(tempfile.TemporaryDirectory())
            low_res_result = training.fit_low_res(
                model,
                low_res.train,
                low_res.validation,
                profile,
                num_train_examples=low_res.counts["train"],
                run_dir=Path(low_res_dir),
                seed=arguments.seed,
                weight_decay=arguments.weight_decay,
                verbose=2,
                # Backups serve only a --run-dir, which a later call can resume.
                backup=arguments.run_dir is not None,
                **unet_options,
            )
        result, best = training.fit_and_load(
            model,
            source.train,
            source.validation,
            epochs=profile.epochs,
            num_train_examples=source.counts["train"],
            image_size=profile.image_size,
            run_dir=Path(arguments.run_dir) if arguments.run_dir else None,
            seed=arguments.seed,
        )
        evaluate = {"tta_flip": profile.tta_flip, "batch_size": profile.batch_size}
        scores = metrics.evaluate(best, source.test, **evaluate)
        held_out = None
        if arguments.score_held_out:
            held_scores = metrics.evaluate(best, source.held_out, **evaluate)
            held_out = {
                key: held_scores[key]
                for key in ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy", "num_images")
            }
        if arguments.save_model:
            best.save(arguments.save_model)
    line = {
        "profile": profile.name,
        **{
            key: scores[key]
            for key in ("fg_iou", "fg_dice", "pet_dice", "mean_iou", "iou_per_class", "pixel_accuracy")
        },
        "train_s": round(result.train_s + (low_res_result.train_s if low_res_result else 0.0), 1),
        "low_res_train_s": round(low_res_result.train_s, 1) if low_res_result else None,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "images_per_s": round(result.images_per_s, 1),
        "parameters": best.count_params(),
        "image_size": profile.image_size,
        "low_res_epochs": profile.low_res_epochs,
        "low_res_image_size": profile.low_res_image_size if profile.low_res_epochs else None,
        "low_res_learning_rate": profile.low_res().learning_rate if profile.low_res_epochs else None,
        "base_filters": profile.base_filters,
        "batch_size": profile.batch_size,
        "learning_rate": profile.learning_rate,
        "loss": profile.loss,
        "schedule": profile.schedule,
        "tta_flip": profile.tta_flip,
        "augment": arguments.augment,
        "weight_decay": arguments.weight_decay,
        "dropout": arguments.dropout,
        "depth": profile.depth,
        "upsampling": arguments.upsampling,
        "held_out": held_out,
        "train_images": source.counts["train"],
        "validation_images": source.counts["validation"],
        "test_images": scores["num_images"],
        "source": source.kind,
        "backend": keras.backend.backend(),
        "precision": precision,
        "saved_model": arguments.save_model,
        "run_dir": arguments.run_dir,
        "resumed": result.resumed,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
