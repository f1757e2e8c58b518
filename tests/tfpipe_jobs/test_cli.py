"""The job command's entry: a run's params and the step's query are checked before the step runs."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tfpipe_jobs import cli
from tfpipe_jobs.tools.sample_data import CANDIDATES_DDL, EVENTS_DDL
from tfpipe_operators.config import SpecError
from tfpipe_operators.warehouse import WarehouseError

DS = "2026-11-21"


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    """The sample tables, empty: the checks read no rows."""
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(EVENTS_DDL)
        con.execute(CANDIDATES_DDL)
    return f"duckdb://{path}"


def _context(step: str, spec: Path, warehouse: str, tmp_path: Path, *extra: str) -> object:
    argv = [step, "--spec", str(spec), "--ds", DS, "--artifact-root", str(tmp_path / "artifacts")]
    args = cli.build_parser().parse_args([*argv, "--warehouse", warehouse, *extra])
    return cli._context(args)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_bad_run_param_is_blamed_on_the_run_not_the_spec(spec_dir: Path, warehouse: str, tmp_path: Path) -> None:
    spec = spec_dir / "pipeline.yaml"
    with pytest.raises(SpecError) as err:
        _context("train", spec, warehouse, tmp_path, "--run-params", '{"train.epochs": -1}')
    message = str(err.value)
    assert message.startswith("run param train_epochs (train.epochs): Input should be greater than or equal to 1")
    assert "(got -1)" in message and str(spec) not in message
    with pytest.raises(SpecError, match=r"^--set train\.dropout: Input should be less than 1 \(got 1\.5\)"):
        _context("train", spec, warehouse, tmp_path, "--set", "train.dropout=1.5")


def test_run_params_may_use_the_trigger_form_names(spec_dir: Path, warehouse: str, tmp_path: Path) -> None:
    ctx = _context("train", spec_dir / "pipeline.yaml", warehouse, tmp_path, "--run-params", '{"train_epochs": 5}')
    assert ctx.config.train.epochs == 5  # type: ignore[attr-defined]
    with pytest.raises(
        SystemExit, match=r"run params train_dropout .* not overridable .*train_epochs \(train\.epochs\)"
    ):
        _context("train", spec_dir / "pipeline.yaml", warehouse, tmp_path, "--run-params", '{"train_dropout": 0.1}')


def test_an_unknown_variant_names_the_run_param(spec_dir: Path, warehouse: str, tmp_path: Path) -> None:
    spec = spec_dir / "pipeline.yaml"
    with pytest.raises(
        SystemExit, match=r"^run param variant='huge': .*pipeline.yaml has no such variant \(it defines: wide\)"
    ):
        _context("train", spec, warehouse, tmp_path, "--run-params", '{"variant": "huge"}')
    with pytest.raises(SystemExit, match=r"^--variant 'huge': "):
        _context("train", spec, warehouse, tmp_path, "--variant", "huge")


def test_the_score_step_refuses_a_scoring_query_missing_a_feature(
    spec_dir: Path, warehouse: str, tmp_path: Path
) -> None:
    _edit(spec_dir / "score.sql", "  hour,\n", "")
    with pytest.raises(WarehouseError) as err:
        _context("batch_score", spec_dir / "pipeline.yaml", warehouse, tmp_path)
    assert str(err.value).startswith(
        f"{spec_dir / 'score.sql'}: result has no column 'hour' (features in pipeline.yaml); select it in score.sql"
    )
    _context(
        "extract_transform", spec_dir / "pipeline.yaml", warehouse, tmp_path
    )  # the training query is not the problem


def test_the_extract_step_refuses_a_training_query_missing_the_label(
    spec_dir: Path, warehouse: str, tmp_path: Path
) -> None:
    _edit(spec_dir / "train.sql", "  position,\n  clicked\n", "  position\n")
    missing = r"train\.sql: result has no column 'clicked' \(label\.column in pipeline\.yaml\)"
    with pytest.raises(WarehouseError, match=missing):
        _context("extract_transform", spec_dir / "pipeline.yaml", warehouse, tmp_path)


def test_a_step_refuses_its_query_without_ds_unless_the_spec_says_static(
    spec_dir: Path, warehouse: str, tmp_path: Path
) -> None:
    _edit(spec_dir / "score.sql", "WHERE event_date = @ds", "WHERE event_date = DATE '2026-11-20'")
    with pytest.raises(WarehouseError) as err:
        _context("batch_score", spec_dir / "pipeline.yaml", warehouse, tmp_path)
    assert str(err.value).startswith(
        f"{spec_dir / 'score.sql'}: does not use @ds (it has the date literal(s) 2026-11-20)"
    )
    _edit(spec_dir / "pipeline.yaml", "  table: ctr_scores\n", "  table: ctr_scores\n  static_sql: true\n")
    _context("batch_score", spec_dir / "pipeline.yaml", warehouse, tmp_path)  # the spec says so: a warning


def test_a_step_never_creates_a_missing_warehouse(spec_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.duckdb"
    with pytest.raises(WarehouseError, match="TFPIPE_WAREHOUSE"):
        _context("batch_score", spec_dir / "pipeline.yaml", f"duckdb://{missing}", tmp_path)
    assert not missing.exists()


def _parse_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """argparse's refusal of a command line: exit code 2 and the message on stderr."""
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(list(argv))
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_the_command_line_names_a_bad_or_missing_argument(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    common = ["--spec", "s.yaml", "--artifact-root", str(tmp_path), "--warehouse", "duckdb:///w.duckdb"]
    err = _parse_error(capsys, "train", *common, "--ds", "2026-13-01")
    assert "argument --ds: expected a date YYYY-MM-DD, got '2026-13-01'" in err
    assert "the following arguments are required: --ds" in _parse_error(capsys, "train", *common)
    assert "invalid choice: 'fit'" in _parse_error(capsys, "fit", *common, "--ds", DS)


def test_set_values_are_yaml_and_a_pair_without_value_is_refused(
    spec_dir: Path, warehouse: str, tmp_path: Path
) -> None:
    spec = spec_dir / "pipeline.yaml"
    ctx = _context(
        "train", spec, warehouse, tmp_path, "--set", "train.hidden_units=[32, 16]", "--set", "train.epochs=2"
    )
    assert ctx.config.train.hidden_units == [32, 16]  # type: ignore[attr-defined]
    assert ctx.config.train.epochs == 2  # type: ignore[attr-defined]
    with pytest.raises(SystemExit, match=r"^--set expects KEY=VALUE \(e\.g\. train\.epochs=5\), got 'train\.epochs'$"):
        _context("train", spec, warehouse, tmp_path, "--set", "train.epochs")


def test_run_params_must_be_a_json_object(spec_dir: Path, warehouse: str, tmp_path: Path) -> None:
    spec = spec_dir / "pipeline.yaml"
    with pytest.raises(SystemExit, match=r"^--run-params is not valid JSON \(.*\): \"\{'train_epochs': 5\}\"$"):
        _context("train", spec, warehouse, tmp_path, "--run-params", "{'train_epochs': 5}")
    with pytest.raises(SystemExit, match=r"^--run-params must be a JSON object, got '\[5\]'$"):
        _context("train", spec, warehouse, tmp_path, "--run-params", "[5]")


def test_a_day_in_the_future_is_refused_before_any_step_runs(spec_dir: Path, tmp_path: Path) -> None:
    argv = ["train", "--spec", str(spec_dir / "pipeline.yaml"), "--ds", "2999-01-01"]
    warehouse = tmp_path / "never-created.duckdb"
    with pytest.raises(SystemExit, match=r"^--ds 2999-01-01 is in the future \(today is \d{4}-\d{2}-\d{2}\)"):
        cli.main([*argv, "--artifact-root", str(tmp_path / "artifacts"), "--warehouse", f"duckdb://{warehouse}"])
    assert not (tmp_path / "artifacts").exists() and not warehouse.exists()


def test_the_result_goes_to_the_launchers_file_and_out_as_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result_file = tmp_path / "result.json"
    monkeypatch.setenv(cli.RESULT_FILE_ENV, str(result_file))
    cli.emit_result({"rows": 500, "table": "ctr_scores"})
    assert json.loads(result_file.read_text()) == {"rows": 500, "table": "ctr_scores"}
    assert not list(tmp_path.glob("*.partial"))
    assert capsys.readouterr().out == 'TFPIPE_RESULT {"rows": 500, "table": "ctr_scores"}\n'


def test_every_step_is_a_command_named_for_its_task_and_a_module_that_runs_it() -> None:
    import importlib

    from tfpipe_operators.steps import STEPS

    assert set(cli.STEP_MODULES) == set(STEPS)
    commands = cli.build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for task_id, module in cli.STEP_MODULES.items():
        assert task_id in commands
        assert module.rsplit(".", 1)[-1] == task_id  # the module's name is the task id
        assert callable(importlib.import_module(module).run)


# A step whose Beam transform is running when SIGTERM arrives: the handler's exception is
# raised inside the transform, and Beam's runner re-raises it as an error of its own.
STOPPED_INSIDE_BEAM = """
import os, signal, sys, time

import apache_beam as beam

from tfpipe_jobs import cli
from tfpipe_jobs.beam_jobs.runner import make_options, make_runner


def stop_inside(x):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)  # the handler raises in here
    return x


def step(args):
    pipeline = beam.Pipeline(runner=make_runner("DirectRunner"), options=make_options("DirectRunner", 1))
    _ = pipeline | beam.Create([1]) | beam.Map(stop_inside)
    pipeline.run().wait_until_finish()
    return {"finished": True}


parser = cli.build_parser()
parse = parser.parse_args


def parse_args(argv=None):
    args = parse(argv)
    args.fn = step  # the sample-data command's arguments, this step's work
    return args


parser.parse_args = parse_args
cli.build_parser = lambda: parser
sys.exit(cli.main(["sample-data", "--warehouse", "unused", "--end-date", "2026-11-21"]))
"""


def test_a_sigterm_inside_a_beam_transform_ends_the_step_as_stopped(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", STOPPED_INSIDE_BEAM], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == cli.EXIT_TERMINATED, proc.stderr[-3000:]
    assert "stopped by SIGTERM" in proc.stderr
    assert "finished" not in proc.stdout
