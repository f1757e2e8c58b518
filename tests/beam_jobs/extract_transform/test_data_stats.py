"""The day's checks: each failure names the column, the value and the threshold."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tfpipe_jobs.beam_jobs.extract_transform.data_stats import DataValidationError, stats_sql, validate
from tfpipe_operators.config import ExtractConfig
from tfpipe_operators.spec import load_spec

SPEC = Path(__file__).resolve().parents[3] / "dags" / "pipelines" / "ctr" / "pipeline.yaml"


def _stats(**overrides: dict) -> dict:
    columns = {
        f: {"nulls": 0.0, "null_rate": 0.0, "distinct": 500.0}
        for f in ("user_id", "item_id", "item_category", "device", "country")
    }
    columns.update(
        {
            f: {"nulls": 0.0, "null_rate": 0.0, "min": 0.0, "max": 1.0, "mean": 0.5}
            for f in ("hour", "user_age", "item_price", "position")
        }
    )
    columns["__label"] = {"nulls": 0.0, "null_rate": 0.0, "mean": 0.1}
    for name, values in overrides.items():
        columns[name] = {**columns[name], **values}
    return {"rows": 1000, "columns": columns, "provenance": {"ds": "2026-11-20"}}


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPEC)


def test_a_normal_day_passes_and_records_warnings(spec) -> None:
    stats = _stats(user_age={"null_rate": 0.3})
    warnings = validate(spec, stats, ExtractConfig(), previous=_stats(user_age={"null_rate": 0.25}))
    assert warnings == ["column 'user_age': null rate 0.300 is over half of extract.max_null_rate"]
    assert stats["warnings"] == warnings and stats["previous_ds"] == "2026-11-20"


def test_empty_day_and_single_class(spec) -> None:
    with pytest.raises(DataValidationError, match="returned no rows for this ds"):
        validate(spec, {**_stats(), "rows": 0}, ExtractConfig())
    with pytest.raises(DataValidationError, match=r"label column 'clicked' has a single class \(mean 0.000\)"):
        validate(spec, _stats(__label={"mean": 0.0}), ExtractConfig())


def test_null_rate_beyond_threshold(spec) -> None:
    with pytest.raises(DataValidationError, match=r"column 'item_price': null rate 0.800 > extract.max_null_rate 0.5"):
        validate(spec, _stats(item_price={"null_rate": 0.8}), ExtractConfig())


def test_against_the_previous_day(spec) -> None:
    before = _stats()
    with pytest.raises(DataValidationError) as err:
        validate(
            spec,
            _stats(user_age={"null_rate": 0.45}, device={"distinct": 1.0}, __label={"mean": 0.3}),
            ExtractConfig(),
            previous=copy.deepcopy(before),
        )
    text = str(err.value)
    assert "failed 3 check(s)" in text
    assert "column 'user_age': null rate rose from 0.000 to 0.450 (+0.450 > extract.max_null_rate_increase 0.2)" in text
    assert (
        "column 'device': vocabulary collapsed from 500 to 1 distinct values (0.00 < extract.min_distinct_ratio 0.5)"
        in text
    )
    assert "label 'clicked': rate moved from 0.1000 to 0.3000 (200% > extract.max_label_rate_change 50%)" in text


def test_thresholds_come_from_config(spec) -> None:
    lenient = ExtractConfig(max_null_rate=0.9)
    validate(spec, _stats(item_price={"null_rate": 0.8}), lenient)


def test_stats_query_is_bigquery_sql_over_the_source(spec) -> None:
    sql = stats_sql(spec)
    assert "COUNTIF(`user_age` IS NULL) AS user_age__nulls" in sql
    assert "APPROX_COUNT_DISTINCT(`user_id`) AS user_id__distinct" in sql
    assert "FROM events" in sql and "@ds" in sql
