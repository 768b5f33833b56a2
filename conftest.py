"""pytest settings shared by the unit tests and the nbval runs of the notebooks."""

from __future__ import annotations

import pytest

#: Seconds nbval waits for the next output message of a cell that has already finished. nbval
#: hard-codes 5 s, which a busy 2-core machine can exceed while TensorFlow threads flush their
#: output, failing a cell that ran fine. Slow *execution* is bounded by --nbval-cell-timeout.
NOTEBOOK_OUTPUT_TIMEOUT_S = 120


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = NOTEBOOK_OUTPUT_TIMEOUT_S
