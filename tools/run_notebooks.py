"""Execute every notebook of a folder in numbered order, saving the executed copies.

    python tools/run_notebooks.py notebooks --output-dir outputs/notebooks

Stops at the first failing notebook, naming it and the error. The profile comes from
$UNET_PROFILE (``make run`` sets ``quick``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def run_notebook(path: Path, output_dir: Path, timeout_s: int) -> float:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.perf_counter()
    try:
        client.execute()
    finally:
        output_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, output_dir / path.name)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/notebooks"))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    arguments = parser.parse_args()
    notebooks = sorted(arguments.folder.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print(f"No numbered notebooks in {arguments.folder}", file=sys.stderr)
        return 1
    profile = os.environ.get("UNET_PROFILE", "quick")
    print(f"Running {len(notebooks)} notebooks with the {profile!r} profile", flush=True)
    total = 0.0
    for path in notebooks:
        print(f"- {path.name} ...", end=" ", flush=True)
        try:
            seconds = run_notebook(path, arguments.output_dir, arguments.timeout)
        except CellExecutionError as error:
            print("FAILED", flush=True)
            print(
                f"\n{path.name} failed; its executed copy is in {arguments.output_dir / path.name}.\n{error}",
                file=sys.stderr,
            )
            return 1
        total += seconds
        print(f"done in {seconds:.0f} s", flush=True)
    print(f"All notebooks ran in {total / 60:.1f} min; executed copies are in {arguments.output_dir}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
