"""One place reads the profile's warehouse URL."""

from __future__ import annotations

import pytest

from tfpipe_operators.warehouse import BigQueryWarehouse, DuckDBWarehouse, WarehouseError, open_warehouse


def test_duckdb_urls_and_bare_paths_name_the_file() -> None:
    for url in ("duckdb:///data/wh.duckdb", "/data/wh.duckdb"):
        warehouse = open_warehouse(url)
        assert isinstance(warehouse, DuckDBWarehouse)
        assert (warehouse.kind, warehouse.path, warehouse.url) == ("duckdb", "/data/wh.duckdb", url)


def test_bigquery_url_names_project_and_dataset() -> None:
    warehouse = open_warehouse("bigquery://acme-prod/analytics")
    assert isinstance(warehouse, BigQueryWarehouse)
    assert (warehouse.kind, warehouse.project, warehouse.dataset) == ("bigquery", "acme-prod", "analytics")
    assert warehouse.table_id("events") == "acme-prod.analytics.events"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("bigquery://acme-prod", "expected bigquery://<project>/<dataset>"),
        ("bigquery://acme-prod/a/b", "expected bigquery://<project>/<dataset>"),
        ("postgres://db/x", "unknown kind 'postgres'; use duckdb:///path/to/warehouse.duckdb or bigquery://"),
    ],
)
def test_a_url_it_cannot_open_is_named(url: str, message: str) -> None:
    with pytest.raises(WarehouseError) as err:
        open_warehouse(url)
    assert str(err.value).startswith(f"warehouse {url!r}: ") and message in str(err.value)
