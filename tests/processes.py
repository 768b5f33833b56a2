"""Kill a subprocess at a chosen moment, for the tests of runs that must resume after a kill."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence

import pytest


def kill_when(
    command: Sequence[str], ready: Callable[[], bool], env: dict[str, str], timeout_s: float, **popen_options
) -> None:
    """Start ``command``, SIGKILL it as soon as ``ready()`` is true, and check that the kill did it.

    Fails the test if the process ends on its own first, or if ``ready()`` stays false for
    ``timeout_s`` seconds.
    """
    process = subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen_options
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"the run ended before it could be killed:\n{process.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the run was not ready to be killed within {timeout_s} s")
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
