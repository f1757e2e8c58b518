"""The monitoring's summaries (tfpipe_jobs/monitoring/distributions.py) run on the BigQuery stand-in.

The same rows go into bqemulator and into a DuckDB file; each summary query runs on both
through the product's warehouse interface, and the exact ones are checked against counts made
in Python. What this proves: the stand-in accepts the queries' shape (APPROX_QUANTILES,
COUNTIF, GROUPING SETS with GROUPING(), bound FLOAT64 parameters) and returns the rows the
readers expect. bqemulator runs DuckDB inside, so it does not prove BigQuery's own
APPROX_QUANTILES values, which are approximate there: only that they are ordered edges
within the data's range.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

pytestmark = pytest.mark.gcp_emulated

Client = Callable[..., dict[str, Any]]

ROWS = 240
EDGES = [3.0, 10.5, 20.0]  # a reference's inner edges, as drift and skew bind them


def sample() -> list[tuple[float | None, str | None]]:
    """(price, country) rows: a NULL price every 11th row, a NULL country every 7th."""
    countries = ["nl", "de", "fr", "nl", "nl", "be"]
    return [
        (None if i % 11 == 0 else round((i * 7) % 29 * 1.25, 2), None if i % 7 == 0 else countries[i % 6])
        for i in range(ROWS)
    ]


SUMMARIES = """
import datetime
import tempfile
from google.cloud import bigquery
from tfpipe_operators.warehouse import open_warehouse
from tfpipe_jobs.monitoring import distributions as dist

rows = [tuple(r) for r in PARAMS["rows"]]
client = bigquery.Client(project=PARAMS["project"])
dataset = f"{PARAMS['project']}.{PARAMS['dataset']}"
table = bigquery.Table(f"{dataset}.mon_events", schema=[
    bigquery.SchemaField("day", "DATE"),
    bigquery.SchemaField("price", "FLOAT64"),
    bigquery.SchemaField("country", "STRING"),
])
client.create_table(table)

def literal(value):
    return "NULL" if value is None else (f"'{value}'" if isinstance(value, str) else repr(value))

values = ", ".join(f"(DATE '2026-11-21', {literal(p)}, {literal(c)})" for p, c in rows)
client.query(f"INSERT INTO `{dataset}.mon_events` (day, price, country) VALUES {values}").result()

duck_file = tempfile.mktemp(suffix=".duckdb")
import duckdb
con = duckdb.connect(duck_file)
con.execute("CREATE TABLE mon_events (day DATE, price DOUBLE, country VARCHAR)")
con.executemany("INSERT INTO mon_events VALUES (DATE '2026-11-21', ?, ?)", rows)
con.close()

sql = "SELECT price, country FROM mon_events WHERE day = @ds"
params = {"ds": datetime.date(2026, 11, 21)}
out = {}
for name, url in (("bigquery", f"bigquery://{PARAMS['project']}/{PARAMS['dataset']}"), ("duckdb", f"duckdb://{duck_file}")):
    warehouse = open_warehouse(url)
    quantiles = warehouse.table(dist.quantiles_sql(sql, ["price"], 4), params).to_pylist()[0]
    text, bound = dist.bucket_counts_sql(sql, {"price": {"ref": PARAMS["edges"]}})
    row = warehouse.table(text, {**params, **bound}).to_pylist()[0]
    counts = dist.counts_from_row(row, "price", "ref", PARAMS["edges"])
    value_rows = warehouse.table(dist.value_counts_sql(sql, ["country"]), params).to_pylist()
    out[name] = {
        "quantiles": quantiles["price"],
        "rows": int(row["n"]),
        "histogram": [int(c) for c in counts],
        "values": dist.counts_from_rows(value_rows, ["country"])["country"],
    }
print(json.dumps(out))
"""


def test_drift_and_skew_summaries_run_on_the_bigquery_standin(client_process: Client, gcp_standins: Any) -> None:
    rows = sample()
    bq = gcp_standins.bigquery
    got = client_process(SUMMARIES, project=bq.project, dataset=bq.dataset, rows=rows, edges=EDGES)

    prices = [p for p, _ in rows if p is not None]
    expected_histogram = [
        sum(p <= EDGES[0] for p in prices),
        *(sum(lo < p <= hi for p in prices) for lo, hi in pairwise(EDGES)),
        sum(p > EDGES[-1] for p in prices),
        ROWS - len(prices),  # the NULLs, last
    ]
    expected_values = Counter("<NULL>" if c is None else c for _, c in rows)
    for backend in ("bigquery", "duckdb"):
        summary = got[backend]
        assert summary["rows"] == ROWS, backend
        assert summary["histogram"] == expected_histogram, backend
        assert summary["values"] == dict(expected_values), backend
        quantiles = summary["quantiles"]
        assert len(quantiles) == 5, f"{backend}: APPROX_QUANTILES(x, 4) gives min, 3 inner edges, max"
        assert quantiles == sorted(quantiles), backend
        assert quantiles[0] == min(prices) and quantiles[-1] == max(prices), backend
