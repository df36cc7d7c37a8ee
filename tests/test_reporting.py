"""What the CLI prints: the evaluation table with its quantile columns."""

from __future__ import annotations

import numpy as np

from flows.reporting import QUANTILE_LEGEND, metrics_text
from lstm_model.metrics import metrics_table


def test_metrics_text_shows_spl_and_coverage_and_marks_point_forecasters() -> None:
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    quantiles = np.stack([y - 1, y, y + 0.5], axis=2)
    quantiles[0, 0] = [-1.0, 0.2, 0.5]  # the first actual, 1, above its 0.9 quantile: 3/4
    metrics = metrics_table(
        y,
        {"lstm": y, "seasonal_naive": y + 1},
        np.array(["a", "b"]),
        {"a": 1.0, "b": 1.0},
        {"lstm": quantiles},
        (0.1, 0.5, 0.9),
    )
    lines = metrics_text(metrics).splitlines()
    assert lines[0].split() == ["model", "mae", "rmse", "smape", "mase", "spl", "coverage_80"]
    lstm = next(line.split() for line in lines if line.split()[0] == "lstm")
    naive = next(line.split() for line in lines if line.split()[0] == "seasonal_naive")
    assert lstm[-1] == "0.7500" and naive[-2:] == ["-", "-"]
    assert lines[-1] == QUANTILE_LEGEND
    # A point-only evaluation prints as before, without the legend.
    plain = metrics_text(metrics_table(y, {"lstm": y}, np.array(["a", "b"]), {"a": 1.0, "b": 1.0}))
    assert "spl" not in plain and QUANTILE_LEGEND not in plain
