"""Keep notebooks in their committed form: no outputs, no execution counts, minimal metadata.

python tools/notebook_format.py notebooks          # rewrite in place
python tools/notebook_format.py --check notebooks  # exit 1 and name each notebook that differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def canonical(text: str) -> str:
    """The committed form of a notebook's JSON text."""
    notebook = nbformat.reads(text, as_version=4)
    notebook.metadata = nbformat.from_dict(
        {
            "kernelspec": KERNELSPEC,
            "language_info": {"name": "python"},
            **({"colab": notebook.metadata["colab"]} if "colab" in notebook.metadata else {}),
        }
    )
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags")
        cell.metadata = nbformat.from_dict({"tags": tags} if tags else {})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("attachments", None) if cell.cell_type != "markdown" else None
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks or folders of notebooks")
    parser.add_argument("--check", action="store_true", help="only report notebooks that are not canonical")
    arguments = parser.parse_args()
    notebooks = sorted(
        notebook
        for path in arguments.paths
        for notebook in ([path] if path.is_file() else path.glob("*.ipynb"))
    )
    differing = []
    for notebook in notebooks:
        text = notebook.read_text(encoding="utf-8")
        wanted = canonical(text)
        if text != wanted:
            differing.append(notebook)
            if not arguments.check:
                notebook.write_text(wanted, encoding="utf-8")
    if arguments.check and differing:
        names = ", ".join(str(path) for path in differing)
        print(
            f"Not in committed form (outputs or metadata left in): {names}. Run `make format`.",
            file=sys.stderr,
        )
        return 1
    print(
        f"{len(notebooks)} notebook(s) checked" + ("" if arguments.check else f", {len(differing)} rewritten")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
