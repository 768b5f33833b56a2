"""Run the notebook series on a folder of your own: a black-and-white copy of Oxford-IIIT Pet.

    python bench/binary_masks.py --source ../shared/data/oxford-iiit-pet-sample
    python bench/binary_masks.py --source ../shared/data/oxford-iiit-pet-sample --notebooks 01 02 03
    python bench/binary_masks.py --source ../shared/data/oxford-iiit-pet-sample --folder /tmp/binary --notebooks

It writes the copy that a learner with their own data would have (``unet_clustering.folders``
describes the layout): ``images/`` (symbolic links to the photos), ``masks/`` (PNGs of 0 where the
trimap says background and 255 where it says pet or border, so the masks carry no class names) and
``train.txt`` / ``test.txt`` (the official splits). ``--folder`` keeps the copy there; otherwise it
goes to a temporary folder, deleted at the end. Nothing is copied into the repository.

With ``--train`` and ``--test``, the copy repeats the photos under new names to that size first, as
``bench/scale.py`` does (3,680 and 3,669 in the full dataset), to time a folder as large as the full
dataset; repeated photos say nothing about quality.

Then it runs the notebooks (``--notebooks``, default 01-06; none with an empty list) with
``tools/run_notebooks.py``, setting only ``DATASET_DIR``, under the profile of ``$UNET_PROFILE``
(``quick`` by default), and prints one JSON line per notebook (wall time, peak RSS) and one with the
test scores of ``03_training``: foreground IoU of the binary task, each class's IoU, and the
training speed. The same photos scored with the trimap's three classes are in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import run_notebook, scaled_copy, split_lines  # noqa: E402

#: The trimap's stored value of the background; every other value is foreground.
TRIMAP_BACKGROUND = 2


def binary_copy(source: Path, folder: Path) -> dict[str, int]:
    """Write the black-and-white copy of ``source`` (Oxford-IIIT Pet's layout) into ``folder``."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    counts = {}
    for split_file, split in (("trainval.txt", "train"), ("test.txt", "test")):
        names = []
        for name, *_ in split_lines(source, split_file):
            photo, trimap = (
                source / "images" / f"{name}.jpg",
                source / "annotations" / "trimaps" / f"{name}.png",
            )
            if not (photo.exists() and trimap.exists()):
                continue
            (folder / "images" / photo.name).symlink_to(photo.resolve())
            with Image.open(trimap) as stored:
                foreground = np.asarray(stored) != TRIMAP_BACKGROUND
            Image.fromarray((foreground * 255).astype(np.uint8)).save(folder / "masks" / f"{name}.png")
            names.append(name)
        (folder / f"{split}.txt").write_text("\n".join(names) + "\n")
        counts[split] = len(names)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", type=Path, required=True, help="a copy of Oxford-IIIT Pet in its own layout"
    )
    parser.add_argument("--folder", type=Path, help="where to keep the copy (default: a temporary folder)")
    parser.add_argument("--notebooks", nargs="*", default=["01", "02", "03", "04", "05", "06"])
    parser.add_argument(
        "--train", type=int, help="repeat the photos to this many trainval names (as scale.py)"
    )
    parser.add_argument("--test", type=int, help="and to this many test names (3,669 in the full dataset)")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        source = arguments.source
        if arguments.train or arguments.test:
            sizes = {"train": arguments.train or 3680, "test": arguments.test or 3669}
            scaled_copy(source, work / "scaled", sizes)
            source = work / "scaled"
        folder = arguments.folder or work / "binary"
        counts = binary_copy(source, folder)
        profile = os.environ.get("UNET_PROFILE") or "quick"
        print(json.dumps({"folder": str(folder), **counts, "profile": profile}), flush=True)
        env = dict(os.environ, UNET_ARTIFACTS_DIR=str(work / "artifacts"), UNET_PROFILE=profile)
        steps = []
        for number in arguments.notebooks:
            steps.append(run_notebook(number, env, work / "executed", ("-p", "DATASET_DIR", str(folder))))
            print(json.dumps(steps[-1]), flush=True)
        if steps:
            print(json.dumps({"notebooks_minutes": round(sum(step["seconds"] for step in steps) / 60, 1)}))
        metrics_file = work / "artifacts" / "metrics.json"
        if metrics_file.exists():
            report = json.loads(metrics_file.read_text())
            scores = report["test_metrics"]
            keys = ("fg_iou", "fg_dice", "mean_iou", "pixel_accuracy", "iou_per_class", "num_images")
            summary = {key: scores[key] for key in keys}
            print(json.dumps({**summary, "train_images_per_s": report["train_images_per_s"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
