"""Shared test set-up: offline Prefect, quiet TensorFlow, one Prefect server for the session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Before prefect or tensorflow import: no telemetry (there is no network) and quiet logs.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# The temporary Prefect servers (the harness, the CLI's) may take minutes to start on a busy
# machine; Prefect's 20 s default (30 s in the harness) made runs fail there.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
# A private Prefect home per test session: its database, result cache and settings never mix
# with a user's ~/.prefect or with an earlier session's.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BUNDLED_DATA = REPO / "data" / "chicago_l_daily.parquet"


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for every flow test (starting one costs several seconds)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # The heartbeat thread costs about 1 s per flow call and cannot be set from the environment.
    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(
            server_startup_timeout=None  # None: PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
        ),
    ):
        yield
