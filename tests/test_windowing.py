"""Windowing is exact: the vectorized path equals a plain loop, and no window crosses a boundary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_model.windowing import (
    WindowSpec,
    gather_windows,
    iter_batches,
    make_windows,
    run_ids,
    segment_bounds,
    split_window_starts,
    window_starts,
)

SPECS = [
    WindowSpec(look_back=1, horizon=1, stride=1),
    WindowSpec(look_back=4, horizon=2, stride=1),
    WindowSpec(look_back=5, horizon=3, stride=2),
    WindowSpec(look_back=3, horizon=4, stride=3),
    WindowSpec(look_back=2, horizon=1, stride=7),
]
SPLITS = np.array(["train", "validation", "test"])


def random_panel(seed: int, features: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values (rows, features), series ids and chronological splits of random-length series."""
    rng = np.random.default_rng(seed)
    n_series = int(rng.integers(1, 9))
    lengths = rng.integers(0, 45, size=n_series)  # 0 and lengths shorter than a window included
    series, splits = [], []
    for number, length in enumerate(lengths):
        cuts = np.sort(rng.integers(0, length + 1, size=2))
        series += [f"s{number}"] * int(length)
        splits += [SPLITS[0]] * int(cuts[0]) + [SPLITS[1]] * int(cuts[1] - cuts[0])
        splits += [SPLITS[2]] * int(length - cuts[1])
    values = rng.standard_normal((len(series), features))
    return values, np.array(series, dtype=object), np.array(splits, dtype=object)


def reference_windows(
    values: np.ndarray,
    series: np.ndarray,
    splits: np.ndarray,
    spec: WindowSpec,
    target_index: int,
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The obvious loop: walk each (series, split) run and cut windows one by one."""
    starts: list[int] = []
    inputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    run_start = 0
    for end in range(1, len(values) + 1):
        run_over = end == len(values) or (
            series[end] != series[run_start] or splits[end] != splits[run_start]
        )
        if not run_over:
            continue
        first = run_start
        while first + spec.look_back + spec.horizon <= end:
            starts.append(first)
            inputs.append(values[first : first + spec.look_back])
            targets.append(values[first + spec.look_back : first + spec.length, target_index])
            first += spec.stride
        run_start = end
    features = values.shape[1]
    x = np.array(inputs).reshape(-1, spec.look_back, features)
    y = np.array(targets).reshape(-1, spec.horizon)
    return starts, x, y


def reference_labelled_windows(
    series: np.ndarray, splits: np.ndarray, spec: WindowSpec, unscorable: np.ndarray
) -> tuple[list[int], list[str]]:
    """The rule spelled out per window: every window of a series, kept by its targets' split.

    Training windows lie wholly in train rows; a validation or test window has every target
    in that split (inputs from any earlier rows of the series) and no unscorable target.
    """
    starts, labels = [], []
    first = 0
    while first < len(series):
        last = first
        while last < len(series) and series[last] == series[first]:
            last += 1
        start = first
        while start + spec.length <= last:
            window = list(splits[start : start + spec.length])
            targets = window[spec.look_back :]
            if set(window) == {"train"}:
                starts.append(start)
                labels.append("train")
            elif (
                len(set(targets)) == 1
                and targets[0] != "train"
                and not unscorable[start + spec.look_back : start + spec.length].any()
            ):
                starts.append(start)
                labels.append(targets[0])
            start += spec.stride
        first = last
    return starts, labels


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("seed", range(12))
def test_labelled_windows_match_the_rule_spelled_out(seed: int, spec: WindowSpec) -> None:
    _, series, splits = random_panel(seed)
    unscorable = np.random.default_rng(seed).random(len(series)) < 0.05
    codes = pd.Categorical(splits, categories=SPLITS).codes
    starts, split_codes = split_window_starts(series, codes, spec, unscorable)
    expected_starts, expected_labels = reference_labelled_windows(series, splits, spec, unscorable)
    assert starts.tolist() == expected_starts
    assert SPLITS[split_codes].tolist() == expected_labels


def test_evaluation_windows_take_inputs_from_earlier_splits() -> None:
    # 6 train rows then 4 validation rows: validation windows start before the cutoff.
    series = np.array(["a"] * 10, dtype=object)
    codes = np.array([0] * 6 + [1] * 4)
    spec = WindowSpec(look_back=3, horizon=2)
    starts, split_codes = split_window_starts(series, codes, spec)
    assert starts.tolist() == [0, 1, 3, 4, 5]
    assert split_codes.tolist() == [0, 0, 1, 1, 1]
    # An imputed target is never scored; an imputed input is fine.
    imputed = np.zeros(10, dtype=bool)
    imputed[7] = True
    starts, _ = split_window_starts(series, codes, spec, imputed)
    assert starts.tolist() == [0, 1, 5]
    imputed[:] = False
    imputed[4] = True  # an input of the validation windows
    assert split_window_starts(series, codes, spec, imputed)[0].tolist() == [0, 1, 3, 4, 5]


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_loop(seed: int, spec: WindowSpec) -> None:
    values, series, splits = random_panel(seed)
    target_index = seed % values.shape[1]
    expected_starts, expected_x, expected_y = reference_windows(
        values, series, splits, spec, target_index
    )
    starts = window_starts(run_ids(series, splits), spec)
    x, y = gather_windows(values, starts, spec, target_index)
    assert starts.dtype == np.int64
    assert starts.tolist() == expected_starts
    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_array_equal(y, expected_y)
    assert x.flags.c_contiguous and y.flags.c_contiguous
    assert x.dtype == values.dtype and y.dtype == values.dtype


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("seed", range(12))
def test_no_window_crosses_a_series_or_split_boundary(seed: int, spec: WindowSpec) -> None:
    _, series, splits = random_panel(seed)
    starts = window_starts(run_ids(series, splits), spec)
    rows = starts[:, None] + np.arange(spec.length)
    assert (rows < len(series)).all()
    assert (series[rows] == series[starts][:, None]).all()
    assert (splits[rows] == splits[starts][:, None]).all()


def test_windows_stay_inside_each_split_without_a_split_key_they_would_cross() -> None:
    series = np.array(["a"] * 10, dtype=object)
    splits = np.array(["train"] * 6 + ["validation"] * 4, dtype=object)
    spec = WindowSpec(look_back=3, horizon=1)
    assert window_starts(run_ids(series, splits), spec).tolist() == [0, 1, 2, 6]
    assert window_starts(run_ids(series), spec).tolist() == list(range(7))


def test_stride_larger_than_the_series_gives_one_window_per_long_enough_run() -> None:
    series = np.array(["a"] * 10 + ["b"] * 4 + ["c"] * 5, dtype=object)
    spec = WindowSpec(look_back=3, horizon=2, stride=100)
    assert window_starts(run_ids(series), spec).tolist() == [0, 14]


def test_run_exactly_one_window_long_and_one_row_short() -> None:
    spec = WindowSpec(look_back=3, horizon=2)
    assert window_starts(np.zeros(5, np.int64), spec).tolist() == [0]
    assert window_starts(np.zeros(4, np.int64), spec).tolist() == []


def test_series_shorter_than_a_window_contribute_nothing() -> None:
    values = np.arange(12.0).reshape(6, 2)
    series = np.array(["a", "a", "b", "b", "b", "b"], dtype=object)
    spec = WindowSpec(look_back=2, horizon=1)
    starts = window_starts(run_ids(series), spec)
    assert starts.tolist() == [2, 3]
    x, y = gather_windows(values, starts, spec)
    np.testing.assert_array_equal(x[0], values[2:4])
    np.testing.assert_array_equal(y[:, 0], values[[4, 5], 0])


def test_empty_input() -> None:
    spec = WindowSpec(look_back=4, horizon=2)
    starts = window_starts(np.array([], dtype=object), spec)
    assert starts.shape == (0,) and starts.dtype == np.int64
    x, y = gather_windows(np.zeros((0, 3), np.float32), starts, spec)
    assert x.shape == (0, 4, 3) and y.shape == (0, 2)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert run_ids(np.array([])).shape == (0,)
    assert [a.tolist() for a in segment_bounds(np.array([]))] == [[], []]
    assert list(iter_batches(np.zeros((0, 3)), starts, spec, batch_size=8)) == []


def test_gather_refuses_starts_outside_the_rows() -> None:
    values = np.zeros((10, 2))
    spec = WindowSpec(look_back=3, horizon=2)
    gather_windows(values, np.array([0, 5]), spec)  # the last valid start is 10 - 5 = 5
    for bad in ([-1], [6]):
        with pytest.raises(IndexError, match="window starts must lie in"):
            gather_windows(values, np.array(bad), spec)


def test_gather_accepts_non_contiguous_values() -> None:
    values = np.asfortranarray(np.random.default_rng(0).standard_normal((30, 3)))
    spec = WindowSpec(look_back=4, horizon=3)
    starts = np.array([0, 7, 23])
    x, y = gather_windows(values, starts, spec, target_index=2)
    np.testing.assert_array_equal(x[1], values[7:11])
    np.testing.assert_array_equal(y[2], values[27:30, 2])


def test_run_ids_keep_a_reappearing_series_separate() -> None:
    ids = run_ids(np.array(["a", "a", "b", "a"], dtype=object), np.array([1, 1, 1, 1]))
    assert ids.tolist() == [0, 0, 1, 2]
    with pytest.raises(ValueError, match="same length"):
        run_ids(np.zeros(3), np.zeros(4))


def test_window_spec_rejects_non_positive_sizes() -> None:
    for bad in ({"look_back": 0, "horizon": 1}, {"look_back": 1, "horizon": 0}):
        with pytest.raises(ValueError):
            WindowSpec(**bad)
    with pytest.raises(ValueError):
        WindowSpec(look_back=1, horizon=1, stride=0)


def test_iter_batches_covers_every_window_in_float32() -> None:
    values, series, splits = random_panel(3)
    spec = WindowSpec(look_back=3, horizon=2)
    starts = window_starts(run_ids(series, splits), spec)
    expected_x, expected_y = gather_windows(values.astype(np.float32), starts, spec)
    batches = list(iter_batches(values, starts, spec, batch_size=7))
    assert all(len(x) <= 7 and x.dtype == np.float32 for x, _ in batches)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), expected_x)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), expected_y)


def test_iter_batches_shuffle_is_a_seeded_permutation() -> None:
    values = np.arange(200, dtype=np.float32).reshape(100, 2)
    spec = WindowSpec(look_back=2, horizon=1)
    starts = np.arange(0, 97)

    def first_inputs(seed: int) -> list[float]:
        batches = iter_batches(values, starts, spec, batch_size=10, shuffle=True, seed=seed)
        return [float(v) for x, _ in batches for v in x[:, 0, 0]]

    order = first_inputs(1)
    assert order == first_inputs(1)
    assert order != first_inputs(2)
    assert sorted(order) == [float(values[s, 0]) for s in starts]
    with pytest.raises(ValueError):
        next(iter_batches(values, starts, spec, batch_size=0))


def test_make_windows_sorts_and_respects_splits() -> None:
    values, series, splits = random_panel(5, features=2)
    spec = WindowSpec(look_back=3, horizon=2, stride=2)
    frame = pd.DataFrame(
        {
            "unique_id": series,
            "ds": np.concatenate([np.arange((series == s).sum()) for s in pd.unique(series)]),
            "split": splits,
            "y": values[:, 1],
            "x": values[:, 0],
        }
    )
    shuffled = frame.sample(frac=1.0, random_state=0)
    windows = make_windows(shuffled, spec, ["x", "y"], split_column="split")
    no_flags = np.zeros(len(series), dtype=bool)
    expected_starts, expected_labels = reference_labelled_windows(series, splits, spec, no_flags)
    assert windows.starts.tolist() == expected_starts
    assert windows.splits.tolist() == expected_labels
    expected_x, expected_y = gather_windows(
        values[:, [0, 1]], np.array(expected_starts, dtype=np.int64), spec, target_index=1
    )
    np.testing.assert_array_equal(windows.inputs, expected_x.astype(np.float32))
    np.testing.assert_array_equal(windows.targets, expected_y.astype(np.float32))
    assert windows.unique_ids.tolist() == series[expected_starts].tolist()
    assert len(windows) == len(expected_starts)
    train = windows.select("train")
    assert set(train.splits.tolist()) == {"train"}
    assert len(train) == expected_labels.count("train")
    without_splits = make_windows(frame, spec, ["y", "x"])
    assert without_splits.splits is None
    with pytest.raises(ValueError):
        without_splits.select("train")
    with pytest.raises(ValueError, match="target column"):
        make_windows(frame, spec, ["x"])
