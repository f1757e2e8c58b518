"""google-cloud-bigquery against bqemulator, from a fresh jobs-env process with the client env.

Clients are built as the product builds them, `bigquery.Client(project=...)` with default
credentials: the token comes from the stand-in metadata server.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.gcp_emulated

Client = Callable[..., dict[str, Any]]

# Four days of rows; the query for ds 2026-11-21 with a 2-day look-back reads the last three.
SETUP = """
import datetime
from google.cloud import bigquery

client = bigquery.Client(project=PARAMS["project"])
dataset = f"{PARAMS['project']}.{PARAMS['dataset']}"
table = bigquery.Table(f"{dataset}.{PARAMS['table']}", schema=[
    bigquery.SchemaField("event_date", "DATE"),
    bigquery.SchemaField("event_id", "INT64"),
    bigquery.SchemaField("country", "STRING"),
    bigquery.SchemaField("clicked", "INT64"),
])
table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="event_date")
client.create_table(table)
client.query(f'''
    INSERT INTO `{dataset}.{PARAMS['table']}` (event_date, event_id, country, clicked) VALUES
      (DATE '2026-11-18', 1, 'nl', 0), (DATE '2026-11-19', 2, 'de', 1), (DATE '2026-11-19', 3, 'nl', 0),
      (DATE '2026-11-20', 4, 'fr', 1), (DATE '2026-11-21', 5, 'nl', 1), (DATE '2026-11-21', 6, NULL, 0)
''').result()
day = [
    bigquery.ScalarQueryParameter("ds", "DATE", datetime.date(2026, 11, 21)),
    bigquery.ScalarQueryParameter("lookback_days", "INT64", 2),
]
WINDOW = (
    "SELECT event_id, country, clicked FROM {table}"
    " WHERE event_date BETWEEN DATE_SUB(@ds, INTERVAL @lookback_days DAY) AND @ds"
)
"""


def run(client_process: Client, gcp_standins: Any, table: str, code: str) -> dict[str, Any]:
    bq = gcp_standins.bigquery
    return client_process(SETUP + textwrap.dedent(code), project=bq.project, dataset=bq.dataset, table=table)


def test_partitioned_table_parameterised_query_read_as_arrow(client_process: Client, gcp_standins: Any) -> None:
    result = run(
        client_process,
        gcp_standins,
        "events_query",
        """
        import pyarrow as pa

        # As the warehouse reads: default dataset, named parameters, pages read as Arrow.
        config = bigquery.QueryJobConfig(query_parameters=day, default_dataset=dataset)
        rows = client.query(WINDOW.format(table=PARAMS["table"]) + " ORDER BY event_id", job_config=config)
        batches = list(rows.result(page_size=2).to_arrow_iterable())
        got = pa.Table.from_batches(batches).to_pydict()
        # Qualified by its dataset: bqemulator fails the unqualified view with an error the
        # client retries for its whole 10-minute deadline.
        name = bigquery.ScalarQueryParameter("t", "STRING", PARAMS["table"])
        partitions = client.query(
            f"SELECT partition_id, total_rows FROM `{dataset}.INFORMATION_SCHEMA.PARTITIONS`"
            " WHERE table_name = @t ORDER BY 1",
            job_config=bigquery.QueryJobConfig(query_parameters=[name]),
        ).result()
        partitioning = client.get_table(table).time_partitioning
        print(json.dumps({
            "credentials": type(client._credentials).__module__,
            "partitioning": [partitioning.type_, partitioning.field],
            "rows": got,
            "batches": len(batches),
            "partitions": [[r["partition_id"], r["total_rows"]] for r in partitions],
        }))
        """,
    )
    assert result["credentials"] == "google.auth.compute_engine.credentials", "default credentials: metadata stand-in"
    assert result["partitioning"] == ["DAY", "event_date"]
    assert result["rows"] == {
        "event_id": [2, 3, 4, 5, 6],
        "country": ["de", "nl", "fr", "nl", None],
        "clicked": [1, 0, 1, 1, 0],
    }
    assert result["batches"] == 3, "page_size=2 over 5 rows: the result is read page by page"
    assert result["partitions"] == [["20261118", 1], ["20261119", 2], ["20261120", 1], ["20261121", 2]]


def test_dry_run_gives_the_schema_and_refuses_a_bad_column(client_process: Client, gcp_standins: Any) -> None:
    result = run(
        client_process,
        gcp_standins,
        "events_dry",
        """
        from google.api_core import exceptions

        dry = bigquery.QueryJobConfig(
            query_parameters=day, default_dataset=dataset, dry_run=True, use_query_cache=False
        )
        job = client.query(WINDOW.format(table=PARAMS["table"]), job_config=dry)
        try:
            client.query(f"SELECT no_such_column FROM {PARAMS['table']}", job_config=dry)
            bad = None
        except exceptions.BadRequest as exc:
            bad = exc.code
        print(json.dumps({
            "state": job.state,
            "schema": [[f.name, f.field_type] for f in job.schema],
            "bytes": job.total_bytes_processed,
            "bad": bad,
        }))
        """,
    )
    assert result["state"] == "DONE"
    assert result["schema"] == [["event_id", "INTEGER"], ["country", "STRING"], ["clicked", "INTEGER"]]
    assert result["bytes"] is not None
    assert result["bad"] == 400, "a dry run of a query naming a missing column must fail"


def test_farm_fingerprint_ranges_split_the_rows(client_process: Client, gcp_standins: Any) -> None:
    """Hash ranges of the keys (how reads are split) partition the rows: disjoint and complete.

    Proves the stand-in runs the query shape; that its FARM_FINGERPRINT gives BigQuery's
    values is not proven here.
    """
    result = run(
        client_process,
        gcp_standins,
        "events_shards",
        """
        shards = 3
        split = (
            "SELECT * FROM (" + WINDOW.format(table=PARAMS["table"]) + ") AS source_rows WHERE "
            "MOD(ABS(MOD(FARM_FINGERPRINT(IFNULL(CAST(`event_id` AS STRING), '')), @n)), @n) = @shard"
        )
        parts = []
        for shard in range(shards):
            params = [
                *day,
                bigquery.ScalarQueryParameter("n", "INT64", shards),
                bigquery.ScalarQueryParameter("shard", "INT64", shard),
            ]
            config = bigquery.QueryJobConfig(query_parameters=params, default_dataset=dataset)
            parts.append(sorted(r["event_id"] for r in client.query(split, job_config=config).result()))
        print(json.dumps({"parts": parts}))
        """,
    )
    ids = [i for part in result["parts"] for i in part]
    assert sorted(ids) == [2, 3, 4, 5, 6], "every row in exactly one range"
    assert sum(1 for part in result["parts"] if part) > 1, "the rows spread over more than one range"


def test_limit_loads_into_a_partition_and_from_gcs_are_refused(client_process: Client, gcp_standins: Any) -> None:
    """A LIMIT of the stand-in, not BigQuery's behaviour: never proof of how BigQuery loads.

    BigQuery loads into `table$YYYYMMDD` (WRITE_TRUNCATE replaces that one partition) and
    from `gs://` URIs; bqemulator refuses the partition decorator ("Invalid table id") and
    cannot read gs:// from fake-gcs-server (it only maps gs:// onto a local folder). The
    score table's publish therefore runs here for its request shape only.
    """
    result = run(
        client_process,
        gcp_standins,
        "scores_load",
        """
        import io
        import pyarrow as pa
        import pyarrow.parquet as pq
        from google.api_core import exceptions

        buf = io.BytesIO()
        row = {"event_date": [datetime.date(2026, 11, 21)], "event_id": [9], "country": ["nl"], "clicked": [1]}
        pq.write_table(pa.table(row), buf)
        buf.seek(0)
        truncate = bigquery.LoadJobConfig(source_format="PARQUET", write_disposition="WRITE_TRUNCATE")
        errors = {}
        try:
            client.load_table_from_file(buf, f"{dataset}.{PARAMS['table']}$20261121", job_config=truncate).result()
        except exceptions.BadRequest as exc:
            errors["partition"] = exc.message
        try:
            uri = f"gs://{PARAMS['project']}-bucket/scores/*.parquet"
            client.load_table_from_uri(uri, table, job_config=truncate).result()
        except exceptions.BadRequest as exc:
            errors["gcs"] = exc.message
        rows = client.query(f"SELECT COUNT(*) AS n FROM `{dataset}.{PARAMS['table']}`").result()
        print(json.dumps({"errors": errors, "rows": next(iter(rows))["n"]}))
        """,
    )
    assert "Invalid table id" in result["errors"]["partition"]
    assert "gs://" in result["errors"]["gcs"]
    assert result["rows"] == 6, "the refused loads changed nothing"


def test_limit_query_destination_is_ignored(client_process: Client, gcp_standins: Any) -> None:
    """A LIMIT of the stand-in, not BigQuery's behaviour: BigQuery writes the result to `destination`.

    bqemulator runs the query, reports the destination on the job and creates nothing, so a
    query that publishes through `destination=` (with or without a partition decorator) is
    not proven by this tier.
    """
    result = run(
        client_process,
        gcp_standins,
        "events_dest",
        """
        target = f"{dataset}.{PARAMS['table']}_copy"
        config = bigquery.QueryJobConfig(query_parameters=day, default_dataset=dataset, destination=target,
                                         write_disposition="WRITE_TRUNCATE")
        job = client.query(WINDOW.format(table=PARAMS["table"]), job_config=config)
        job.result()
        tables = sorted(t.table_id for t in client.list_tables(dataset))
        print(json.dumps({"destination": str(job.destination), "tables": tables}))
        """,
    )
    assert result["destination"].endswith("events_dest_copy")
    assert "events_dest_copy" not in result["tables"]
    assert "events_dest" in result["tables"]


def test_limit_a_parameter_name_in_a_comment_breaks_the_query(client_process: Client, gcp_standins: Any) -> None:
    """A LIMIT of the stand-in, not BigQuery's behaviour: BigQuery ignores `@ds` in a comment.

    bqemulator counts every `@name` in the text, comments and string literals included, as a
    parameter reference, and the query then fails ("Parameter argument/count mismatch"). The
    ctr pipeline's SQL files mention `@ds` in their comments: on this stand-in they need
    comments without `@`. A parameter the query does not use at all is accepted.
    """
    result = run(
        client_process,
        gcp_standins,
        "events_comment",
        """
        from google.api_core import exceptions

        config = bigquery.QueryJobConfig(query_parameters=day)
        outcome = {}
        for name, sql in (
            ("unused_parameter", "SELECT @ds AS d"),
            ("in_comment", "-- the day @ds\\nSELECT @ds AS d"),
        ):
            try:
                outcome[name] = str(next(iter(client.query(sql, job_config=config).result()))["d"])
            except exceptions.BadRequest as exc:
                outcome[name] = exc.message
        print(json.dumps(outcome))
        """,
    )
    assert result["unused_parameter"] == "2026-11-21"
    assert "Parameter argument/count mismatch" in result["in_comment"]


def test_the_prediction_gates_queries_on_a_score_table(client_process: Client, gcp_standins: Any) -> None:
    """has_table, the previous partition and its NTILE quantile buckets, through the product's warehouse."""
    result = run(
        client_process,
        gcp_standins,
        "gate_events",
        """
        from datetime import date
        from types import SimpleNamespace

        from tfpipe_jobs.publish_scores import prediction_gate
        from tfpipe_operators.warehouse import open_warehouse

        scores = bigquery.Table(f"{dataset}.gate_scores", schema=[
            bigquery.SchemaField("ds", "DATE"), bigquery.SchemaField("probability", "FLOAT64"),
        ])
        client.create_table(scores)
        values = ", ".join(f"(DATE '2026-11-20', {i / 100})" for i in range(100))
        client.query(f"INSERT INTO `{dataset}.gate_scores` (ds, probability) VALUES {values}").result()
        wh = open_warehouse(f"bigquery://{PARAMS['project']}/{PARAMS['dataset']}")
        ctx = SimpleNamespace(warehouse=wh, ds=date(2026, 11, 21), spec=SimpleNamespace(
            scoring=SimpleNamespace(table="gate_scores")))
        ref = prediction_gate.reference_partition(ctx)
        edges, counts = prediction_gate.reference_buckets(ctx, "probability", ref[0], 4)
        print(json.dumps({
            "has": [wh.has_table("gate_scores"), wh.has_table("no_such_scores")],
            "ref": [ref[0].isoformat(), ref[1]],
            "edges": edges.tolist(),
            "counts": counts.tolist(),
        }))
        """,
    )
    assert result["has"] == [True, False]
    assert result["ref"] == ["2026-11-20", 100]
    assert result["edges"] == [0.24, 0.49, 0.74] and result["counts"] == [25, 25, 25, 25]


def test_the_extract_s_vocabularies_in_one_query(client_process: Client, gcp_standins: Any) -> None:
    """warehouse_analyzers.vocabularies: every vocabulary in one UNION ALL query, each with its own
    top_k (QUALIFY) and frequency threshold; the cuts are checked against counts made here."""
    result = run(
        client_process,
        gcp_standins,
        "vocab_events",
        """
        from types import SimpleNamespace

        from tensorflow_transform.analyzers import get_empy_vocabulary_dummy_value

        from tfpipe_jobs.beam_jobs.extract_transform.warehouse_analyzers import VocabularyQuery, vocabularies
        from tfpipe_operators.warehouse import open_warehouse

        rows = bigquery.Table(f"{dataset}.vocab_rows", schema=[
            bigquery.SchemaField(name, "STRING") for name in ("country", "device", "band", "nothing")
        ])
        client.create_table(rows)
        countries = ["nl"] * 4 + ["de"] * 3 + ["fr"] * 3 + ["be", "", None, "a\\nb"]
        devices = ["ios", "ios", "web"] + [None] * (len(countries) - 3)
        bands = ["cheap", "cheap", "mid"] + ["premium"] * (len(countries) - 3)

        def literal(value):  # repr writes the line break as \\n, which BigQuery reads back as one
            return "NULL" if value is None else repr(value)

        values = ", ".join(
            f"({literal(c)}, {literal(d)}, {literal(b)}, NULL)" for c, d, b in zip(countries, devices, bands)
        )
        client.query(f"INSERT INTO `{dataset}.vocab_rows` (country, device, band, nothing) VALUES {values}").result()
        wh = open_warehouse(f"bigquery://{PARAMS['project']}/{PARAMS['dataset']}")
        found = vocabularies(
            SimpleNamespace(warehouse=wh, query_params={}),
            [
                VocabularyQuery("vocab_country", "country", top_k=2),
                VocabularyQuery("vocab_device", "device", frequency_threshold=2),
                VocabularyQuery("vocab_band", "band"),
                VocabularyQuery("vocab_nothing", "nothing"),
            ],
            f"SELECT * FROM `{dataset}.vocab_rows`",
        )
        count, token = get_empy_vocabulary_dummy_value("string")
        print(json.dumps({
            "found": {k: [[t.decode(), n] for t, n in v] for k, v in found.items()},
            "dummy": [[token.decode(), int(count)]],
        }))
        """,
    )
    # Ties at the top_k cut go by the value, descending: fr before de. The empty string,
    # NULL and a value holding a line break are never tokens; no value at all is the dummy.
    found = result["found"]
    assert found["vocab_country"] == [["nl", 4], ["fr", 3]]
    assert found["vocab_device"] == [["ios", 2]]
    assert found["vocab_band"] == [["premium", 11], ["cheap", 2], ["mid", 1]]
    assert found["vocab_nothing"] == result["dummy"]
