"""Train a profile's U-Net from scratch with notebook 03, and print its test scores as one JSON line.

    python bench/quality.py --profile quick
    python bench/quality.py --profile quick --seed 1
    python bench/quality.py --profile full --artifacts outputs/full-run   # run again to resume a killed run
    python bench/quality.py --profile quick --loss ce --low-res-epochs 0 --epochs 40

It runs ``notebooks/03_training.ipynb`` itself, with papermill and the parameters given, so the
figures are those of the recipe a learner runs, never of a copy of it. The artifacts go to a
temporary folder (deleted afterwards) unless ``--artifacts`` names one, in which a killed run
resumes when the same command runs again. The executed notebook is saved beside them.

The line holds the test metrics (``unet_clustering.metrics`` defines them), those without the flip
averaging, the best validation epoch and score, the training time and images/s, and the recipe.
Progress (one line per epoch) goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import papermill

from unet_clustering import config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_training.ipynb"


def parameters(arguments: argparse.Namespace) -> dict:
    chosen = {
        "PROFILE_NAME": arguments.profile,
        "SEED": arguments.seed,
        "EPOCHS": arguments.epochs,
        "LOW_RES_EPOCHS": arguments.low_res_epochs,
        "LOSS": arguments.loss,
        "ENCODER": arguments.encoder,
    }
    return {name: value for name, value in chosen.items() if value is not None}


def execute(notebook: Path, artifacts: Path, chosen: dict) -> None:
    """Run ``notebook`` with papermill and the parameters ``chosen``, writing its artifacts and the executed
    copy into ``artifacts``; what its cells print streams to stderr."""
    os.environ[config.ARTIFACTS_ENV] = str(artifacts)
    papermill.execute_notebook(
        str(notebook),
        str(artifacts / notebook.name),
        parameters=chosen,
        kernel_name="python3",
        progress_bar=False,
        log_output=True,
        stdout_file=sys.stderr,
        cwd=str(notebook.parent),
    )


def train(arguments: argparse.Namespace, artifacts: Path) -> dict:
    """Run notebook 03 with the arguments' parameters into ``artifacts``; return its metrics report."""
    execute(NOTEBOOK, artifacts, parameters(arguments))
    return config.read_json(artifacts / config.ARTIFACTS["metrics"][0])


def summary(report: dict) -> dict:
    per_class = ("iou_per_class", "dice_per_class")
    keys = ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy", *per_class, "num_images")
    return {
        "test": {key: report["test_metrics"][key] for key in keys},
        "test_without_flip": {key: report["without_flip"][key] for key in keys[:-1]},
        "best_epoch": report["best_epoch"],
        "best_validation_fg_iou": report["best_validation_fg_iou"],
        "train_s": report["train_s"],
        "train_images_per_s": report["train_images_per_s"],
        "resumed": report["resumed"],
        "recipe": report["recipe"],
        "counts": report["counts"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(config.PROFILES), default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs at full size (default: the budget's)"
    )
    parser.add_argument("--low-res-epochs", type=int, default=None, help="0 trains at full size only")
    parser.add_argument("--loss", choices=("ce", "dice", "ce+dice"), default=None)
    parser.add_argument("--encoder", choices=("plain", "mobilenetv2"), default=None)
    parser.add_argument("--artifacts", type=Path, default=None, help="keep the run here (resumable)")
    arguments = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        artifacts = arguments.artifacts or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        artifacts.mkdir(parents=True, exist_ok=True)
        try:
            report = train(arguments, artifacts)
        except papermill.PapermillExecutionError as error:
            print(f"error: notebook 03 failed: {error.ename}: {error.evalue}", file=sys.stderr)
            return 1
    print(json.dumps(summary(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
