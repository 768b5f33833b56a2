"""Run the numbered notebooks in order with papermill, showing progress, and save the executed copies.

    python tools/run_notebooks.py notebooks --output-dir outputs/notebooks
    python tools/run_notebooks.py notebooks/03_training.ipynb -p EPOCHS 5 -p LOSS ce

Each notebook gets one line when it starts and one when it ends, with its time and key figure (read
from the artifact it wrote). While ``03_training`` trains, a line per epoch (at most one every few
seconds) gives the phase, the epoch and the time left, read from the epoch logs as they grow. Stops at
the first failing notebook and names it, its failing cell and the error. ``-p NAME VALUE`` injects a
parameter into every notebook that has it, as papermill does. The kernels' own start-up messages
(TensorFlow's, Jupyter's) go to ``kernels.log`` in the output folder instead of the terminal.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import papermill

# config imports no framework, so the runner starts at once and prints nothing of TensorFlow's.
from unet_clustering import config

#: Seconds between two progress lines of the training notebook.
PROGRESS_EVERY_S = 10.0


def count_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


class TrainingProgress(threading.Thread):
    """Prints the epoch of each training phase, and the time left, from the CSV logs as they grow."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopped = threading.Event()
        self.started = time.time()
        self.run_folder = config.artifact("training")
        self.phases = [
            (
                "low-resolution",
                self.run_folder / config.RUN_FOLDER_FILES["low_res_history"],
                "low_res_epochs",
            ),
            ("full-size", config.artifact("history"), "epochs"),
        ]

    def run(self) -> None:
        # Per phase: the rows and time when its first new row was seen, and the rows seen last.
        first: dict[str, tuple[int, float]] = {}
        seen = dict.fromkeys((name for name, _, _ in self.phases), 0)
        last_print = 0.0
        while not self.stopped.wait(1.0):
            recipe = self.recipe()
            for name, log, key in self.phases:
                rows, now = count_rows(log), time.monotonic()
                if rows < seen[name]:  # a fresh run cleared the log
                    first.pop(name, None)
                if rows <= seen[name] or not recipe:
                    seen[name] = rows
                    continue
                seen[name] = rows
                start_rows, start_time = first.setdefault(name, (rows, now))
                seconds = (now - start_time) / (rows - start_rows) if rows > start_rows else None
                if now - last_print >= PROGRESS_EVERY_S or rows == recipe.get(key):
                    print(self.describe(name, rows, recipe.get(key), seconds), flush=True)
                    last_print = now

    def recipe(self) -> dict:
        """The running notebook's settings; an older file (an earlier run's) counts as none yet."""
        path = self.run_folder / config.RUN_FOLDER_FILES["recipe"]
        try:
            return config.read_json(path) if path.stat().st_mtime >= self.started else {}
        except (OSError, ValueError):
            return {}

    @staticmethod
    def describe(phase: str, epoch: int, total: int | None, seconds: float | None) -> str:
        line = f"    {phase} epoch {epoch}/{total or '?'}"
        if seconds and total:
            line += f", {seconds:.1f} s each, about {max(0, total - epoch) * seconds / 60:.1f} min left in this phase"
        return line


def key_figure(notebook: str) -> str:
    """One line about what the notebook wrote, from its artifact."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if notebook.startswith("01"):
            described = config.read_json(config.artifact("dataset"))
            classes = ", ".join(described["class_names"])
            return f"{described['counts']} from {described['dataset']} ({described['source']}); classes {classes}"
        if notebook.startswith("03"):
            metrics = config.read_json(config.artifact("metrics"))
            scores = metrics["test_metrics"]
            return (
                f"test fg IoU {scores['fg_iou']:.3f}, mean IoU {scores['mean_iou']:.3f} on "
                f"{scores['num_images']} images; {metrics['train_s']:.0f} s of training"
            )
        if notebook.startswith("04"):
            return f"{config.artifact('features').stat().st_size / 1e6:.1f} MB of pixel features"
        if notebook.startswith("05"):
            report = config.read_json(config.artifact("clustering"))
            return f"chosen k = {report['chosen_k']}; features beat RGB by {report['feature_gain_over_rgb']:+.3f} mean IoU"
        if notebook.startswith("06"):
            figures = sorted(path.name for path in config.artifact("figures").iterdir())
            return f"figures in {config.artifact('figures')}: {', '.join(figures)}"
        if notebook.startswith("07"):
            report = config.read_json(config.artifact("semi_supervised"))
            scores = ", ".join(f"{name} {value:.3f}" for name, value in report["fg_iou"].items())
            return f"test fg IoU with {report['labelled_share']:.0%} of the labels: {scores}"
    return ""


@contextlib.contextmanager
def kernel_messages_to(log: Path):
    """Send this process's standard error, which the kernels inherit, to ``log``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with log.open("ab") as stream:
        os.dup2(stream.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def run_notebook(path: Path, output: Path, parameters: dict, progress: bool) -> None:
    monitor = TrainingProgress() if progress else None
    if monitor:
        monitor.start()
    try:
        papermill.execute_notebook(
            str(path),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            progress_bar=False,
            cwd=str(path.parent),
        )
    finally:
        if monitor:
            monitor.stopped.set()
            monitor.join()


def parse_value(text: str):
    with contextlib.suppress(ValueError, SyntaxError):
        return ast.literal_eval(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks, or a folder of numbered notebooks")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/notebooks"))
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    arguments = parser.parse_args(argv)
    notebooks = [
        notebook
        for path in arguments.paths
        for notebook in (sorted(path.glob("[0-9][0-9]_*.ipynb")) if path.is_dir() else [path])
    ]
    if not notebooks:
        print(f"No numbered notebooks in {arguments.paths}", file=sys.stderr)
        return 1
    parameters = {name: parse_value(value) for name, value in arguments.p}
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    log = arguments.output_dir / "kernels.log"
    log.write_text("")
    logging.getLogger("papermill").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*running over TCP.*")
    profile, why = config.choose_profile(None)
    print(
        f"Running {len(notebooks)} notebook(s) with the {profile.name!r} profile ({why.split(';')[0]})",
        flush=True,
    )
    total = 0.0
    for path in notebooks:
        print(f"- {path.name} ...", flush=True)
        started = time.perf_counter()
        try:
            with kernel_messages_to(log):
                run_notebook(
                    path, arguments.output_dir / path.name, parameters, progress=path.name.startswith("03")
                )
        except papermill.PapermillExecutionError as error:
            print(
                f"  {path.name} FAILED in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
                f"  The executed copy is {arguments.output_dir / path.name}; the kernels' messages are in {log}.",
                flush=True,
            )
            return 1
        seconds = time.perf_counter() - started
        total += seconds
        figure = key_figure(path.name)
        print(f"  done in {seconds:.0f} s" + (f": {figure}" if figure else ""), flush=True)
    print(
        f"All {len(notebooks)} notebook(s) ran in {total / 60:.1f} min; executed copies in {arguments.output_dir}/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
