"""The pipeline's warehouse, one interface for every step that touches it.

The sensor's hook, `validate`, the jobs (extract, statistics, scoring) and the score
table all open the warehouse here, from the profile's URL, and call the same methods:

- `duckdb:///path/to/warehouse.duckdb` (local profile; a bare path is read the same way)
- `bigquery://<project>/<dataset>` (gcp profile)

Importing this package imports no database client: DuckDB and google-cloud-bigquery are
imported when a query runs, so DAG parsing stays cheap.
"""

from __future__ import annotations

from tfpipe_operators.warehouse.base import (
    KNOWN_PARAMETERS,
    PartitionWrite,
    QueryCheck,
    Warehouse,
    WarehouseError,
    parameters,
)
from tfpipe_operators.warehouse.bigquery_backend import BigQueryWarehouse
from tfpipe_operators.warehouse.duckdb_backend import DuckDBWarehouse, to_duckdb

__all__ = [
    "KNOWN_PARAMETERS",
    "BigQueryWarehouse",
    "DuckDBWarehouse",
    "PartitionWrite",
    "QueryCheck",
    "Warehouse",
    "WarehouseError",
    "open_warehouse",
    "parameters",
    "to_duckdb",
]


def open_warehouse(url: str) -> Warehouse:
    """The warehouse a URL names; an unknown scheme or a missing dataset is named."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return DuckDBWarehouse(url, url)
    if scheme == "duckdb":
        return DuckDBWarehouse(url, rest)  # duckdb:///abs/file.duckdb -> /abs/file.duckdb
    if scheme == "bigquery":
        project, _, dataset = rest.partition("/")
        if not project or not dataset or "/" in dataset:
            raise WarehouseError(f"warehouse {url!r}: expected bigquery://<project>/<dataset>")
        return BigQueryWarehouse(url, project, dataset)
    raise WarehouseError(
        f"warehouse {url!r}: unknown kind {scheme!r}; use duckdb:///path/to/warehouse.duckdb or "
        "bigquery://<project>/<dataset>"
    )
