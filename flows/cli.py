"""`forecast`: the command line over the flows.

    forecast run     [--config F]            train when there is no champion, then forecast tonight
    forecast train   [--config F]            the training flow
    forecast predict [--config F] [--date D] the nightly forecast flow for one date
    forecast backfill [--config F] --from D1 --to D2   the nightly forecast for each night D1..D2
    forecast data    [--config F]            only ingest, validate, normalize and window
    forecast backtest [--config F]           rolling-origin backtest over evaluation.backtest_folds
    forecast show    [--config F]            the latest forecast and the champion's metrics
    forecast serve   [--config F]            serve the scheduled deployments from this process
    forecast gc      [--config F] [--dry-run] remove what is older than storage.retention_days
    forecast tune    [--config F] [--trials N] [--time-budget S] [--out FILE]
                                             hyperparameter search on validation MASE
    forecast versions [--config F]           the registry's versions, metrics and gate decisions
    forecast promote VERSION [--config F]    make VERSION the champion (recorded in champion.json)
    forecast rollback [--config F]           make the previous champion the champion again

`promote` and `rollback` swap the champion pointer by the gate's compare-and-swap: when the
champion changes while they run (a training promoted meanwhile), they refuse and change nothing.

A failure ends in one line on stderr naming the file or setting and the cause, exit code 1
(2 for a config that does not load); `--debug` shows the traceback instead. A command that
runs flows first marks Crashed the runs of earlier `forecast` processes on this host that were
killed mid-flight (flows/cli_runs.py).

Heavy libraries (Prefect, TensorFlow, Great Expectations) are imported inside the commands, so
`forecast --help` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

DEFAULT_CONFIG = "configs/chicago.toml"
SERVER_STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def _quiet_environment() -> None:
    """No telemetry (there may be no network), no TensorFlow start-up chatter, and time for the
    embedded Prefect server to start on a busy machine (Prefect's default is 20 s)."""
    for name, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        SERVER_STARTUP_TIMEOUT: "300",
    }.items():
        os.environ.setdefault(name, value)


def _load(args: argparse.Namespace):  # noqa: ANN202 - PipelineConfig, imported lazily
    from tasks.config import load_config

    return load_config(args.config)


def cmd_data(args: argparse.Namespace) -> int:
    from flows.reporting import print_artifacts
    from flows.training import data_flow
    from tasks.runtime import store_for

    config = _load(args)
    windows = data_flow(config, args.date)
    print_artifacts(dict(reversed(store_for(config).lineage(windows))))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from flows.reporting import print_registration
    from flows.training import training_flow

    config = _load(args)
    registration = training_flow(config, args.date)
    print_registration(config, registration)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from flows.forecasting import forecast_flow
    from flows.reporting import print_forecast

    config = _load(args)
    forecast = forecast_flow(config, args.date)
    print_forecast(config, forecast)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from flows.forecasting import backfill

    config = _load(args)
    for summary in backfill(config, args.first, args.last):
        print(f"{summary.run_date}  {summary.rows} rows  {summary.uri}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from flows.backtest import backtest_flow
    from tasks.backtest import backtest_text, require_folds
    from tasks.runtime import store_for

    config = _load(args)
    require_folds(config)  # fail at once, before ingesting, when the backtest is disabled
    ref = backtest_flow(config, args.date)
    metrics, _ = store_for(config).read_table(ref)
    print(backtest_text(metrics))
    print(f"\nAll metrics (per fold, model and series): {ref.uri}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tasks.registry import ModelRegistry
    from tasks.runtime import store_for

    config = _load(args)
    if ModelRegistry(store_for(config), config.name).champion_version() is None:
        print(f"No champion model for {config.name!r} yet: training first.")
        cmd_train(args)
    return cmd_predict(args)


def cmd_show(args: argparse.Namespace) -> int:
    from flows.reporting import print_show

    return print_show(_load(args))


def cmd_serve(args: argparse.Namespace) -> int:
    from deployments.serve import serve_deployments

    serve_deployments(Path(args.config))
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from tasks.retention import collect_garbage, removals_text
    from tasks.runtime import store_for

    config = _load(args)
    store, days = store_for(config), config.storage.retention_days
    removals = collect_garbage(store, days, dry_run=args.dry_run)
    print(removals_text(removals, root=store.root_url, retention_days=days, dry_run=args.dry_run))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from flows.tune import tuning_flow
    from tasks.runtime import store_for
    from tasks.tune import TuneError, study_plan, study_text

    config = _load(args)
    try:
        study_plan(config, args.trials, args.time_budget)  # a bad limit or space fails at once
        summary = tuning_flow(config, args.trials, args.time_budget, args.out, args.date)
    except TuneError as err:
        print(f"\nforecast tune failed: {err}", file=sys.stderr)
        return 1
    table, _ = store_for(config).read_table(summary.table)
    print(
        f"\nTuning study {summary.study}: {summary.completed} of {summary.trials} trials complete"
    )
    print(study_text(table))
    print(f"\nBest: trial {summary.best_trial}, validation MASE {summary.best_validation_mase:.4f}")
    if summary.seasonal_naive_mase is not None:
        print(f"Seasonal naive on the validation windows: {summary.seasonal_naive_mase:.4f}")
    print(f"Best configuration written to {summary.config_uri}")
    print(f"Study table: {summary.table.uri}")
    print(f"Optimization history plot: {summary.plot_uri}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from flows.reporting import versions_text
    from tasks.registry import ModelRegistry
    from tasks.runtime import store_for

    config = _load(args)
    registry = ModelRegistry(store_for(config), config.name)
    print(versions_text(registry, config.evaluation.gate_must_beat))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from tasks.registry import ModelRegistry, check_version_id
    from tasks.runtime import store_for
    from tasks.storage import ArtifactError

    config = _load(args)
    registry = ModelRegistry(store_for(config), config.name)
    version = check_version_id(args.version, registry.uri())
    if version not in registry.versions():
        raise ArtifactError(
            f"{registry.uri()}: no complete version {version!r} to promote (see `forecast "
            "versions`)"
        )
    expected = registry.champion_version()  # what the operator sees: swapped only if unchanged
    if expected == version:
        print(f"{config.name}/{version} is already the champion: nothing changed.")
        return 0
    with registry.pointer_lock():
        registry.swap_champion(expected, version, "promoted by forecast promote")
    print(f"Champion of {config.name}: {version} (was {expected}).")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from tasks.registry import ModelRegistry
    from tasks.runtime import store_for

    config = _load(args)
    registry = ModelRegistry(store_for(config), config.name)
    expected = registry.champion_version()
    with registry.pointer_lock():
        version = registry.roll_back(expected, by="forecast rollback")
    print(f"Champion of {config.name}: {version} again (was {expected}).")
    return 0


FLOW_COMMANDS = frozenset({"run", "train", "predict", "backfill", "data", "backtest", "tune"})
"""The commands that run flows in this process (serve hands them to its runner's processes)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forecast", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="on failure, show the traceback, not one line"
    )
    for name, handler, help_text in (
        ("run", cmd_run, "train if needed, then write tonight's forecast (the demo)"),
        ("train", cmd_train, "run the training flow"),
        ("predict", cmd_predict, "run the nightly forecast flow"),
        ("data", cmd_data, "run only the data preparation flow"),
        ("backtest", cmd_backtest, "rolling-origin backtest: refit and score per fold"),
        ("show", cmd_show, "print the latest forecast and the champion's metrics"),
        ("serve", cmd_serve, "serve the nightly-forecast and weekly-retrain deployments"),
    ):
        command = commands.add_parser(name, help=help_text, parents=[common])
        command.add_argument("--config", default=DEFAULT_CONFIG, help="TOML or YAML config file")
        command.add_argument("--date", default=None, help="run date YYYY-MM-DD (default: today)")
        command.set_defaults(handler=handler)
    backfill = commands.add_parser(
        "backfill",
        help="replay the nightly forecast for every night from --from to --to",
        parents=[common],
    )
    backfill.add_argument("--config", default=DEFAULT_CONFIG, help="TOML or YAML config file")
    backfill.add_argument("--from", dest="first", required=True, help="first night YYYY-MM-DD")
    backfill.add_argument("--to", dest="last", required=True, help="last night YYYY-MM-DD")
    backfill.set_defaults(handler=cmd_backfill, date=None)
    gc = commands.add_parser(
        "gc",
        help="remove artifacts, reports, forecasts and models past storage.retention_days",
        parents=[common],
    )
    gc.add_argument("--config", default=DEFAULT_CONFIG, help="TOML or YAML config file")
    gc.add_argument("--dry-run", action="store_true", help="print what would go; remove nothing")
    gc.set_defaults(handler=cmd_gc, date=None)
    tune = commands.add_parser(
        "tune",
        help="search hyperparameters on validation MASE; write the best config",
        parents=[common],
    )
    tune.add_argument("--config", default=DEFAULT_CONFIG, help="TOML or YAML config file")
    tune.add_argument("--date", default=None, help="run date YYYY-MM-DD (default: today)")
    tune.add_argument("--trials", type=int, default=None, help="trials at most (tune.trials)")
    tune.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="S",
        help="seconds after which no trial starts (tune.time_budget_s)",
    )
    tune.add_argument(
        "--out", default=None, help="best config file (default: the store's reports/tune/)"
    )
    tune.set_defaults(handler=cmd_tune)
    for name, handler, help_text in (
        ("versions", cmd_versions, "list the model versions, their metrics and gate decisions"),
        ("promote", cmd_promote, "make a version the champion (compare-and-swap, recorded)"),
        ("rollback", cmd_rollback, "make the previous champion the champion again"),
    ):
        command = commands.add_parser(name, help=help_text, parents=[common])
        command.add_argument("--config", default=DEFAULT_CONFIG, help="TOML or YAML config file")
        if name == "promote":
            command.add_argument("version", help="a version id, as `forecast versions` lists")
        command.set_defaults(handler=handler, date=None)
    return parser


DATE_OPTIONS = {"date": "--date", "first": "--from", "last": "--to"}


def date_option_error(args: argparse.Namespace) -> str | None:
    """One line naming the first malformed date option and its value, or a reversed range."""
    from tasks.runtime import RunDateError, nights, parse_run_date

    for attribute, option in DATE_OPTIONS.items():
        value = getattr(args, attribute, None)
        if value is None:
            continue
        try:
            parse_run_date(value)
        except RunDateError:
            return f"{option} {value!r} is not a date YYYY-MM-DD"
    if getattr(args, "first", None) is not None:
        try:
            nights(args.first, args.last)
        except RunDateError:
            return f"--from {args.first} is after --to {args.last}: nothing to replay"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_environment()
    from tasks.config import ConfigError

    problem = date_option_error(args)
    if problem is not None:
        print(f"forecast {args.command} failed: {problem}", file=sys.stderr)
        return 1
    try:
        with _console_tracebacks(shown=args.debug), _cli_runs(args):
            return args.handler(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    except Exception as err:
        if args.debug:
            raise
        print(f"\nforecast {args.command} failed: {failure_line(err)}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _cli_runs(args: argparse.Namespace) -> Iterator[None]:
    """For a command that runs flows: first mark Crashed the runs that earlier `forecast`
    processes on this host left unfinished when killed, then tag this process's runs alike."""
    if args.command not in FLOW_COMMANDS:
        yield
        return
    from prefect import tags

    from flows.cli_runs import cli_run_tags, crash_orphaned_cli_runs

    _load(args)  # a config that does not load fails before the embedded server starts
    for run in crash_orphaned_cli_runs():
        print(
            f"Marked flow run {run.name!r} ({run.id}) Crashed: the `forecast` process that "
            "ran it is gone.",
            file=sys.stderr,
        )
    with tags(*cli_run_tags()):
        yield


class _WithoutTraceback(logging.Formatter):
    """Formats a record as `inner` does, minus any traceback (other handlers still get it)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        kept = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = kept


@contextlib.contextmanager
def _console_tracebacks(shown: bool) -> Iterator[None]:
    """Prefect's console log prints a failed task's traceback before the CLI's one line; keep
    only its message lines there unless `shown` (--debug). The run's logs in the Prefect API
    (the UI) keep the traceback."""
    from prefect.logging.handlers import PrefectConsoleHandler

    consoles = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, PrefectConsoleHandler) and handler.formatter is not None
    ]
    if shown or not consoles:
        yield
        return
    formatters = [handler.formatter for handler in consoles]
    for handler, formatter in zip(consoles, formatters, strict=True):
        handler.setFormatter(_WithoutTraceback(formatter))
    try:
        yield
    finally:
        for handler, formatter in zip(consoles, formatters, strict=True):
            handler.setFormatter(formatter)


def failure_line(error: Exception) -> str:
    """One line for a failed command: the message of our own typed errors (they name the file,
    column or setting), an OS error's file and cause (`path: No space left on device
    (ENOSPC)`), else the exception's type and message and where the traceback is."""
    if _is_server_start_failure(error):
        return _server_start_hint()
    if _is_user_facing(error):
        return str(error)
    if isinstance(error, OSError) and error.errno is not None:
        return os_error_text(error)
    return f"{type(error).__name__}: {error} (run with --debug for the traceback)"


def os_error_text(error: OSError) -> str:
    """`file: cause (ERRNO)`, e.g. `/store/x.parquet: Read-only file system (EROFS)`."""
    code = errno.errorcode.get(error.errno, str(error.errno))
    cause = f"{error.strerror or os.strerror(error.errno)} ({code})"
    files = [str(name) for name in (error.filename, error.filename2) if name is not None]
    return f"{' -> '.join(files)}: {cause}" if files else cause


def _is_server_start_failure(error: Exception) -> bool:
    """Prefect's RuntimeError when the temporary server never answered its health check."""
    message = "Timed out while attempting to connect to ephemeral Prefect API server"
    return isinstance(error, RuntimeError) and str(error).startswith(message)


def _server_start_hint() -> str:
    """What failed and the two ways out, on one line."""
    waited = os.environ.get(SERVER_STARTUP_TIMEOUT, "?")
    return (
        f"the temporary Prefect server did not start within {waited} s (a busy machine?): "
        f"raise {SERVER_STARTUP_TIMEOUT}, or start a server with `make server` and set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api"
    )


def _is_user_facing(error: Exception) -> bool:
    """Errors whose message says all a user needs (bad data, missing model): no traceback."""
    from tasks.backtest import BacktestError
    from tasks.ingest import IngestError
    from tasks.normalize import InsufficientDataError
    from tasks.predict import MissingFutureCovariatesError, NoChampionError, PublishGuardError
    from tasks.runtime import RunDateError
    from tasks.storage import ArtifactError
    from tasks.validate import DataValidationError

    return isinstance(
        error,
        IngestError
        | DataValidationError
        | InsufficientDataError
        | MissingFutureCovariatesError
        | NoChampionError
        | PublishGuardError
        | ArtifactError
        | BacktestError
        | RunDateError,
    )


if __name__ == "__main__":
    sys.exit(main())
