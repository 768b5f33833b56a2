"""Time the notebook series at the full dataset's size, on a copy of the sample that repeats its photos.

    python bench/scale.py --source ../shared/data/oxford-iiit-pet-sample            # 3,680 / 3,669 images
    python bench/scale.py --source ../shared/data/oxford-iiit-pet-sample --train 600 --test 600 --notebooks 01

The full dataset cannot be downloaded everywhere, but its size can be copied: this script lists the
sample's photos again and again under new names (``Abyssinian_100_r2``, ...) until the two split
files hold ``--train`` and ``--test`` names, in a temporary folder that it deletes at the end (the
files are symbolic links to the sample's, nothing is copied into the repository). Then it prepares that
copy with ``python -m unet_clustering.data`` and runs the notebooks one by one with
``tools/run_notebooks.py``, under the profile of ``$UNET_PROFILE`` (``quick`` by default).

It prints one JSON line per step: its wall time and the peak resident memory (RSS) of the process tree
that ran it (the notebook's kernel included), from ``getrusage(RUSAGE_CHILDREN)``. Repeated photos say
nothing about quality, so no score is printed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLIT_FILES = {"trainval.txt": "train", "test.txt": "test"}

#: Runs one command and prints the peak RSS of every process it waited for, the command included.
MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def split_lines(source: Path, name: str) -> list[list[str]]:
    lines = (source / "annotations" / name).read_text().splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def link(source: Path, target: Path) -> None:
    if source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source.resolve())


def scaled_copy(source: Path, folder: Path, sizes: dict[str, int]) -> None:
    """Write split files of ``sizes`` names in ``folder``, each a renamed link to a listed photo of the sample."""
    for split_file, split in SPLIT_FILES.items():
        entries, written = split_lines(source, split_file), []
        for number, fields in enumerate(itertools.islice(itertools.cycle(entries), sizes[split])):
            repeat = number // len(entries)
            name = fields[0] if repeat == 0 else f"{fields[0]}_r{repeat}"
            link(source / "images" / f"{fields[0]}.jpg", folder / "images" / f"{name}.jpg")
            link(
                source / "annotations" / "trimaps" / f"{fields[0]}.png",
                folder / "annotations" / "trimaps" / f"{name}.png",
            )
            link(
                source / "annotations" / "xmls" / f"{fields[0]}.xml",
                folder / "annotations" / "xmls" / f"{name}.xml",
            )
            written.append(" ".join([name, *fields[1:]]))
        (folder / "annotations" / split_file).write_text("\n".join(written) + "\n")


def measured(step: str, command: list[str], env: dict[str, str]) -> dict:
    started = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        env=env,
        cwd=ROOT,
        stdout=sys.stderr,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{step} failed:\n{finished.stderr[-3000:]}")
    kilobytes = int(finished.stderr.strip().splitlines()[-1])
    return {"step": step, "seconds": round(seconds, 1), "peak_rss_mb": round(kilobytes / 1024)}


def run_notebook(number: str, env: dict[str, str], output: Path, parameters: tuple[str, ...] = ()) -> dict:
    """Run notebook ``number`` (``"03"``) with ``tools/run_notebooks.py`` and its ``-p NAME VALUE``
    ``parameters``, measured by :func:`measured`."""
    (notebook,) = sorted((ROOT / "notebooks").glob(f"{number}_*.ipynb"))
    runner = [
        sys.executable,
        "tools/run_notebooks.py",
        str(notebook),
        *parameters,
        "--output-dir",
        str(output),
    ]
    return measured(notebook.stem, runner, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", type=Path, required=True, help="a copy of Oxford-IIIT Pet in its own layout"
    )
    parser.add_argument(
        "--train", type=int, default=3680, help="names in trainval.txt (the full dataset's 3,680)"
    )
    parser.add_argument("--test", type=int, default=3669, help="names in test.txt (the full dataset's 3,669)")
    parser.add_argument("--notebooks", nargs="*", default=["01", "02", "03", "04", "05", "06", "07"])
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        scaled_copy(arguments.source, folder / "pets", {"train": arguments.train, "test": arguments.test})
        env = dict(
            os.environ,
            OXFORD_PETS_DIR=str(folder / "pets"),
            UNET_TFDS_DIR=str(folder / "tfds"),
            UNET_ARTIFACTS_DIR=str(folder / "artifacts"),
            UNET_PROFILE=os.environ.get("UNET_PROFILE") or "quick",
        )
        print(
            json.dumps({"train": arguments.train, "test": arguments.test, "profile": env["UNET_PROFILE"]}),
            flush=True,
        )
        steps = [measured("prepare the data", [sys.executable, "-m", "unet_clustering.data"], env)]
        print(json.dumps(steps[-1]), flush=True)
        for number in arguments.notebooks:
            steps.append(run_notebook(number, env, folder / "executed"))
            print(json.dumps(steps[-1]), flush=True)
        notebooks = [step for step in steps if step["step"] != "prepare the data"]
        print(
            json.dumps({"notebooks_minutes": round(sum(step["seconds"] for step in notebooks) / 60, 1)}),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
