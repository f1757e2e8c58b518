"""Bad inputs, damaged artifacts and mistakes, one row each: every case ends in a clear error
(naming the file, table or column and what to do) or is handled, and none loses or
mislabels what was published.

Each case runs one job command, as Airflow would, in a sandbox: a copy of the shared run's
warehouse (its score table holds the day's 500 rows), spec folder and artifacts (the
registry, the blessed model version, the day's outputs). Before and after the command the
suite takes what a user relies on: the score table's partitions and latest view, the
registry file and the blessed model's files. A refused command must leave them as they were.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tfpipe_jobs import artifacts, registry

DS = "2026-11-21"


@dataclass
class Sandbox:
    run: Any  # a CtrRun on copies
    spec_dir: Path
    ctr_run: Any
    warehouse_file: str  # the copy's file, whatever a case points the run at

    @property
    def root(self) -> Path:
        return Path(self.run.artifacts) / "ctr"

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.spec_dir / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new, 1))

    def blessed(self) -> dict[str, Any]:
        return json.loads((self.root / "registry" / "blessed.json").read_text())

    def snapshot(self) -> dict[str, Any]:
        """What analysts and scoring rely on."""
        import duckdb

        with duckdb.connect(self.warehouse_file, read_only=True) as con:
            partitions = con.execute("SELECT CAST(ds AS VARCHAR), count(*) FROM ctr_scores GROUP BY ds ORDER BY ds")
            counts = partitions.fetchall()
            latest = con.execute("SELECT DISTINCT CAST(ds AS VARCHAR) FROM ctr_scores_latest").fetchall()
        registry_file = self.root / "registry" / "blessed.json"
        models = self.root / "models"
        return {
            "partitions": counts,
            "latest": latest,
            "registry": registry_file.read_text() if registry_file.exists() else None,
            "models": {p.name: registry.saved_model_digest(str(p)) for p in models.iterdir()}
            if models.exists()
            else {},
        }


def damage_registry(box: Sandbox) -> list[str]:
    (box.root / "registry" / "blessed.json").write_text('{"ds": "2026-11-21",\n')
    return []


def tamper_blessed_model(box: Sandbox) -> list[str]:
    variables = box.root / "models" / box.blessed()["model_version"] / "saved_model" / "variables"
    data = next(variables.glob("*.data-*"))
    data.write_bytes(data.read_bytes()[::-1])
    return []


def replace_judged_serving(box: Sandbox) -> list[str]:
    """A same-day rerun of the export replaced the folder after the gate judged it (and the
    judged version was never stored)."""
    shutil.rmtree(box.root / "models")
    (box.root / "registry" / "blessed.json").unlink()
    with open(box.root / DS / "serving" / "saved_model" / "saved_model.pb", "ab") as f:
        f.write(b"\0")
    return []


def refuse_the_day(box: Sandbox) -> list[str]:
    (box.root / DS / "eval" / "verdict").write_text("refused\n")
    return []


def no_rows_today(box: Sandbox) -> list[str]:
    box.ctr_run.write_scores(box.root.parent, DS, 0)
    return []


def shrink_tomorrow(box: Sandbox) -> list[str]:
    box.ctr_run.write_scores(box.root.parent, "2026-11-22", 120)
    return []


def wrong_warehouse(box: Sandbox) -> list[str]:
    box.run.warehouse = f"duckdb://{box.spec_dir.parent / 'warehouse-typo.duckdb'}"
    return []


def nothing(box: Sandbox) -> list[str]:
    return []


@dataclass(frozen=True)
class Case:
    name: str
    step: str
    prepare: Callable[[Sandbox], list[str]]
    message: str  # regex: the error's message, or the skip reason of a handled case
    error: type[BaseException] | None = Exception  # None: handled, the command exits 99 (skipped)
    ds: str = DS
    state_kept: bool = True  # False where the case itself damages what the snapshot reads
    extra: tuple[str, ...] = field(default=())


CASES = [
    Case(
        "damaged registry, scoring",
        "batch_score",
        damage_registry,
        r"blessed.json is not valid JSON .*tfpipe-job rebuild-registry",
        registry.RegistryCorruptError,
        state_kept=False,
    ),
    Case(
        "damaged registry, publishing a model",
        "publish_model",
        damage_registry,
        r"blessed.json is not valid JSON .*tfpipe-job rebuild-registry",
        registry.RegistryCorruptError,
        state_kept=False,
    ),
    Case(
        "blessed model's files changed",
        "batch_score",
        tamper_blessed_model,
        r"no longer holds model version 2026-11-21-[0-9a-f]{16}.*rerun the day's export_serving_model",
        registry.ModelIntegrityError,
        state_kept=False,
    ),
    Case(
        "serving folder replaced after the gate judged it",
        "publish_model",
        replace_judged_serving,
        r"serving changed after evaluate_gate judged it .*rerun evaluate_gate",
        registry.ModelIntegrityError,
    ),
    Case(
        "refused model",
        "publish_model",
        refuse_the_day,
        r"the gate refused the model of 2026-11-21",
        error=None,
    ),
    Case(
        "an empty day replacing a published one",
        "publish_scores",
        no_rows_today,
        r"0 rows to publish for ds=2026-11-21 \(the partition it replaces holds 500\).*Nothing was changed",
    ),
    Case(
        "a day far smaller than the previous",
        "publish_scores",
        shrink_tomorrow,
        r"120 rows to publish for ds=2026-11-22, fewer than score.min_rows_vs_previous 0.5 of the 500 rows of the "
        r"previous partition.*score.allow_fewer_rows=true",
        ds="2026-11-22",
    ),
    Case(
        "a scoring query with no rows for the day",
        "batch_score",
        nothing,
        r"score.sql: the scoring query returned no rows for ds 2026-11-25.*score.allow_fewer_rows=true",
        ds="2026-11-25",
    ),
    Case(
        "a day in the future",
        "batch_score",
        nothing,
        r"--ds \S+ is in the future",
        SystemExit,
        ds=(date.today() + timedelta(days=3)).isoformat(),
    ),
    Case(
        "a wrong warehouse path",
        "publish_scores",
        wrong_warehouse,
        r"warehouse-typo.duckdb does not exist.*--warehouse",
    ),
    Case(
        "training SQL with a hard-coded date instead of @ds",
        "extract_transform",
        lambda box: (
            box.edit("train.sql", "DATE_SUB(@ds, INTERVAL @lookback_days DAY) AND @ds", "'2026-11-19' AND '2026-11-20'")
            or []
        ),
        r"train.sql: does not use @ds \(it has the date literal\(s\) 2026-11-19, 2026-11-20\)",
    ),
    Case(
        "a syntax error in the training SQL",
        "extract_transform",
        lambda box: box.edit("train.sql", "SELECT", "SELEC") or [],
        r"train.sql:\d+: ",
    ),
    Case(
        "a scoring query missing a feature",
        "batch_score",
        lambda box: box.edit("score.sql", "  hour,\n", "") or [],
        r"score.sql: result has no column 'hour' \(features in pipeline.yaml\); select it in score.sql",
    ),
    Case(
        "a bad run param",
        "train",
        lambda box: ["--run-params", '{"train_epochs": -1}'],
        r"run param train_epochs \(train.epochs\)",
    ),
]


@pytest.fixture
def sandbox(ctr_run, spec_dir: Path, tmp_path: Path) -> Sandbox:
    run = type(ctr_run)(tmp_path)
    shutil.copy(ctr_run.warehouse.removeprefix("duckdb://"), run.warehouse.removeprefix("duckdb://"))
    source, target = Path(ctr_run.artifacts) / "ctr", Path(run.artifacts) / "ctr"
    for part in ("registry", "models", DS):
        shutil.copytree(source / part, target / part)
    run.spec = str(spec_dir / "pipeline.yaml")
    return Sandbox(run, spec_dir, ctr_run, run.warehouse.removeprefix("duckdb://"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_case_ends_clearly_and_loses_nothing(sandbox: Sandbox, case: Case) -> None:
    extra = case.prepare(sandbox)
    before = sandbox.snapshot() if case.state_kept else None
    if case.error is None:
        result = sandbox.run.run(case.step, *extra, ds=case.ds)
        assert result["exit_code"] == 99 and re.search(case.message, result["skipped"]), result
    else:
        with pytest.raises(case.error, match=case.message) as caught:
            sandbox.run.run(case.step, *extra, ds=case.ds)
        assert type(caught.value).__name__ not in ("KeyError", "JSONDecodeError", "ParseError", "DataLossError")
    if before is not None:
        assert sandbox.snapshot() == before
    # no step leaves a staged folder behind when it refuses
    assert not list(Path(sandbox.run.artifacts).rglob("*.tmp-*"))
    assert artifacts.is_complete(str(sandbox.root / DS / "data"))
