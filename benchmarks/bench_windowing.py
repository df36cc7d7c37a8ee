"""Windowing throughput: the seed's Python loop against index windows, and against memcpy.

Builds series x steps rows of `features` float32 values (default 1,000 x 1,000 x 3), then times,
best of `--repeats`, producing every window's inputs (n, look_back, features) and targets
(n, horizon), look_back 64, horizon 24, stride 1:

(a) the seed tutorial's loop, per series: `for i in range(...): X.append(data[i:i+look_back])`,
    the targets likewise, then `np.array(X)`. (The seed's range stopped at
    `len(data) - look_back - 1`, dropping its last window and, with a horizon, leaving the last
    targets short; the range here is the one that yields exactly the windows (b) yields.)
(b) the pipeline's path: `window_starts` over the series ids + one `gather_windows` call.
(c) a plain numpy copy of as many bytes as (b) outputs, into a buffer already in memory: the
    memory-bandwidth ceiling. (b) also pays for allocating and first touching (page-faulting)
    its output, which alone halves a copy's rate here, so (b) lands well under (c).
(d) the training path: the same windows streamed as shuffled batches of 1,024 by
    `iter_batches`; a batch stays in cache and reuses freed memory, so no page faults.

Prints windows/s of (a), (b) and (d), the ratio b/a, and the bytes/s of (b) and (d) as fractions
of (c)'s. Asserts that (b)'s output equals (a)'s for every window. `--series/--steps` make
smaller runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from lstm_model.windowing import (
    WindowSpec,
    gather_windows,
    iter_batches,
    run_ids,
    window_starts,
)

SPEC = WindowSpec(look_back=64, horizon=24, stride=1)
STREAM_BATCH = 1_024


def seed_loop(data: np.ndarray, lengths: list[int], spec: WindowSpec) -> tuple[np.ndarray, ...]:
    """(a) The tutorial's per-series loop, kept as written apart from the window count."""
    x_list, y_list = [], []
    first = 0
    for length in lengths:
        series = data[first : first + length]
        for i in range(len(series) - spec.look_back - spec.horizon + 1):
            x_list.append(series[i : i + spec.look_back])
            y_list.append(series[i + spec.look_back : i + spec.look_back + spec.horizon, 0])
        first += length
    return np.array(x_list), np.array(y_list)


def index_windows(data: np.ndarray, series_ids: np.ndarray, spec: WindowSpec) -> tuple:
    """(b) What the window step plus a full-split gather do."""
    starts = window_starts(run_ids(series_ids), spec)
    return gather_windows(data, starts, spec)


def stream_batches(data: np.ndarray, starts: np.ndarray, spec: WindowSpec) -> int:
    """(d) Every window once, in shuffled batches as an epoch sees them; returns bytes made."""
    made = 0
    for inputs, targets in iter_batches(data, starts, spec, STREAM_BATCH, shuffle=True, seed=0):
        made += inputs.nbytes + targets.nbytes
    return made


def copy_seconds(nbytes: int, repeats: int) -> float:
    """(c) Best time to copy `nbytes` between two buffers already in memory."""
    source = np.ones(nbytes, dtype=np.uint8)
    target = source.copy()  # written once here, so the timed copies take no page faults
    return best_of(repeats, lambda: np.copyto(target, source))[0]


def best_of(repeats: int, work: Callable[[], object]) -> tuple[float, object]:
    """Fastest wall time of `repeats` runs (the machine is shared: the minimum is the signal)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None  # free the previous output first so runs do not stack memory
        began = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - began)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1_000)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.series * args.steps, args.features), dtype=np.float32)
    lengths = [args.steps] * args.series
    series_ids = np.repeat(np.arange(args.series), args.steps)

    seconds_b, (x_b, y_b) = best_of(args.repeats, lambda: index_windows(data, series_ids, SPEC))
    windows = len(x_b)
    if windows == 0:
        raise SystemExit(f"--steps must be at least {SPEC.length} to make a window")
    seconds_a, (x_a, y_a) = best_of(args.repeats, lambda: seed_loop(data, lengths, SPEC))
    # Compare everything, not a sample: both outputs are in memory anyway.
    assert np.array_equal(x_a, x_b) and np.array_equal(y_a, y_b), "index windows differ"
    del x_a, y_a

    out_bytes = x_b.nbytes + y_b.nbytes
    del x_b, y_b
    seconds_c = copy_seconds(out_bytes, args.repeats)
    starts = window_starts(run_ids(series_ids), SPEC)
    seconds_d, streamed = best_of(args.repeats, lambda: stream_batches(data, starts, SPEC))
    assert streamed == out_bytes

    rate_a, rate_b, rate_d = windows / seconds_a, windows / seconds_b, windows / seconds_d
    print(
        f"{args.series:,} series x {args.steps:,} steps x {args.features} features, "
        f"look_back {SPEC.look_back}, horizon {SPEC.horizon}, stride {SPEC.stride}: "
        f"{windows:,} windows, {out_bytes / 1e9:.2f} GB of float32 output; best of {args.repeats}"
    )
    print(f"(a) seed Python loop      {seconds_a:8.3f} s  {rate_a:14,.0f} windows/s")
    print(f"(b) window_starts+gather  {seconds_b:8.3f} s  {rate_b:14,.0f} windows/s")
    print(f"(c) numpy copy, same size {seconds_c:8.3f} s  {out_bytes / seconds_c / 1e9:8.2f} GB/s")
    print(f"(d) shuffled batches {STREAM_BATCH:,} {seconds_d:6.3f} s  {rate_d:14,.0f} windows/s")
    print(f"speed-up b/a: {rate_b / rate_a:.1f}x (d/a: {rate_d / rate_a:.1f}x)")
    for name, seconds in (("b", seconds_b), ("d", seconds_d)):
        print(
            f"bandwidth of ({name}) {out_bytes / seconds / 1e9:5.2f} GB/s = "
            f"{seconds_c / seconds:.2f} of the plain copy (c)"
        )
    print("check: (b) output equals (a) output for all windows")


if __name__ == "__main__":
    main()
