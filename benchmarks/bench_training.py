"""Training speed and time-to-useful: the pipeline's default config against the seed's.

One seeded synthetic panel (default 200 series x 2,000 daily steps: level, trend, weekly and
yearly seasonality, AR(1) noise), split per series 70/15/15 in time, z-scored per series on
its training rows. Windows: look_back 56, horizon 14, stride 1, one input feature (the target).
Both configs train LSTM(64) -> Dense(14) from the same seeded weights through the pipeline's
own `WindowDataset` and `fit`:

- default: tanh, batch 256, Adam (learning rate `--learning-rate`);
- seed:    relu, batch 1, Adam 1e-3 (the tutorial's settings).

Every `--eval-every` seconds of training time the callback scores the model on all validation
windows and compares its MASE (per-series seasonal-naive scale, season 7, fitted in-sample on
the training rows) with the seasonal-naive forecast's MASE on the same windows. The clock
counts training only: evaluations and Keras's end-of-epoch validation are paused out of it.
A run stops at its budget (`--default-budget`, `--seed-budget`), or once it has beaten
seasonal naive and trained `--min-seconds` (for a steady throughput figure).

Prints, per config: training samples/s (first batch, which traces the graph, left out), the
training time to beat seasonal naive ("not reached in N s" otherwise), the best validation
MASE, and the throughput ratio default/seed. `--series/--steps` make smaller runs.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lstm_model.baselines import naive_forecast, seasonal_naive_forecast  # noqa: E402
from lstm_model.metrics import OVERALL, metrics_table, seasonal_naive_scales  # noqa: E402
from lstm_model.models import ModelSpec, build_model  # noqa: E402
from lstm_model.windowing import WindowSpec, gather_windows, window_starts  # noqa: E402

WINDOW = WindowSpec(look_back=56, horizon=14)
SEASON = 7
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Panel:
    """Z-scored values (rows, 1), window starts per split, and what scoring needs."""

    values: np.ndarray
    starts: dict[str, np.ndarray]
    window_ids: dict[str, np.ndarray]
    scales: pd.Series


def synthetic_series(n_series: int, steps: int, seed: int) -> np.ndarray:
    """(n_series, steps) daily values: level, trend, weekly and yearly cycles, AR(1) noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :]
    level = rng.uniform(20, 200, (n_series, 1))

    def share(low: float, high: float) -> np.ndarray:
        return level * rng.uniform(low, high, (n_series, 1))

    def phase() -> np.ndarray:
        return rng.uniform(0, 2 * np.pi, (n_series, 1))

    trend = share(-0.5, 1.0) * t / steps
    weekly = share(0.1, 0.3) * np.sin(2 * np.pi * t / 7 + phase())
    weekly += share(0.02, 0.1) * np.sin(4 * np.pi * t / 7 + phase())
    yearly = share(0.05, 0.3) * np.sin(2 * np.pi * t / 365.25 + phase())
    shocks = rng.normal(size=(n_series, steps)) * share(0.03, 0.08)
    noise = np.empty_like(shocks)
    noise[:, 0] = shocks[:, 0]
    for step in range(1, steps):  # AR(1), phi 0.4: a little short-term memory
        noise[:, step] = 0.4 * noise[:, step - 1] + shocks[:, step]
    return level + trend + weekly + yearly + noise


def make_panel(n_series: int, steps: int, seed: int) -> Panel:
    """Split each series 70/15/15 in time, z-score it on its training rows, index windows."""
    raw = synthetic_series(n_series, steps, seed)
    bounds = np.cumsum([0, int(0.7 * steps), int(0.15 * steps)])
    split_of_step = np.searchsorted(bounds[1:], np.arange(steps), side="right")
    train = raw[:, : bounds[1]]
    scaled = (raw - train.mean(axis=1, keepdims=True)) / train.std(axis=1, keepdims=True)
    values = scaled.reshape(-1, 1).astype(np.float32)
    series_of_row = np.repeat(np.arange(n_series), steps)
    split_of_row = np.tile(split_of_step, n_series)
    starts = window_starts(series_of_row * len(SPLITS) + split_of_row, WINDOW)
    split_of_start = split_of_row[starts]
    unique_id = np.array([f"s{k:03d}" for k in range(n_series)])
    train_rows = pd.DataFrame(
        {"unique_id": np.repeat(unique_id, bounds[1]), "y": scaled[:, : bounds[1]].ravel()}
    )
    return Panel(
        values=values,
        starts={name: starts[split_of_start == k] for k, name in enumerate(SPLITS)},
        window_ids={
            name: unique_id[series_of_row[starts[split_of_start == k]]]
            for k, name in enumerate(SPLITS)
        },
        scales=seasonal_naive_scales(train_rows, SEASON),
    )


class Scorer:
    """Validation MASE of a model, and of the baselines, on every validation window."""

    def __init__(self, panel: Panel) -> None:
        inputs, self.targets = gather_windows(panel.values, panel.starts["validation"], WINDOW)
        self.inputs = inputs
        self.ids = panel.window_ids["validation"]
        self.scales = panel.scales
        history = inputs[:, :, 0]
        self.baselines = self.mase(
            {
                "naive": naive_forecast(history, WINDOW.horizon),
                "seasonal_naive": seasonal_naive_forecast(history, WINDOW.horizon, SEASON),
            }
        )

    def mase(self, forecasts: dict[str, np.ndarray]) -> dict[str, float]:
        table = metrics_table(self.targets, forecasts, self.ids, self.scales)
        overall = table[table.unique_id == OVERALL].set_index("model")["mase"]
        return overall.to_dict()

    def model_mase(self, model) -> float:  # noqa: ANN001 - a keras.Model
        forecast = model.predict(self.inputs, batch_size=4096, verbose=0)
        return self.mase({"model": forecast})["model"]


@dataclass
class Run:
    name: str
    batch_size: int
    samples: int = 0
    train_seconds: float = 0.0
    first_batch_seconds: float = 0.0
    reached_at: float | None = None
    curve: list[tuple[float, int, float]] = field(default_factory=list)

    @property
    def samples_per_second(self) -> float:
        steady_samples = self.samples - self.batch_size
        steady_seconds = self.train_seconds - self.first_batch_seconds
        return steady_samples / steady_seconds if steady_seconds > 0 else float("nan")

    @property
    def best_mase(self) -> float:
        return min((mase for _, _, mase in self.curve), default=float("nan"))


def budget_callback(run: Run, scorer: Scorer, target: float, args: argparse.Namespace, budget):
    """A Keras callback: pausable training clock, periodic scoring, stop at budget/target."""
    import keras

    class Budget(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.mark = time.perf_counter()
            self.next_eval = getattr(self, "next_eval", args.eval_every)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            now = time.perf_counter()
            if run.samples == 0:
                run.first_batch_seconds = now - self.mark
            run.train_seconds += now - self.mark
            run.samples += run.batch_size
            if run.train_seconds >= self.next_eval or run.train_seconds >= budget:
                self.score()
            self.mark = time.perf_counter()  # evaluation time is not training time

        def score(self) -> None:
            self.next_eval = run.train_seconds + args.eval_every
            mase = scorer.model_mase(self.model)
            run.curve.append((run.train_seconds, run.samples, mase))
            if mase < target and run.reached_at is None:
                run.reached_at = run.train_seconds
            print(
                f"  {run.name:8s} {run.train_seconds:6.1f} s  {run.samples:>8d} samples  "
                f"val MASE {mase:.3f}",
                flush=True,
            )
            done = run.reached_at is not None and run.train_seconds >= args.min_seconds
            if done or run.train_seconds >= budget:
                self.model.stop_training = True

    return Budget()


def train_config(
    name: str,
    spec: ModelSpec,
    batch_size: int,
    budget: float,
    panel: Panel,
    scorer: Scorer,
    args: argparse.Namespace,
) -> Run:
    from lstm_model.training import WindowDataset, fit

    run = Run(name, batch_size)
    target = scorer.baselines["seasonal_naive"]
    model = build_model(spec, seed=args.seed)
    train = WindowDataset(
        panel.values, panel.starts["train"], WINDOW, batch_size, shuffle=True, seed=args.seed
    )
    validation = WindowDataset(panel.values, panel.starts["validation"], WINDOW, 4096)
    fit(
        model,
        train,
        validation,
        epochs=1_000,
        patience=1_000,
        seed=args.seed,
        callbacks=[budget_callback(run, scorer, target, args, budget)],
    )
    return run


def report(runs: list[Run], scorer: Scorer, args: argparse.Namespace, panel: Panel) -> None:
    budgets = {"default": args.default_budget, "seed": args.seed_budget}
    print()
    print(
        f"Validation windows: {len(scorer.targets):,}; training windows: "
        f"{len(panel.starts['train']):,}; MASE of naive {scorer.baselines['naive']:.3f}, "
        f"seasonal naive (season {SEASON}) {scorer.baselines['seasonal_naive']:.3f}; "
        f"scored every {args.eval_every:g} s of training"
    )
    print()
    header = f"{'config':10s} {'samples/s':>10s} {'beats seasonal naive after':>28s} {'best val MASE':>14s}"
    print(header)
    print("-" * len(header))
    for run in runs:
        reached = (
            f"{run.reached_at:.1f} s"
            if run.reached_at is not None
            else f"not reached in {budgets[run.name]:.0f} s"
        )
        print(f"{run.name:10s} {run.samples_per_second:10.0f} {reached:>28s} {run.best_mase:14.3f}")
    by_name = {run.name: run for run in runs}
    if {"default", "seed"} <= by_name.keys():
        ratio = by_name["default"].samples_per_second / by_name["seed"].samples_per_second
        print(f"\nThroughput ratio default / seed: {ratio:.1f}x")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed-batch-size", type=int, default=1)
    parser.add_argument("--seed-learning-rate", type=float, default=1e-3)
    parser.add_argument("--default-budget", type=float, default=120.0, help="training seconds")
    parser.add_argument("--seed-budget", type=float, default=120.0, help="training seconds")
    parser.add_argument("--eval-every", type=float, default=5.0, help="training seconds")
    parser.add_argument("--min-seconds", type=float, default=20.0, help="before stopping early")
    parser.add_argument("--only", choices=["default", "seed"], help="run one config")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    began = time.perf_counter()
    panel = make_panel(args.series, args.steps, args.seed)
    scorer = Scorer(panel)
    print(
        f"Panel {args.series} x {args.steps} built and scored in {time.perf_counter() - began:.1f} s"
    )
    common = {"look_back": WINDOW.look_back, "horizon": WINDOW.horizon, "units": (args.units,)}
    configs = {
        "default": (
            ModelSpec("univariate", **common, learning_rate=args.learning_rate),
            args.batch_size,
            args.default_budget,
        ),
        "seed": (
            ModelSpec(
                "univariate", **common, activation="relu", learning_rate=args.seed_learning_rate
            ),
            args.seed_batch_size,
            args.seed_budget,
        ),
    }
    runs = [
        train_config(name, spec, batch, budget, panel, scorer, args)
        for name, (spec, batch, budget) in configs.items()
        if args.only in (None, name)
    ]
    report(runs, scorer, args, panel)
    print(f"\nWall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
