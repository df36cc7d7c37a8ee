"""Nightly forecast throughput: series/s through the real forecast flow, and where the time goes.

Data: a seeded synthetic daily panel, `--series` series (default 10,000) x `--days` days (default
240): level, linear trend, weekly seasonality, Gaussian noise. It is written as one Parquet file
in a source's own column names (`item`, `date`, `sales`, mapped to the contract in config), rows
in arrival order (day by day, every series each day), so validation really sorts them.
Window: look_back 28, horizon 7. At the default 70/15/15 split, 240 days give every series
168 training, 36 validation and 36 test rows, so each split has windows (28 + 7 = 35 rows).

Set-up, timed and printed but not part of the nightly number:
- a temporary Prefect server (`prefect_test_harness`: a server subprocess on its own SQLite
  database, as the embedded default runs), started before any timer;
- a champion: the real `training_flow` run once on the full panel with tiny settings (LSTM(8),
  1 epoch, `training.max_train_windows` = `--train-windows`, gate "none"), so its per-series
  scaler knows every series: the predict step skips series its champion never saw.

Then the timed passes, all for the night after the panel's last day. Before each pass the source
file is touched, as a new nightly extract would be, so nothing is a cache hit (ingest's key
covers the source's fingerprint, validate's its input checksum, predict is never cached; the
task-run states read back from the server prove they ran: all must be Completed).

The flow pass times three nested things in one run, so their differences carry no run-to-run
noise. The probes wrap each task's function (`task.fn`, what Prefect's engine calls) and the step
function its body calls, with two perf_counter reads per call; the flow itself is unchanged:

  F  flow wall      `forecast_flow(config, run_date)`: ingest -> validate -> predict on the
                    server, wall time of the call.
  B  task bodies    the sum of `ingest_task.fn`, `validate_task.fn`, `predict_task.fn` inside
                    that run: the steps' own work, their artifact I/O included (Parquet encode
                    and decode, sha256, fsync + rename, the champion's load from the registry;
                    also the bodies' own few Prefect calls: a UI artifact, a log line).
  C  pure compute   the sum of `read_source`, `validate_frame`, `predict_frame` inside those
                    bodies: the step functions on in-memory frames, no artifact read or write
                    (reading the source is the ingest step's own work and counts here).

  orchestration share = 1 - B / F    what running under Prefect adds: flow and task runs and
                                     their state changes on the server, cache keys (source
                                     fingerprint, store identity), persisted JSON results, UI
                                     artifacts and API logs, the heartbeat thread
  artifact I/O share  = (B - C) / F  reading and writing the artifacts between steps
  compute share       = C / F

The shares pool every flow pass (sums of F, B and C). As a cross-check the same functions also
run outside any Prefect run, in separate passes: B' (`ingest_task.fn` -> `validate_task.fn` ->
`predict_task.fn`, artifacts written) and C' (`read_source` -> `validate_frame` ->
`predict_frame`, champion loaded beforehand, untimed). Printed: series/s = N / F (the nightly
number, median F), the median seconds per step of every column (with the task runs'
Running-to-Completed time from the server), the shares, and series/s of B' and C' alone.

All passes run in one warm process (imports, GX and Keras loaded by training, the source in the
page cache). The machine is shared, so each kind runs `--repeats` times (default 3) in rotating
order. Checks: the forecast holds N x horizon rows and skips no series, and every pass's
forecast is the same. `--series/--days` make smaller runs; `--no-heartbeat` turns the flow-run
heartbeat thread off, as the test suite does (Prefect 3.9 runs it every 180 s by default).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LOOK_BACK, HORIZON = 28, 7
STEPS = ("ingest", "validate", "predict")
ORDER = "FBC"
SOURCE_COLUMNS = {"id": "item", "time": "date", "target": "sales"}


def quiet_offline_environment(prefect_home: Path) -> None:
    """Before Prefect or TensorFlow import: no telemetry, quiet logs, a private Prefect home
    (its result storage and profiles never mix with the user's)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ["PREFECT_HOME"] = str(prefect_home)


def synthetic_panel(n_series: int, days: int, seed: int) -> pd.DataFrame:
    """Long frame in the source's column names: level + trend + weekly cycle + noise, positive."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)[None, :]
    level = rng.uniform(20, 500, (n_series, 1))
    trend = level * rng.uniform(-0.3, 0.5, (n_series, 1)) * t / days
    phase = rng.uniform(0, 2 * np.pi, (n_series, 1))
    weekly = level * rng.uniform(0.05, 0.3, (n_series, 1)) * np.sin(2 * np.pi * t / 7 + phase)
    noise = level * rng.uniform(0.02, 0.08, (n_series, 1)) * rng.standard_normal((n_series, days))
    values = level + trend + weekly + noise
    ids = np.array([f"item_{k:05d}" for k in range(n_series)])
    dates = pd.date_range("2025-01-01", periods=days, freq="D")
    # Arrival order: one day at a time, every series that day (validation sorts it back).
    return pd.DataFrame(
        {
            SOURCE_COLUMNS["id"]: np.tile(ids, days),
            SOURCE_COLUMNS["time"]: np.repeat(dates.to_numpy(), n_series),
            SOURCE_COLUMNS["target"]: values.T.reshape(-1),
        }
    )


def bench_config(source: Path, root: Path, train_windows: int) -> Any:
    from tasks.config import PipelineConfig

    return PipelineConfig.model_validate(
        {
            "name": "bench-nightly",
            "frequency": "D",
            "source": {
                "path": str(source),
                "id_column": SOURCE_COLUMNS["id"],
                "time_column": SOURCE_COLUMNS["time"],
                "target_column": SOURCE_COLUMNS["target"],
            },
            "validation": {"y_min": 0.0},
            "window": {"look_back": LOOK_BACK, "horizon": HORIZON},
            "model": {"preset": "univariate", "units": [8]},
            "training": {
                "epochs": 1,
                "batch_size": 1024,
                "patience": 0,
                "max_train_windows": train_windows,
            },
            "evaluation": {"gate_must_beat": "none", "plot_series": 1},
            "storage": {"root": str(root)},
        }
    )


@dataclass
class Pass:
    """One timed pass: wall time, seconds per step, and the forecast it produced."""

    wall: float
    steps: dict[str, float]
    forecast: pd.DataFrame


@dataclass
class FlowPass(Pass):
    """A flow pass also has, per step, what the probes timed inside the run: the task's
    function (`bodies`) and the step function it calls (`compute`); `steps` holds the task
    runs' Running-to-Completed times as the server recorded them."""

    bodies: dict[str, float] = field(default_factory=dict)
    compute: dict[str, float] = field(default_factory=dict)


class Probe:
    """Adds up the wall time of calls to chosen functions while installed (two perf_counter
    reads per call). Patching `task.fn` times exactly what Prefect's engine calls; Prefect's
    cache key reads the task's source through `__wrapped__`, so it is unchanged."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def _timed(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - began

        return timed

    @contextmanager
    def installed(self, targets: list[tuple[Any, str, str]]) -> Iterator[Probe]:
        """Wrap `owner.attribute` for each (owner, attribute, label); restore on exit."""
        saved = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in targets]
        try:
            for owner, attribute, label in targets:
                setattr(owner, attribute, self._timed(getattr(owner, attribute), label))
            yield self
        finally:
            for owner, attribute, original in reversed(saved):
                setattr(owner, attribute, original)


def probe_targets() -> list[tuple[Any, str, str]]:
    """Each step's task function and the step function its body calls (by module global)."""
    import tasks.ingest
    import tasks.predict
    import tasks.validate

    return [
        (tasks.ingest.ingest_task, "fn", "body:ingest"),
        (tasks.validate.validate_task, "fn", "body:validate"),
        (tasks.predict.predict_task, "fn", "body:predict"),
        (tasks.ingest, "read_source", "compute:ingest"),
        (tasks.validate, "validate_frame", "compute:validate"),
        (tasks.predict, "predict_frame", "compute:predict"),
    ]


def task_runs(flow_run_id: str) -> dict[str, Any]:
    """Step name -> task run of one flow run, read back from the Prefect API."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return {run.name.split("-")[0]: run for run in runs}

    return asyncio.run(read())


def flow_pass(config: Any, run_date: str, n_series: int) -> FlowPass:
    """F: the real nightly flow on the running server, probed; checks every task ran."""
    from flows.forecasting import forecast_flow
    from tasks.predict import forecast_uri
    from tasks.runtime import store_for

    with Probe().installed(probe_targets()) as probe:
        began = time.perf_counter()
        state = forecast_flow(config, run_date, return_state=True)
        wall = time.perf_counter() - began
    summary = state.result()
    runs = task_runs(str(state.state_details.flow_run_id))
    states = {step: runs[step].state.name for step in STEPS}
    print(f"  flow run {run_date}: {state.name}; task runs {states}")
    assert states == dict.fromkeys(STEPS, "Completed"), f"a task did not run: {states}"
    assert not summary.skipped, f"{len(summary.skipped)} series skipped"
    forecast = pd.read_parquet(forecast_uri(store_for(config), config.name, run_date))
    assert summary.rows == len(forecast) == n_series * HORIZON, (summary.rows, len(forecast))
    assert forecast["unique_id"].nunique() == n_series
    return FlowPass(
        wall,
        {step: runs[step].total_run_time.total_seconds() for step in STEPS},
        forecast,
        bodies={step: probe.seconds[f"body:{step}"] for step in STEPS},
        compute={step: probe.seconds[f"compute:{step}"] for step in STEPS},
    )


def bodies_pass(config: Any, run_date: str) -> Pass:
    """B': the three task functions without Prefect, each reading and writing its artifacts."""
    from tasks.ingest import ingest_task
    from tasks.predict import predict_task
    from tasks.runtime import store_for
    from tasks.validate import validate_task

    steps: dict[str, float] = {}
    began = time.perf_counter()
    ingested = ingest_task.fn(config, run_date)
    steps["ingest"] = time.perf_counter() - began
    mark = time.perf_counter()
    validated = validate_task.fn(config, ingested, "forecast", run_date)
    steps["validate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    summary = predict_task.fn(config, validated, run_date)
    steps["predict"] = time.perf_counter() - mark
    wall = time.perf_counter() - began
    _, meta = store_for(config).read_table(ingested)
    source_mtime = str(Path(config.source.path).stat().st_mtime)
    assert meta["source_files"][0]["mtime"] == source_mtime, "ingest reused an earlier artifact"
    return Pass(wall, steps, pd.read_parquet(summary.uri))


def compute_pass(config: Any, champion: Any) -> Pass:
    """C': the step functions on in-memory frames, no artifact read or write."""
    from tasks.ingest import read_source
    from tasks.predict import predict_frame
    from tasks.validate import validate_frame

    steps: dict[str, float] = {}
    began = time.perf_counter()
    frame = read_source(config.source)
    steps["ingest"] = time.perf_counter() - began
    mark = time.perf_counter()
    validated, _ = validate_frame(frame, config, config.source.path)
    steps["validate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    table, skipped = predict_frame(
        validated,
        champion,
        config.frequency,
        config.source.timezone,
        model_version="bench",
    )
    steps["predict"] = time.perf_counter() - mark
    assert not skipped
    return Pass(time.perf_counter() - began, steps, table)


def same_forecast(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    keys = ["unique_id", "step"]
    left, right = a.sort_values(keys), b.sort_values(keys)
    return (
        left["unique_id"].tolist() == right["unique_id"].tolist()
        and bool((left["ds"].to_numpy() == right["ds"].to_numpy()).all())
        and np.allclose(left["yhat"].to_numpy(), right["yhat"].to_numpy(), rtol=1e-6)
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(flows: list[FlowPass], bodies: list[Pass], computes: list[Pass], n_series: int) -> None:
    """The per-step table (medians), the shares of F (pooled over passes) and series/s."""

    def cells(step: str) -> list[float]:
        return [
            median([p.steps[step] for p in flows]),
            median([p.bodies[step] for p in flows]),
            median([p.compute[step] for p in flows]),
            median([p.steps[step] for p in bodies]),
            median([p.steps[step] for p in computes]),
        ]

    what = f"median of {len(flows)} passes" if len(flows) > 1 else "one pass"
    print(f"\nSeconds per step ({what} of each kind):")
    print(f"{'':10s} {'-- forecast_flow on the server (F) --':>38s}   {'-- no Prefect --':>22s}")
    header = (
        f"{'step':10s} {'task run':>11s} {'body .fn':>11s} {'compute':>11s}   "
        "  .fn (B')  compute (C')"
    )
    print(header)
    print("-" * len(header))
    totals = [0.0] * 5
    for step in STEPS:
        row = cells(step)
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        print(
            f"{step:10s} {row[0]:11.2f} {row[1]:11.2f} {row[2]:11.2f}   {row[3]:10.2f} {row[4]:12.2f}"
        )
    print(
        f"{'all steps':10s} {totals[0]:11.2f} {totals[1]:11.2f} {totals[2]:11.2f}   "
        f"{totals[3]:10.2f} {totals[4]:12.2f}"
    )
    f_wall = median([p.wall for p in flows])
    print(f"{'flow wall':10s} {f_wall:11.2f}")
    print(
        "  task run: the server's Running-to-Completed time of each task run\n"
        "  body .fn: the task's function as Prefect's engine called it (timed by a probe)\n"
        "  compute:  read_source / validate_frame / predict_frame as the bodies called them\n"
        "  .fn (B'), compute (C'): the same functions called directly, outside any run"
    )

    # Shares pooled over the passes: each pass's F, B and C come from the same run, so the
    # run-to-run noise of a shared machine cancels out of the differences.
    f_sum = sum(p.wall for p in flows)
    b_sum = sum(sum(p.bodies.values()) for p in flows)
    c_sum = sum(sum(p.compute.values()) for p in flows)
    n = len(flows)
    print("\nShares of the flow's wall time F (B, C timed inside the same flow runs):")
    print(
        f"  orchestration = 1 - B/F   = {1 - b_sum / f_sum:6.1%}  ({(f_sum - b_sum) / n:.2f} s a run)"
    )
    print(
        f"  artifact I/O  = (B - C)/F = {(b_sum - c_sum) / f_sum:6.1%}  ({(b_sum - c_sum) / n:.2f} s a run)"
    )
    print(f"  compute       = C/F       = {c_sum / f_sum:6.1%}  ({c_sum / n:.2f} s a run)")
    b_out = median([p.wall for p in bodies])
    c_out = median([p.wall for p in computes])
    print(
        f"  cross-check, no Prefect: B' {b_out:.2f} s, C' {c_out:.2f} s against F {f_wall:.2f} s "
        f"(separate passes: 1 - B'/F = {1 - b_out / f_wall:.1%}, noise included)"
    )
    print(
        f"\nNightly forecast, end to end: {n_series:,} series in {f_wall:.2f} s = "
        f"{n_series / f_wall:,.0f} series/s "
        f"(task bodies alone {n_series / b_out:,.0f}, compute alone {n_series / c_out:,.0f})"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=240, help="per series, at least 234")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--train-windows", type=int, default=20_000, help="training.max_train_windows"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each kind")
    parser.add_argument(
        "--no-heartbeat", action="store_true", help="PREFECT_FLOWS_HEARTBEAT_FREQUENCY off"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if int(args.days * 0.15) < LOOK_BACK + HORIZON:
        raise SystemExit("--days must be at least 234: the 15% splits need 35 rows for a window")
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as folder:
        work = Path(folder)
        quiet_offline_environment(work / "prefect-home")
        run(args, work)


def run(args: argparse.Namespace, work: Path) -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    began = time.perf_counter()
    panel = synthetic_panel(args.series, args.days, args.seed)
    source = work / "source" / "sales.parquet"
    source.parent.mkdir(parents=True)
    panel.to_parquet(source, index=False)
    config = bench_config(source, work / "store", args.train_windows)
    print(
        f"Panel: {args.series:,} series x {args.days} days = {len(panel):,} rows "
        f"({source.stat().st_size / 1e6:.1f} MB Parquet), look_back {LOOK_BACK}, "
        f"horizon {HORIZON}; built in {time.perf_counter() - began:.1f} s"
    )
    del panel

    heartbeat = None if args.no_heartbeat else PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()
    mark = time.perf_counter()
    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: heartbeat}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        print(
            f"Temporary Prefect server up in {time.perf_counter() - mark:.1f} s "
            f"(not timed below); flow-run heartbeat {f'every {heartbeat} s' if heartbeat else 'off'}"
        )
        champion = train_champion(config, args)
        passes: dict[str, list[Any]] = {"F": [], "B": [], "C": []}
        night = (date(2025, 1, 1) + timedelta(days=args.days)).isoformat()  # after the last day
        for k in range(args.repeats):
            # Rotate the order (F B C, B C F, C F B...) so no pass always runs first or last.
            for kind in ORDER[k % 3 :] + ORDER[: k % 3]:
                os.utime(config.source.path)  # a new nightly extract: ingest reads it again
                if kind == "F":
                    made = flow_pass(config, night, args.series)
                elif kind == "B":
                    made = bodies_pass(config, night)
                else:
                    made = compute_pass(config, champion)
                passes[kind].append(made)
            flow = passes["F"][-1]
            print(
                f"  repeat {k + 1}: F {flow.wall:.2f} s (B {sum(flow.bodies.values()):.2f} s, "
                f"C {sum(flow.compute.values()):.2f} s); B' {passes['B'][-1].wall:.2f} s, "
                f"C' {passes['C'][-1].wall:.2f} s"
            )
        flows, bodies, computes = passes["F"], passes["B"], passes["C"]
        reference = flows[0].forecast
        assert all(same_forecast(reference, p.forecast) for p in flows + bodies + computes)
        print(
            f"Checks passed: {args.series:,} x {HORIZON} = {len(reference):,} forecast rows, "
            "no series skipped, every pass's forecast equal"
        )
        report(flows, bodies, computes, args.series)
    print(f"\nBenchmark wall time {time.perf_counter() - began:.0f} s")


def train_champion(config: Any, args: argparse.Namespace) -> Any:
    """Run the real training flow once (tiny model) and return the champion it promoted."""
    from flows.training import training_flow
    from tasks.registry import ModelRegistry
    from tasks.runtime import store_for

    mark = time.perf_counter()
    registration = training_flow(config, "2030-12-31")
    assert registration.promoted, registration.reason
    registry = ModelRegistry(store_for(config), config.name)
    champion = registry.forecaster(registry.champion_version())
    assert len(champion.scaler.series) == args.series, "the champion must know every series"
    print(
        f"Champion {registration.version} trained by training_flow in "
        f"{time.perf_counter() - mark:.1f} s (LSTM(8), 1 epoch, "
        f"{args.train_windows:,} windows; not part of the nightly number)"
    )
    return champion


if __name__ == "__main__":
    main()
