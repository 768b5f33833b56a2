"""Test foreground IoU against the share of labelled images: labels only, cluster pseudo-labels, self-training.

    python bench/pseudo_labels.py                                  # quick profile, 5 shares x 3 seeds
    python bench/pseudo_labels.py --shares 0.1 --seeds 0,1,2,3,4   # the 10 % point, five seeds
    python bench/pseudo_labels.py --figure outputs/pseudo_labels.png --out outputs/pseudo_labels.jsonl

It runs ``notebooks/07_semi_supervised.ipynb`` itself with papermill, once per share of labelled
images and seed, so the figures are those of the recipe a learner runs. Each run prints one JSON
line (the notebook's ``semi_supervised.json``: the test foreground IoU of the teacher and of the three
students, and the pseudo-labels' coverage and accuracy) and appends it to ``--out``; a run already in
``--out`` (same profile, share and seed) is not run again, so a stopped bench resumes. At the end it
prints a Markdown table of the mean and standard deviation over seeds for each share, and the gain
of each pseudo-labelling method over labels only, paired by seed; ``--figure`` draws the curve.
Progress (the notebook's output) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import papermill

from unet_clustering import config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import execute  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "07_semi_supervised.ipynb"
METHODS = ("labels only", "+ cluster pseudo-labels", "+ self-training")


def floats(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def integers(text: str) -> list[int]:
    return [int(value) for value in text.split(",")]


def run_notebook(profile: str | None, share: float, seed: int, folder: Path) -> dict:
    """One run of notebook 07 in ``folder``; its ``semi_supervised.json``."""
    parameters = {"LABELLED_SHARE": share, "SEED": seed} | ({"PROFILE_NAME": profile} if profile else {})
    execute(NOTEBOOK, folder, parameters)
    return config.read_json(folder / config.ARTIFACTS["semi_supervised"][0])


def summarise(records: list[dict]) -> list[dict]:
    """Per share: mean and standard deviation over seeds of each method, and the gains paired by seed."""
    rows = []
    for share in sorted({record["labelled_share"] for record in records}):
        runs = [record for record in records if record["labelled_share"] == share]
        row = {"share": share, "labelled": runs[0]["labelled_images"], "seeds": len(runs)}
        for method in METHODS:
            values = np.array([run["fg_iou"][method] for run in runs])
            row[method] = (values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0)
            if method != "labels only":
                gains = values - np.array([run["fg_iou"]["labels only"] for run in runs])
                row[f"gain {method}"] = (gains.mean(), gains.std(ddof=1) if len(gains) > 1 else 0.0)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| labelled share (images) | seeds | labels only | + cluster pseudo-labels | + self-training "
        "| gain, clusters | gain, self-training |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = [f"{row[method][0]:.3f} ± {row[method][1]:.3f}" for method in METHODS]
        cells += [
            f"{row[f'gain {method}'][0]:+.3f} ± {row[f'gain {method}'][1]:.3f}" for method in METHODS[1:]
        ]
        lines.append(
            f"| {row['share']:.0%} ({row['labelled']}) | {row['seeds']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def draw(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt  # only when a figure is asked for

    from unet_clustering import visualization

    figure = plt.figure(figsize=(6, 3.6))
    axis = figure.add_subplot()
    shares = [row["share"] for row in rows]
    for method in METHODS:
        means, deviations = (np.array([row[method][part] for row in rows]) for part in (0, 1))
        axis.errorbar(shares, means, yerr=deviations, marker="o", capsize=3, label=method)
    axis.set_xscale("log")
    axis.set_xticks(shares, [f"{share:.0%}" for share in shares])
    axis.set_xlabel("share of training images with labels")
    axis.set_ylabel("test foreground IoU")
    seeds = sorted({row["seeds"] for row in rows})
    axis.set_title(
        f"mean ± sd over {'-'.join(map(str, [seeds[0], seeds[-1]][: len(seeds)]))} seeds per point"
    )
    axis.legend()
    figure.tight_layout()
    visualization.save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(config.PROFILES), default=None)
    parser.add_argument("--shares", type=floats, default=[0.05, 0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--seeds", type=integers, default=[0, 1, 2])
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON lines of the runs (read first to resume)"
    )
    parser.add_argument("--figure", type=Path, default=None, help="draw the curve into this PNG")
    arguments = parser.parse_args(argv)
    profile = config.choose_profile(arguments.profile)[0].name
    done = []
    if arguments.out and arguments.out.exists():
        done = [json.loads(line) for line in arguments.out.read_text().splitlines() if line.strip()]
    records = []
    for share in arguments.shares:
        for seed in arguments.seeds:
            key = (profile, share, seed)
            record = next((r for r in done if (r["profile"], r["labelled_share"], r["seed"]) == key), None)
            if record is None:
                with tempfile.TemporaryDirectory() as folder:
                    try:
                        record = run_notebook(arguments.profile, share, seed, Path(folder))
                    except papermill.PapermillExecutionError as error:
                        print(f"error: notebook 07 failed: {error.ename}: {error.evalue}", file=sys.stderr)
                        return 1
                if arguments.out:
                    arguments.out.parent.mkdir(parents=True, exist_ok=True)
                    with arguments.out.open("a") as stream:
                        stream.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
            records.append(record)
    rows = summarise(records)
    print(table(rows))
    if arguments.figure:
        draw(rows, arguments.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
