"""Print where a pipeline's score table is, the day's partition, and SQL to query it."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from tfpipe_operators.features import Task
from tfpipe_operators.spec import load_spec
from tfpipe_operators.warehouse import DuckDBWarehouse, open_warehouse


def analyst_sql(task: Task, keys: list[str], view: str) -> str:
    """The day's most confident rows, by the task's prediction columns (README: Score tables)."""
    columns = ", ".join(keys)
    if task is Task.MULTICLASS:
        # The predicted class by name, with its probability read from the by-name list.
        return (
            f"SELECT {columns}, class_name, p.probability FROM {view}, UNNEST(class_probabilities) p "
            "WHERE p.class_name = class_name ORDER BY p.probability DESC LIMIT 20"
        )
    prediction = "probability" if task is Task.BINARY else "value"
    return f"SELECT {columns}, {prediction} FROM {view} ORDER BY {prediction} DESC LIMIT 20"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--ds", required=True, type=date.fromisoformat)
    args = parser.parse_args()
    spec = load_spec(args.spec)
    warehouse = open_warehouse(args.warehouse)
    if not isinstance(warehouse, DuckDBWarehouse):
        print(f"{args.warehouse}: this script reads a DuckDB warehouse; query BigQuery with bq", file=sys.stderr)
        return 2
    path = warehouse.path
    table, view, keys = spec.scoring.table, spec.scoring.latest_view, spec.scoring.keys
    con = warehouse.connect(read_only=True)
    rows = con.execute(f'SELECT count(*) FROM "{table}" WHERE ds = $ds', {"ds": args.ds}).fetchone()
    n = int(rows[0]) if rows else 0
    if n == 0:
        print(f"no rows for ds={args.ds} in {table} ({path})", file=sys.stderr)
        return 1
    print(f"warehouse: {path} (DuckDB)")
    print(f"table:     {table}, partition ds={args.ds}: {n} rows (one per {', '.join(keys)})")
    print(f"view:      {view} (the newest partition)\n")
    result = con.execute(f'SELECT * FROM "{table}" WHERE ds = $ds ORDER BY {keys[0]} LIMIT 5', {"ds": args.ds})
    names = [d[0] for d in result.description]
    print(" | ".join(names))
    for row in result.fetchall():
        print(" | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    sql = analyst_sql(spec.label.task, keys, view)
    print("\nAn analyst would type (any DuckDB client, read-only):")
    print(f"  {sql};")
    print("for example:")
    print(
        f"  .venv-airflow/bin/python -c \"import duckdb; duckdb.connect('{path}', read_only=True).sql('{sql}').show()\""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
