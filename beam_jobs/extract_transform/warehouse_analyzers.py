"""tf.Transform's analyzers computed in the warehouse, over the day's training rows.

Each vocabulary with its counts, each numeric feature's mean and variance, each bucketized
feature's quantile boundaries: aggregations a warehouse does in two queries (every
vocabulary in one, the numbers in the other), where tf.Transform's own analyzers on Beam's
local runner read every row a second time through Python. The transform graph
(`preprocessing.make_preprocessing_fn`) takes the results as constants and vocabulary
assets, so the Beam job makes one pass: read, transform, write.

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

from dataclasses import dataclass
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


@dataclass(frozen=True)
class VocabularyQuery:
    """One vocabulary to compute: the file it is written to, the column it counts, its cuts."""

    file: str
    column: str
    frequency_threshold: int | None = None
    top_k: int | None = None


def vocabularies_sql(queries: list[VocabularyQuery], train_sql: str) -> str:
    """Every vocabulary in one query, a UNION ALL of one grouping per vocabulary.

    One query, not one each: on BigQuery each query is a job of its own, with its own wait
    and its own bill for the columns it reads (a column is billed once per query however
    often the query reads it); in DuckDB the parts run as fast together as apart.
    """
    parts = []
    for q in queries:
        value = f"CAST(`{q.column}` AS STRING)"
        part = (
            f"SELECT '{q.file}' AS vocabulary, {value} AS token, COUNT(*) AS n FROM (\n{train_sql}\n) AS train_rows\n"
            f"WHERE {value} IS NOT NULL AND {value} != '' AND NOT REGEXP_CONTAINS({value}, r'[\\n\\r]')\n"
            f"GROUP BY token HAVING COUNT(*) >= {max(int(q.frequency_threshold or 0), 1)}"
        )
        if q.top_k is not None:
            part += f"\nQUALIFY ROW_NUMBER() OVER (ORDER BY COUNT(*) DESC, {value} DESC) <= {int(q.top_k)}"
        parts.append(part)
    return "\nUNION ALL\n".join(parts)


def vocabularies(ctx: JobContext, queries: list[VocabularyQuery], train_sql: str) -> dict[str, list[tuple[bytes, int]]]:
    found: dict[str, list[tuple[bytes, int]]] = {q.file: [] for q in queries}
    if queries:
        for r in ctx.warehouse.table(vocabularies_sql(queries, train_sql), ctx.query_params).to_pylist():
            found[r["vocabulary"]].append((str(r["token"]).encode(), int(r["n"])))
    for file, entries in found.items():
        # The order in Python, on bytes: it must not depend on the engine's collation.
        entries.sort(key=lambda e: (e[1], e[0]), reverse=True)
        if not entries:
            count, token = analyzers.get_empy_vocabulary_dummy_value("string")
            found[file] = [(token, int(count))]
    return found


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
    parts, numeric, bucketized, wanted = [], [], [], []
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
            wanted.append(VocabularyQuery(f.vocabulary_file, f.name, f.frequency_threshold, f.top_k))
            out.counts_files[f.vocabulary_file] = f.counts_file
    if spec.label.task is Task.MULTICLASS:
        wanted.append(VocabularyQuery(vocabulary_file_for_label(), spec.label.column))
    out.vocabularies.update(vocabularies(ctx, wanted, train_sql))
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
