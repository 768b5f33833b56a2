"""Point the Colab badges and install cells at another GitHub repository, everywhere at once.

    python tools/set_repository.py OWNER/NAME

The repository is written in config.REPOSITORY; the README and every notebook repeat it (Markdown
cannot read a variable), and tests/test_project.py checks that they all agree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "src" / "unet_clustering" / "config.py"


def current_repository() -> str:
    match = re.search(r'^REPOSITORY = "([^"]+)"', CONFIG.read_text(), flags=re.MULTILINE)
    if match is None:
        raise SystemExit(f"No REPOSITORY line in {CONFIG}")
    return match.group(1)


def main() -> int:
    if len(sys.argv) != 2 or not re.fullmatch(r"[\w.-]+/[\w.-]+", sys.argv[1]):
        print(__doc__, file=sys.stderr)
        return 2
    old, new = current_repository(), sys.argv[1]
    files = [CONFIG, ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.ipynb"))]
    for path in files:
        text = path.read_text(encoding="utf-8")
        if old in text:
            path.write_text(text.replace(old, new), encoding="utf-8")
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
