"""deployments/prefect.yaml says what deployments/serve.py and configs/chicago.toml say.

Fast (no server): the integration tests deploy the file for real; these catch drift between the
two ways of deploying the same two schedules.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.integration.live_prefect import PREFECT_YAML, REPO, ZOMBIE_AUTOMATION

TIMEZONE_PLACEHOLDER = "{{ schedule-timezone.stdout }}"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    from deployments.serve import build_deployments
    from tasks.config import load_config

    config = load_config(REPO / "configs" / "chicago.toml", environ={})
    return {d.name: d for d in build_deployments(config)}


def resolved_config(config: dict[str, Any]) -> Any:
    """The YAML's config as the worker sees it: timezone filled in, paths from the project root."""
    from tasks.config import PipelineConfig

    data = {**config, "schedule": {**config["schedule"], "timezone": "UTC"}}
    data["source"] = {**config["source"], "path": str(REPO / config["source"]["path"])}
    data["storage"] = {"root": str(REPO / config["storage"]["root"])}
    return PipelineConfig.model_validate(data)


def test_both_deployments_share_one_config(document: dict[str, Any]) -> None:
    nightly, weekly = document["deployments"]
    assert nightly["parameters"]["config"] == weekly["parameters"]["config"]
    assert nightly["work_pool"] == weekly["work_pool"]


def test_yaml_config_is_configs_chicago_toml(document: dict[str, Any]) -> None:
    from tasks.config import load_config

    config = document["deployments"][0]["parameters"]["config"]
    assert config["schedule"]["timezone"] == TIMEZONE_PLACEHOLDER
    assert resolved_config(config) == load_config(REPO / "configs" / "chicago.toml", environ={}), (
        "the config block of deployments/prefect.yaml differs from configs/chicago.toml: "
        "change both together"
    )


def test_yaml_matches_serve_py(document: dict[str, Any], served: dict[str, Any]) -> None:
    declared = {d["name"]: d for d in document["deployments"]}
    assert declared.keys() == served.keys() == {"nightly-forecast", "weekly-retrain"}
    for name, runner in served.items():
        entry = declared[name]
        module, function = entry["entrypoint"].split(":")
        assert runner.entrypoint.endswith(f"{module}:{function}")
        (schedule,) = entry["schedules"]
        (runner_schedule,) = runner.schedules
        assert schedule["cron"] == runner_schedule.schedule.cron
        assert schedule["timezone"] == TIMEZONE_PLACEHOLDER
        assert entry["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        assert runner.concurrency_limit == 1
        assert runner.concurrency_options.collision_strategy.value == "ENQUEUE"
        assert entry["tags"][0] == runner.tags[0]
        assert entry["description"] == runner.description
        parameters = entry["parameters"]["config"]
        assert resolved_config(parameters).model_dump(mode="json") == runner.parameters["config"]


def test_schedules_are_the_configs_schedules(document: dict[str, Any]) -> None:
    config = document["deployments"][0]["parameters"]["config"]["schedule"]
    crons = {d["name"]: d["schedules"][0]["cron"] for d in document["deployments"]}
    assert crons == {
        "nightly-forecast": config["nightly_forecast_cron"],
        "weekly-retrain": config["weekly_retrain_cron"],
    }


def test_pull_step_runs_flows_from_the_deploying_clone(document: dict[str, Any]) -> None:
    steps = {next(iter(step)): step[next(iter(step))] for step in document["build"]}
    assert steps["prefect.deployments.steps.run_shell_script"]  # pwd and the time zone
    (pull,) = document["pull"]
    assert pull == {
        "prefect.deployments.steps.set_working_directory": {
            "directory": "{{ project-root.stdout }}"
        }
    }


def test_zombie_automation_is_valid() -> None:
    from prefect.events.schemas.automations import AutomationCore

    automation = AutomationCore.model_validate(yaml.safe_load(ZOMBIE_AUTOMATION.read_text()))
    assert automation.trigger.posture == "Proactive"
    assert automation.trigger.within.total_seconds() >= 3 * 180  # three default heartbeats
