"""Hypothesis strategies for hostile nightly source files (issue 10's property test).

A `Night` is what an upstream extract might deliver for one forecast night: a few series of the
small test source's schema (series_id, timestamp, target, Cubs_Home) with NaN, infinities, huge
values, exact and conflicting duplicates, gaps, off-grid stamps, unsorted rows, stale and short
series, hostile ids, and timestamps typed or as text in one zone, the source's own DST offsets or
mixed zones; written as Parquet or CSV. `write_night` puts it in a real file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from tests.support import LOOK_BACK, SERIES

TIMEZONE = "America/Chicago"
"""`small_config`'s source.timezone: naive stamps are read as wall times there."""

UNKNOWN_IDS = ["Belmont", "S_1", "x.y-z", "7", "Austin2"]
"""Plain ids the champion never saw (skipped by the LSTM, forecast by the baseline)."""

HOSTILE_IDS = [
    "",
    " ",
    "Austin ",
    " Austin",
    "austin",
    "..",
    "../x",
    "a/b",
    "/etc/passwd",
    "a\\b",
    "C:\\x",
    "x" * 300,
    "nul\x00id",
    "a\nb",
    "a,b",
    '"q"',
    "tab\tid",
    "Ünïcødé",
    "日本駅",
    "\u202eevil",
    "🚇",
    "-lead",
    ".hidden",
    "_u",
    "nan",
    "None",
    "NULL",
    "7.0",
]
"""Ids an operator or a broken extract could deliver: empty, padded, path-like, control
characters, non-ASCII, very long, spelled like a null."""

SPECIAL_VALUES = [
    math.nan,
    math.inf,
    -math.inf,
    1e300,
    -1e300,
    1e39,
    -1e39,
    1.7976931348623157e308,
    5e-324,
    0.0,
    -0.0,
]
"""Values that break arithmetic: non-finite, overflowing float32 (1e39) or float64 sums
(1e300), the largest and smallest doubles, signed zero."""

LEVELS = [1.5, 13.6, 2.3, 0.0, -5.0, 1000.0, 1e6]
HUGE_LEVELS = [1e39, -1e39, 1e300, -1e300]
"""A whole series at a level no training series had (a unit error, a corrupt extract): not
absurd against its own history, but beyond float32 once scaled by the champion's scaler."""
TIME_STYLES = [
    "typed_naive",
    "typed_utc",
    "text_date",
    "text_utc",
    "text_own_offsets",
    "text_mixed",
]
STARTS = ["2016-03-01", "2016-07-01", "2016-10-20"]
"""First days: around the spring and autumn daylight-saving changes of TIMEZONE, and a summer."""

SPAN = 3 * LOOK_BACK + 6
"""Days from the night's first day to its last observed day."""


@dataclass(frozen=True)
class SeriesSpec:
    """One series: its id, where it ends (days before the last day) and its damage."""

    series_id: str | int
    length: int
    ends_before: int
    level: float
    seed: int
    dropped: tuple[int, ...]
    specials: tuple[tuple[int, float], ...]
    covariate_specials: tuple[tuple[int, float], ...]
    duplicates: tuple[tuple[int, bool], ...]
    off_grid: tuple[int, ...]
    blanks: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Night:
    """One night's source file: its series, format, timestamp style, row order and run date."""

    series: tuple[SeriesSpec, ...]
    file_format: str
    time_style: str
    start: str
    shuffle_seed: int | None
    as_of_shift: int

    @property
    def last_day(self) -> pd.Timestamp:
        return pd.Timestamp(self.start) + pd.Timedelta(days=SPAN)

    @property
    def as_of(self) -> str:
        """The run date: the day after the last observed day, moved by `as_of_shift` days."""
        return (self.last_day + pd.Timedelta(days=1 + self.as_of_shift)).strftime("%Y-%m-%d")


def chance(draw: st.DrawFn, one_in: int) -> bool:
    """True once in about `one_in` draws. Hypothesis favours the ends of an integer range (its
    shrink target and boundaries), so the rare outcome is a window in the middle of 0..999."""
    return 400 <= draw(st.integers(0, 999)) < 400 + 1000 // one_in


def sometimes(draw: st.DrawFn, strategy: st.SearchStrategy, default: object, one_in: int):
    """A draw from `strategy` once in about `one_in` draws, else `default`: most nights are
    mostly clean, so that validation passes often enough for the forecast to be exercised."""
    return draw(strategy) if chance(draw, one_in) else default


def damage(length: int, values: st.SearchStrategy, most: int) -> st.SearchStrategy[tuple]:
    """Up to `most` (position, value) pairs inside a series of `length` rows."""
    if length == 0:
        return st.just(())
    pairs = st.tuples(st.integers(0, length - 1), values)
    return st.lists(pairs, min_size=1, max_size=most).map(tuple)


@st.composite
def series_specs(draw: st.DrawFn, ids: st.SearchStrategy[str | int]) -> SeriesSpec:
    short = chance(draw, 5)
    length = draw(st.integers(0, LOOK_BACK) if short else st.integers(LOOK_BACK, 3 * LOOK_BACK))
    specials = damage(length, st.sampled_from(SPECIAL_VALUES), 3)
    return SeriesSpec(
        series_id=draw(ids),
        length=length,
        ends_before=sometimes(draw, st.integers(1, 6), 0, 4),
        level=sometimes(draw, st.sampled_from(HUGE_LEVELS), None, 15)
        or draw(st.sampled_from(LEVELS)),
        seed=draw(st.integers(0, 2**16)),
        dropped=tuple(at for at, _ in sometimes(draw, damage(length, st.none(), 6), (), 4)),
        specials=sometimes(draw, specials, (), 4),
        covariate_specials=sometimes(
            draw, damage(length, st.sampled_from(SPECIAL_VALUES), 1), (), 10
        ),
        duplicates=sometimes(draw, damage(length, st.booleans(), 3), (), 12),
        off_grid=tuple(at for at, _ in sometimes(draw, damage(length, st.none(), 1), (), 40)),
        blanks=sometimes(draw, damage(length, st.sampled_from(["series_id", "local"]), 1), (), 25),
    )


def series_ids() -> st.SearchStrategy[str | int]:
    """Mostly the champion's own series, then unknown ids, hostile ids and arbitrary text."""
    return st.integers(0, 99).flatmap(
        lambda pick: (
            st.sampled_from(HOSTILE_IDS)
            if 40 <= pick < 48
            else st.text(max_size=8)
            if 48 <= pick < 54
            else st.sampled_from(UNKNOWN_IDS)
            if 54 <= pick < 70
            else st.sampled_from(SERIES)
        )
    )


@st.composite
def nights(draw: st.DrawFn) -> Night:
    """A night's source: 0 to 5 series, now and then under integer ids."""
    ids = st.integers(-3, 99) if chance(draw, 20) else series_ids()
    file_format = draw(st.sampled_from(["parquet", "csv"]))
    styles = TIME_STYLES if file_format == "parquet" else TIME_STYLES[2:]
    if chance(draw, 30):  # an empty file: a header, no rows
        series = []
    elif chance(draw, 30):  # ids may repeat: two series' rows collide under one id
        series = draw(st.lists(series_specs(ids), min_size=2, max_size=3))
    else:
        series = draw(
            st.lists(
                series_specs(ids), min_size=1, max_size=5, unique_by=lambda s: str(s.series_id)
            )
        )
    return Night(
        series=tuple(series),
        file_format=file_format,
        time_style="text_mixed" if chance(draw, 12) else draw(st.sampled_from(styles[:-1])),
        start=draw(st.sampled_from(STARTS)),
        shuffle_seed=draw(st.none() | st.integers(0, 2**16)),
        # now and then a run date inside or before the data: a truncated feed
        as_of_shift=sometimes(draw, st.integers(-3, 2), 0, 4)
        or sometimes(draw, st.integers(-60, -4), 0, 15),
    )


# -- rendering ---------------------------------------------------------------------------------
def series_rows(spec: SeriesSpec, night: Night) -> pd.DataFrame:
    """One series' rows: local midnights, values around its level, then its damage applied."""
    rng = np.random.default_rng(spec.seed)
    last = night.last_day - pd.Timedelta(days=spec.ends_before)
    days = pd.date_range(end=last, periods=spec.length, freq="D")
    target = spec.level + rng.normal(0, abs(spec.level) * 0.1 + 0.1, spec.length)
    cubs = rng.integers(0, 2, spec.length).astype("float64")
    for at, value in spec.specials:
        target[at] = value
    for at, value in spec.covariate_specials:
        cubs[at] = value
    keep = np.ones(spec.length, dtype=bool)
    keep[list(spec.dropped)] = False
    rows = pd.DataFrame(
        {"series_id": spec.series_id, "local": days, "target": target, "Cubs_Home": cubs}
    )
    extra = [
        rows.iloc[[at]].assign(target=rows["target"].iat[at] + (0 if exact else 1.0))
        for at, exact in spec.duplicates
    ]
    extra += [
        rows.iloc[[at]].assign(local=rows["local"].iat[at] + pd.Timedelta(hours=12))
        for at in spec.off_grid
    ]
    rows = pd.concat([rows[keep], *extra], ignore_index=True).astype({"series_id": "object"})
    for at, column in spec.blanks:
        rows.loc[min(at, len(rows) - 1), column] = None  # a missing id or timestamp
    return rows


def night_rows(night: Night) -> pd.DataFrame:
    """Every series' rows, in series order or shuffled; `local` holds naive local wall times."""
    parts = [series_rows(spec, night) for spec in night.series]
    columns = {
        "series_id": "object",
        "local": "datetime64[us]",
        "target": "float64",
        "Cubs_Home": "float64",
    }
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))
    rows = rows.astype(columns)
    if night.shuffle_seed is not None:
        rows = rows.sample(frac=1.0, random_state=night.shuffle_seed).reset_index(drop=True)
    return rows


def iso(stamp: pd.Timestamp) -> str | None:
    return None if pd.isna(stamp) else stamp.isoformat()


def render_times(local: pd.Series, style: str, seed: int) -> pd.Series:
    """The timestamp column as `style` writes it (typed or text; see TIME_STYLES)."""
    aware = local.dt.tz_localize(TIMEZONE, ambiguous=True, nonexistent="shift_forward")
    if style == "typed_naive":
        return local
    if style == "typed_utc":
        return aware.dt.tz_convert("UTC")
    if style == "text_date":
        return local.dt.strftime("%Y-%m-%d %H:%M:%S").str.replace(" 00:00:00", "", regex=False)
    if style == "text_utc":
        return aware.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    own = pd.Series([iso(stamp) for stamp in aware], index=local.index, dtype="object")
    if style == "text_own_offsets":
        return own
    # text_mixed: each row naive, in the source's own offset, or at a foreign +09:00
    pick = np.random.default_rng(seed).integers(0, 3, len(local))
    naive = local.dt.strftime("%Y-%m-%dT%H:%M:%S")
    tokyo = pd.Series(
        [iso(stamp) for stamp in aware.dt.tz_convert("Asia/Tokyo")], index=local.index
    )
    return own.where(pick == 0, naive.where(pick == 1, tokyo)).astype("object")


def write_night(night: Night, folder: Path) -> Path:
    """The night's rows as one real Parquet or CSV file under `folder`."""
    rows = night_rows(night)
    frame = pd.DataFrame(
        {
            "series_id": rows["series_id"] if len(rows) else pd.Series([], dtype="object"),
            "timestamp": render_times(rows["local"], night.time_style, night.shuffle_seed or 0),
            "target": rows["target"],
            "Cubs_Home": rows["Cubs_Home"],
        }
    )
    present = frame["series_id"].dropna()
    integers = len(present) and present.map(type).eq(int).all()
    frame["series_id"] = frame["series_id"].astype("Int64" if integers else "str")
    path = folder / f"night.{night.file_format}"
    if night.file_format == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path
