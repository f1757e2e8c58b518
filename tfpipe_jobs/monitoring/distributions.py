"""Distributions of a query's columns, summarised in the warehouse, and the distances between two.

One module for every comparison of two days or two populations: the prediction gate's
score PSI, the day-over-day drift of the training features and the training/serving skew.

- A numeric column is a histogram over quantile buckets: inner edges (ascending, unique),
  one count per bucket (bucket i holds (edge[i-1], edge[i]]) and the NULLs as one bucket
  more. Its distance to a reference is the population stability index (PSI) over the
  reference's buckets.
- A categorical column is its value counts (NULL counted as the value `NULL_VALUE`); its
  distance is the L-infinity distance of the value frequencies (the largest change of one
  value's share of the rows).

The SQL is BigQuery Standard SQL over the query's rows (a subquery), one scan per summary
whatever the number of columns; values (the edges) are bound as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# Shares below this are raised to it before the PSI's logarithm: an empty bucket on one
# side would otherwise make the index infinite whatever else the day looks like.
PSI_FLOOR = 1e-4
NULL_VALUE = "<NULL>"  # how a NULL categorical value is named in counts and reports


def quote(name: str) -> str:
    return f"`{name}`"  # the warehouse runs BigQuery SQL (DuckDB transpiles it)


def body(sql: str) -> str:
    return sql.strip().rstrip(";")


def psi(new_counts: np.ndarray, ref_counts: np.ndarray) -> float:
    """Population stability index of two histograms over the same buckets."""
    new = np.maximum(new_counts / max(int(new_counts.sum()), 1), PSI_FLOOR)
    ref = np.maximum(ref_counts / max(int(ref_counts.sum()), 1), PSI_FLOOR)
    return float(np.sum((new - ref) * np.log(new / ref)))


def shares(counts: np.ndarray) -> str:
    total = max(int(counts.sum()), 1)
    return "[" + " ".join(f"{c / total:.3f}" for c in counts) + "]"


@dataclass(frozen=True)
class Distance:
    """How far one column's distribution is from a reference's, and where it moved most."""

    measure: str  # "psi" or "linf"
    value: float
    detail: str


def linf(now: Mapping[str, int], ref: Mapping[str, int], ref_rows: int) -> Distance:
    """L-infinity distance of value frequencies. `ref` may hold only the reference's most
    frequent values (`ref_rows` is all its rows): a value it lacks counts as share 0 there."""
    rows_now = max(sum(now.values()), 1)
    rows_ref = max(ref_rows, 1)
    worst, value = 0.0, None
    for v in set(now) | set(ref):
        change = abs(now.get(v, 0) / rows_now - ref.get(v, 0) / rows_ref)
        if change > worst or (change == worst and value is not None and v < value):
            worst, value = change, v
    if value is None:
        return Distance("linf", 0.0, "no values on either side")
    detail = f"value {value!r}: {now.get(value, 0) / rows_now:.4f} of the rows vs {ref.get(value, 0) / rows_ref:.4f}"
    return Distance("linf", worst, detail)


def histogram_psi(now: np.ndarray, ref: np.ndarray, buckets: int) -> Distance:
    """PSI of `now` (counted in the reference's buckets, NULLs last) vs the reference's counts."""
    return Distance(
        "psi",
        psi(now, ref),
        f"over the {buckets} quantile buckets of the reference and NULL: {shares(now)} of the rows vs {shares(ref)}",
    )


def quantiles_sql(sql: str, columns: list[str], buckets: int) -> str:
    """Each numeric column's approximate quantiles (`buckets` + 1 values, min to max)."""
    parts = [f"APPROX_QUANTILES(CAST({quote(c)} AS FLOAT64), {int(buckets)}) AS {c}" for c in columns]
    return "SELECT\n  " + ",\n  ".join(parts) + f"\nFROM (\n{body(sql)}\n) AS q"


def inner_edges(quantiles: list[Any] | None) -> list[float]:
    """Bucket boundaries from quantiles: the inner ones (the last is the maximum), unique."""
    values = [float(q) for q in (quantiles or []) if q is not None]
    return [float(e) for e in np.unique(np.asarray(values[1:-1], dtype=np.float64))]


def bucket_counts_sql(sql: str, edges: Mapping[str, Mapping[str, list[float]]]) -> tuple[str, dict[str, float]]:
    """Rows below each edge, per column and per named edge set, and each column's NULLs.

    `edges`: column -> {edge set name -> inner edges}. Returns the SQL and its parameters;
    `counts_from_row` reads the histograms back from the result's one row."""
    parts, params = ["COUNT(*) AS n"], {}
    for column, sets in edges.items():
        col = f"CAST({quote(column)} AS FLOAT64)"
        parts.append(f"COUNTIF({quote(column)} IS NULL) AS {column}__nulls")
        for name, values in sets.items():
            for i, edge in enumerate(values):
                param = f"{column}__{name}__e{i}"
                params[param] = float(edge)
                parts.append(f"COUNTIF({col} <= @{param}) AS {column}__{name}__le{i}")
    return "SELECT\n  " + ",\n  ".join(parts) + f"\nFROM (\n{body(sql)}\n) AS q", params


def counts_from_row(row: Mapping[str, Any], column: str, name: str, edges: list[float]) -> np.ndarray:
    """The histogram over `edges` (with NULLs last) from `bucket_counts_sql`'s row."""
    nulls = int(row[f"{column}__nulls"] or 0)
    valued = int(row["n"] or 0) - nulls
    cumulative = [0, *(int(row[f"{column}__{name}__le{i}"] or 0) for i in range(len(edges))), valued]
    return np.append(np.diff(np.asarray(cumulative, dtype=np.int64)), nulls)


def value_counts_sql(sql: str, columns: list[str]) -> str:
    """Every value's rows, per categorical column, in one scan (one grouping set per column)."""
    flags = [f"GROUPING({quote(c)}) AS {c}__g" for c in columns]
    # Aliased apart from the columns, so GROUP BY names the column whatever the engine resolves first.
    values = [f"CAST({quote(c)} AS STRING) AS {c}__v" for c in columns]
    sets = ", ".join(f"({quote(c)})" for c in columns)
    return (
        "SELECT\n  "
        + ",\n  ".join([*flags, *values, "COUNT(*) AS n"])
        + f"\nFROM (\n{body(sql)}\n) AS q\nGROUP BY GROUPING SETS ({sets})"
    )


def counts_from_rows(rows: list[dict[str, Any]], columns: list[str]) -> dict[str, dict[str, int]]:
    """`value_counts_sql`'s rows as column -> value -> rows (NULL as NULL_VALUE)."""
    out: dict[str, dict[str, int]] = {c: {} for c in columns}
    for row in rows:
        for c in columns:
            if int(row[f"{c}__g"]) == 0:  # this row is the grouping set of column c
                value = row[f"{c}__v"] if row[f"{c}__v"] is not None else NULL_VALUE
                out[c][str(value)] = out[c].get(str(value), 0) + int(row["n"])
                break
    return out
