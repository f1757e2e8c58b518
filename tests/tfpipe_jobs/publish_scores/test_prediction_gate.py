"""The prediction gate in publish_scores, on real small runs: wrong-looking scores never reach
the score table unless the run overrides the gate, and ordinary days pass."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfpipe_jobs.publish_scores.prediction_gate import PredictionGateError, psi

DS = "2026-11-21"
NEXT = "2026-11-22"


@pytest.fixture
def copied(ctr_run, tmp_path: Path):
    """A copy of the shared run's warehouse (ctr_scores holds DS's 500 rows; the latest view shows DS)
    and an empty artifact root."""
    run = type(ctr_run)(tmp_path)
    shutil.copy(ctr_run.warehouse.removeprefix("duckdb://"), run.warehouse.removeprefix("duckdb://"))
    return run


def _scores(ctr_run, run, ds: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """DS's 500 scores written as `ds`'s batch_score output under `run`, each probability changed by `change`."""
    ctr_run.write_scores(Path(run.artifacts), ds, 500)
    part = Path(run.artifacts) / "ctr" / ds / "scores" / "part-00000.parquet"
    table = pq.read_table(part)
    index = table.schema.get_field_index("probability")
    changed = change(table.column("probability").to_numpy().astype(np.float64))
    pq.write_table(table.set_column(index, "probability", pa.array(changed, pa.float64())), part)


def _state(run) -> list[tuple[str, int]]:
    """The table's partitions and the day the latest view shows: what analysts see."""
    with run.duckdb() as con:
        table = con.execute("SELECT CAST(ds AS VARCHAR), count(*) FROM ctr_scores GROUP BY ds ORDER BY ds").fetchall()
        latest = con.execute("SELECT DISTINCT CAST(ds AS VARCHAR) FROM ctr_scores_latest").fetchall()
    return [*table, ("latest", latest[0][0])]


def _report(run, ds: str) -> dict:
    return json.loads((Path(run.artifacts) / "ctr" / ds / "scores" / "prediction_gate.json").read_text())


def _measures(report: dict) -> dict[str, dict]:
    return {m["name"]: m for m in report["measures"]}


def test_every_score_the_same_is_refused_and_nothing_is_published(ctr_run, copied) -> None:
    _scores(ctr_run, copied, NEXT, lambda p: np.full_like(p, 0.5))
    before = _state(copied)
    with pytest.raises(PredictionGateError) as caught:
        copied.run("publish_scores", ds=NEXT)
    message = str(caught.value)
    assert "score_std 0 is below score.min_score_std 1e-06 (every score is 0.5)" in message
    assert "Nothing was published" in message and "ctr_scores_latest stay as they were" in message
    assert "score.override_prediction_gate=true" in message and "score_override_prediction_gate" in message
    assert _state(copied) == before == [(DS, 500), ("latest", DS)]
    report = _report(copied, NEXT)
    assert report["verdict"] == "failed" and report["published"] is False and report["reference_ds"] == DS
    measures = _measures(report)
    assert measures["score_std"]["value"] == 0 and not measures["score_std"]["passed"]
    assert "score_std" in report["failed"]


def test_a_shifted_distribution_is_refused(ctr_run, copied) -> None:
    # every probability moved up: the same ranking, but the day would read as twice as many clicks
    _scores(ctr_run, copied, NEXT, lambda p: np.clip(p * 2, 0, 1))
    before = _state(copied)
    with pytest.raises(PredictionGateError, match=r"score_psi \S+ is above score.max_score_psi 0.25") as caught:
        copied.run("publish_scores", ds=NEXT)
    assert _state(copied) == before
    report = _report(copied, NEXT)
    measures = _measures(report)
    assert report["failed"] == ["score_psi"] and measures["score_std"]["passed"]
    assert f"score_psi {measures['score_psi']['value']:.6g} is above" in str(caught.value)
    assert f"quantile buckets of ds={DS}" in measures["score_psi"]["detail"]


def test_the_psi_is_that_of_the_previous_partitions_deciles(ctr_run, copied) -> None:
    """Recomputed here from the published rows: NTILE deciles of DS, the shifted day counted in them."""
    _scores(ctr_run, copied, NEXT, lambda p: p * 1.2)
    result = copied.run("publish_scores", "--set", "score.max_score_psi=100", ds=NEXT)
    assert result["prediction_gate"]["verdict"] == "passed"
    with copied.duckdb() as con:
        rows = con.execute("SELECT probability FROM ctr_scores WHERE ds = $d", {"d": DS}).fetchall()
    ref = np.sort(np.asarray([p for (p,) in rows], dtype=np.float64))
    edges = np.unique(ref[[50 * i - 1 for i in range(1, 10)]])  # 500 rows: deciles of 50
    new = ref * 1.2
    counts = [np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1) for x in (new, ref)]
    assert result["prediction_gate"]["measures"]["score_psi"] == pytest.approx(psi(*counts))
    assert psi(counts[1], counts[1]) == 0


def test_consecutive_sample_days_pass(ctr_run, copied) -> None:
    """Two more days of the sample generator, scored by the blessed model and published: no false alarm."""
    from tfpipe_jobs.tools import sample_data

    end = date.fromisoformat(DS) + timedelta(days=2)
    sample_data.generate(
        copied.warehouse.removeprefix("duckdb://"),
        end,
        days=2,
        rows_per_day=2000,
        candidates_per_day=500,
        seed=7,
        population_rows=2000,
    )
    for folder in ("registry", "models"):
        shutil.copytree(Path(ctr_run.artifacts) / "ctr" / folder, Path(copied.artifacts) / "ctr" / folder)
    seen = {}
    for ds in (NEXT, end.isoformat()):
        copied.run("batch_score", ds=ds)
        result = copied.run("publish_scores", ds=ds)
        gate = result["prediction_gate"]
        assert gate["verdict"] == "passed" and not gate["overridden"], gate
        seen[ds] = gate["measures"]
        assert set(seen[ds]) == {"score_psi", "score_std", "missing_or_unseen_share"}
    assert _state(copied) == [(DS, 500), (NEXT, 500), (end.isoformat(), 500), ("latest", end.isoformat())]
    assert _report(copied, end.isoformat())["reference_ds"] == NEXT
    print("consecutive sample days:", seen)


def test_the_override_publishes_and_is_recorded(ctr_run, copied, caplog: pytest.LogCaptureFixture) -> None:
    _scores(ctr_run, copied, NEXT, lambda p: np.full_like(p, 0.5))
    caplog.set_level(logging.WARNING, logger="tfpipe_jobs.publish_scores.prediction_gate")
    # as the Airflow trigger form passes it
    result = copied.run("publish_scores", "--run-params", '{"score_override_prediction_gate": true}', ds=NEXT)
    assert result["rows"] == 500 and _state(copied) == [(DS, 500), (NEXT, 500), ("latest", NEXT)]
    gate = result["prediction_gate"]
    assert gate["verdict"] == "overridden" and gate["overridden"] is True and "score_std" in gate["failed"]
    report = _report(copied, NEXT)
    assert report["verdict"] == "overridden" and report["published"] is True and report["overridden"] is True
    assert gate["report"].endswith("prediction_gate.json")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("publishing anyway (score.override_prediction_gate is set" in m for m in warned), warned


def test_the_first_day_passes_with_a_note(ctr_run, copied) -> None:
    with copied.duckdb(read_only=False) as con:
        con.execute("DROP VIEW ctr_scores_latest")
        con.execute("DROP TABLE ctr_scores")
    ctr_run.write_scores(Path(copied.artifacts), DS, 500)
    result = copied.run("publish_scores")
    gate = result["prediction_gate"]
    assert gate["verdict"] == "passed" and gate["reference_ds"] is None
    assert set(gate["measures"]) == {"score_std", "missing_or_unseen_share"}
    report = _report(copied, DS)
    assert any("no partition of ctr_scores before ds=2026-11-21" in note for note in report["notes"])
    assert _state(copied) == [(DS, 500), ("latest", DS)]


def test_a_rerun_is_compared_with_the_day_before_not_itself(ctr_run, copied) -> None:
    """DS's own partition is what a rerun replaces; with none before it the rerun is a first day again."""
    ctr_run.write_scores(Path(copied.artifacts), DS, 500)
    gate = copied.run("publish_scores")["prediction_gate"]
    assert gate["reference_ds"] is None and gate["verdict"] == "passed"


def test_a_new_model_is_not_compared_with_the_old_models_day(ctr_run, copied) -> None:
    """A newly blessed model scores differently by design (evaluate_gate judged it): the day's
    shift is noted, not refused; the other measures still apply."""
    _scores(ctr_run, copied, NEXT, lambda p: np.clip(p * 2, 0, 1))  # refused under the same model
    scores = Path(copied.artifacts) / "ctr" / NEXT / "scores"
    summary = json.loads((scores / "summary.json").read_text())
    summary["model_version"] = f"{NEXT}-0123456789abcdef"
    (scores / "summary.json").write_text(json.dumps(summary))
    part = scores / "part-00000.parquet"
    table = pq.read_table(part)
    index = table.schema.get_field_index("model_version")
    new_version = pa.array([summary["model_version"]] * table.num_rows, pa.string())
    pq.write_table(table.set_column(index, "model_version", new_version), part)
    assert copied.run("publish_scores", ds=NEXT)["exit_code"] == 0
    report = _report(copied, NEXT)
    assert report["verdict"] == "passed" and "score_psi" not in _measures(report)
    assert any("a model change moves the distribution" in note for note in report["notes"]), report["notes"]
    assert _measures(report)["score_std"]["passed"]
    assert _state(copied)[-1] == ("latest", NEXT)
