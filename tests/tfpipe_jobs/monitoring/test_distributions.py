"""The warehouse's summaries equal the same numbers computed in numpy; the distances behave."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfpipe_jobs.monitoring import distributions as dist
from tfpipe_operators.warehouse import open_warehouse

SQL = "SELECT x, c FROM t"


@pytest.fixture
def warehouse(tmp_path: Path):  # type: ignore[no-untyped-def]
    import duckdb

    rng = np.random.default_rng(3)
    x = rng.normal(10, 2, 5000)
    c = rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2]).astype(object)
    x[:100] = np.nan
    c[100:150] = None
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (x DOUBLE, c VARCHAR)")
        con.executemany(
            "INSERT INTO t VALUES (?, ?)", [(None if np.isnan(a) else float(a), b) for a, b in zip(x, c, strict=True)]
        )
    return open_warehouse(f"duckdb://{path}"), x, c


def test_bucket_and_value_counts_match_numpy(warehouse) -> None:
    wh, x, c = warehouse
    quantiles = wh.table(dist.quantiles_sql(SQL, ["x"], 10), {}).to_pylist()[0]["x"]
    edges = dist.inner_edges(quantiles)
    assert len(edges) == 9 and edges == sorted(edges)
    text, params = dist.bucket_counts_sql(SQL, {"x": {"own": edges}})
    counts = dist.counts_from_row(wh.table(text, params).to_pylist()[0], "x", "own", edges)
    valued = x[~np.isnan(x)]
    expected = np.bincount(np.searchsorted(np.asarray(edges), valued, side="left"), minlength=10)
    assert counts.tolist() == [*expected.tolist(), 100]  # NULLs are the last bucket
    assert all(350 < n < 650 for n in counts[:-1])  # about a tenth of 4900 each
    values = dist.counts_from_rows(wh.table(dist.value_counts_sql(SQL, ["c"]), {}).to_pylist(), ["c"])["c"]
    assert values[dist.NULL_VALUE] == 50 and sum(values.values()) == 5000
    assert values["a"] == int((c == "a").sum())


def test_distances() -> None:
    same = np.array([10, 20, 30, 0])
    assert dist.psi(same, same) == 0.0
    assert dist.psi(np.array([0, 0, 60, 0]), same) > 1.0
    d = dist.linf({"a": 50, "b": 50}, {"a": 80, "b": 20}, 100)
    assert d.measure == "linf" and d.value == pytest.approx(0.3)
    assert d.detail == "value 'a': 0.5000 of the rows vs 0.8000"
    # a value the reference did not keep counts as share 0 there
    assert dist.linf({"a": 90, "new": 10}, {"a": 100}, 100).value == pytest.approx(0.1)
