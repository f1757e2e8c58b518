"""tf.Transform's analyzers computed in the warehouse, over the day's training rows.

Each vocabulary with its counts, each numeric feature's mean and variance, each bucketized
feature's quantile boundaries: aggregations a warehouse does in one scan each, where
tf.Transform's own analyzers on Beam's local runner read every row a second time through
Python. The transform graph (`preprocessing.make_preprocessing_fn`) takes the results as
constants and vocabulary assets, so the Beam job makes one pass: read, transform, write.

The training rows are chosen in SQL exactly as the Beam job chooses them: a label, the
sample's and the split's digits of one salted hash of the keys (`split_hash_sql`), which
the Beam read selects as a column of its own, computed by the same engine.

The results are what tf.Transform's analyzers give on those rows (tests prove it):
- a vocabulary: the values as strings, without the empty string and values holding a line
  break (a text vocabulary cannot hold them), counted; kept if seen at least
  `frequency_threshold` times; most frequent first, ties by value descending; the first
  `top_k`; an empty one is tf.Transform's dummy token;
- mean and variance (population) of the present values, 0 and 0 where none is present;
- quantile boundaries: the values at ranks 1/buckets … (buckets-1)/buckets of the present
  values (DuckDB exact; BigQuery's APPROX_QUANTILES, within its own approximation), zeros
  where none is present.
"""

from __future__ import annotations

from typing import Any

from tensorflow_transform import analyzers

from tfpipe_jobs.arrow_batches import SchemaMismatchError
from tfpipe_jobs.context import JobContext
from tfpipe_jobs.preprocessing import AnalyzerResults
from tfpipe_operators.config import ExtractConfig
from tfpipe_operators.features import FeatureKind, Task, vocabulary_file_for_label
from tfpipe_operators.spec import PipelineSpec
from tfpipe_operators.warehouse import Warehouse

SPLIT_HASH = "__tfpipe_split_hash"
# Fixed, so the split is the same on every rerun of a day.
_SALT = "tfpipe-split-v2"


def split_hash_sql(spec: PipelineSpec, warehouse: Warehouse) -> str:
    """The spec's source query with the split hash of each row's keys as one more column."""
    body = spec.source_sql.strip().rstrip(";")
    return f"SELECT *, {warehouse.row_hash_sql(spec.keys, _SALT)} AS {SPLIT_HASH} FROM (\n{body}\n) AS source_rows"


def train_rows_sql(spec: PipelineSpec, cfg: ExtractConfig, warehouse: Warehouse) -> str:
    """The rows the Beam job writes to the train split (`arrow_batches.eval_mask`, `sample_mask`)."""
    where = [f"`{spec.label.column}` IS NOT NULL", f"MOD({SPLIT_HASH}, 100) >= {int(cfg.eval_percent)}"]
    if cfg.sample_fraction < 1.0:
        where.append(f"MOD(DIV({SPLIT_HASH}, 100), 1000000) < {int(cfg.sample_fraction * 1_000_000)}")
    return f"SELECT * FROM (\n{split_hash_sql(spec, warehouse)}\n) AS rows_with_split WHERE " + " AND ".join(where)


def _vocabulary_sql(column: str, train_sql: str, frequency_threshold: int | None, top_k: int | None) -> str:
    value = f"CAST(`{column}` AS STRING)"
    sql = (
        f"SELECT {value} AS token, COUNT(*) AS n FROM (\n{train_sql}\n) AS train_rows\n"
        f"WHERE {value} IS NOT NULL AND {value} != '' AND NOT REGEXP_CONTAINS({value}, r'[\\n\\r]')\n"
        f"GROUP BY token HAVING COUNT(*) >= {max(int(frequency_threshold or 0), 1)}\n"
        "ORDER BY n DESC, token DESC"
    )
    return sql + (f"\nLIMIT {int(top_k)}" if top_k is not None else "")


def _vocabulary(
    ctx: JobContext, column: str, train_sql: str, threshold: int | None, top_k: int | None
) -> list[tuple[bytes, int]]:
    rows = ctx.warehouse.table(_vocabulary_sql(column, train_sql, threshold, top_k), ctx.query_params).to_pylist()
    entries = [(str(r["token"]).encode(), int(r["n"])) for r in rows]
    # The order again in Python, on bytes: it must not depend on the engine's collation.
    entries.sort(key=lambda e: (e[1], e[0]), reverse=True)
    if not entries:
        count, token = analyzers.get_empy_vocabulary_dummy_value("string")
        entries = [(token, int(count))]
    return entries


def require_keys(ctx: JobContext) -> None:
    """The split hashes the spec's keys: each must be a column of the source query (a dry run)."""
    names = ctx.warehouse.result_schema(ctx.spec.source_sql, ctx.query_params).names
    missing = [k for k in ctx.spec.keys if k not in names]
    if missing:
        raise SchemaMismatchError(
            f"{ctx.spec.path}: key column(s) {', '.join(missing)} not in the query result ({', '.join(names)})"
        )


def compute(ctx: JobContext) -> AnalyzerResults:
    spec, warehouse = ctx.spec, ctx.warehouse
    require_keys(ctx)
    train_sql = train_rows_sql(spec, ctx.config.extract, warehouse)
    out = AnalyzerResults()
    parts, numeric, bucketized = [], [], []
    for f in spec.raw_features:
        value = f"CAST(`{f.name}` AS FLOAT64)"
        if f.kind is FeatureKind.NUMERIC:
            numeric.append(f.name)
            parts += [f"AVG({value}) AS `{f.name}__mean`", f"VAR_POP({value}) AS `{f.name}__var`"]
        elif f.kind is FeatureKind.BUCKETIZED:
            assert f.buckets is not None
            bucketized.append(f.name)
            parts.append(f"{warehouse.quantiles_sql(value, f.buckets)} AS `{f.name}__quantiles`")
        elif f.kind is FeatureKind.VOCABULARY:
            out.vocabularies[f.vocabulary_file] = _vocabulary(ctx, f.name, train_sql, f.frequency_threshold, f.top_k)
            out.counts_files[f.vocabulary_file] = f.counts_file
    if spec.label.task is Task.MULTICLASS:
        out.vocabularies[vocabulary_file_for_label()] = _vocabulary(ctx, spec.label.column, train_sql, None, None)
    if parts:
        row = ctx.warehouse.table(
            "SELECT\n  " + ",\n  ".join(parts) + f"\nFROM (\n{train_sql}\n) AS train_rows", ctx.query_params
        ).to_pylist()[0]
        # No present value on the train rows: the warehouse answers NULL, where tf.Transform's
        # analyzers give a mean and variance of 0 and boundaries of zeros (a NaN mean would
        # turn every row's value into NaN and the training loss with it).
        for name in numeric:
            out.means[name] = _number(row[f"{name}__mean"])
            out.variances[name] = _number(row[f"{name}__var"])
        for name in bucketized:
            points = row[f"{name}__quantiles"] or []
            buckets = spec.feature_by_name[name].buckets
            assert buckets is not None
            out.boundaries[name] = [float(v) for v in points[1:-1]] if points else [0.0] * (buckets - 1)
    return out


def _number(value: Any) -> float:
    return 0.0 if value is None else float(value)
