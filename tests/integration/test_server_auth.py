"""With an API auth string on the server, nothing gets in without it, and the pipeline still runs.

On the PostgreSQL stack, whose server has PREFECT_SERVER_API_AUTH_STRING set and whose clients
(the CLI, the worker and the flow runs it starts) have PREFECT_API_AUTH_STRING.
"""

from __future__ import annotations

import base64

import pytest

from tests.integration.stacks import AUTH_STRING, Stack

pytestmark = pytest.mark.integration


def test_api_refuses_calls_without_the_auth_string(postgresql_stack: Stack) -> None:
    server = postgresql_stack.server
    query = {"limit": 1}
    with server.api(authenticated=False) as anonymous:
        assert anonymous.post("/flow_runs/filter", json=query).status_code == 401
        assert (
            anonymous.get("/deployments/name/nightly-forecast/nightly-forecast").status_code == 401
        )
        wrong = base64.b64encode(b"forecast:wrong").decode()
        refused = anonymous.post(
            "/flow_runs/filter", json=query, headers={"Authorization": f"Basic {wrong}"}
        )
        assert refused.status_code == 401
        # Health stays open, for load balancers and `prefect server status`.
        assert anonymous.get("/health").status_code == 200
    with server.api() as client:
        assert client.post("/flow_runs/filter", json=query).status_code == 200

    # The CLI without the string is refused too; with it (the stack's client env) it works.
    refused_cli = server.cli("deployment", "ls", env={"PREFECT_API_AUTH_STRING": ""}, check=False)
    assert refused_cli.returncode != 0
    assert "401" in refused_cli.stdout + refused_cli.stderr
    assert "nightly-forecast" in server.cli("deployment", "ls").stdout


def test_worker_runs_the_pipeline_with_the_auth_string(postgresql_stack: Stack) -> None:
    runs = postgresql_stack.pipeline()
    server = postgresql_stack.server
    assert server.auth_string == AUTH_STRING
    assert server.database == "postgresql+asyncpg"
    for run in (runs.train, runs.forecast):
        assert run["state_type"] == "COMPLETED", server.diagnostics(run["id"])
    assert runs.forecast_file.is_file()
