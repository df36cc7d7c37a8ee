"""A small flow the crash tests deploy: it runs long enough to be killed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow


@flow(name="sleeper", log_prints=True)
def sleeper(seconds: int = 600, pid_file: str | None = None) -> int:
    """Write this process's id where the test can read it, then sleep."""
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    print(f"sleeping {seconds} s in process {os.getpid()} (working directory {os.getcwd()})")
    time.sleep(seconds)
    return seconds
