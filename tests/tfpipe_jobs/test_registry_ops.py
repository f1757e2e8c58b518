"""Operators' registry commands: history, rollback and manual bless, and what scoring then uses."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import threading
from datetime import date
from pathlib import Path

import pytest

from tfpipe_jobs import cli, registry, registry_ops
from tfpipe_jobs.artifacts import RunPaths


def _registry(ctr_run, root: Path, action: str, *extra: str) -> tuple[dict, str]:
    """`tfpipe-job registry <action> ...` in this process: its result and what it printed."""
    out = io.StringIO()
    argv = ["registry", action, "--spec", ctr_run.spec, "--artifact-root", str(root), *extra]
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    text = out.getvalue()
    line = [x for x in text.splitlines() if x.startswith(cli.RESULT_PREFIX)][-1]
    return json.loads(line[len(cli.RESULT_PREFIX) :]), text


def _fails(ctr_run, root: Path, action: str, *extra: str) -> str:
    """The one-line error a refused registry command exits with."""
    with pytest.raises(SystemExit) as err:
        cli.main(["registry", action, "--spec", ctr_run.spec, "--artifact-root", str(root), *extra])
    assert isinstance(err.value.code, str), err.value.code  # a message, not a bare exit code
    return err.value.code


def _bless(ctr_run, judge, root: Path, *days: str) -> dict[str, str]:
    """Each day judged as blessed and published as the nightly run would: {ds: version}."""
    versions = {}
    for ds in days:
        versions[ds] = judge(root, ds, "blessed")["model_version"]
        assert ctr_run.run("publish_model", ds=ds, artifacts=str(root))["exit_code"] == 0
    return versions


def _scores(root: Path, ds: str) -> str:
    """The version scoring resolves for `ds` (batch_score's own call), after its digest check."""
    paths = RunPaths(str(root), "ctr", ds)
    entry = registry.require_blessed_as_of(paths, ds)
    registry.verified_model_dir(paths, entry)
    return str(entry["model_version"])


def test_a_rollback_scores_the_older_version_from_its_day_on_until_a_newer_blessing(
    ctr_run, judge, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    v = _bless(ctr_run, judge, root, "2026-11-18", "2026-11-20")
    result, _ = _registry(
        ctr_run, root, "rollback", "--to", v["2026-11-18"], "--from-ds", "2026-11-21", "--reason", "CTR fell",
        "--who", "alice", "--expected-current", v["2026-11-20"],
    )  # fmt: skip
    assert result["from_ds"] == "2026-11-21" and result["replaces"] == v["2026-11-20"]
    assert result["until_ds"] is None and result["current"] == v["2026-11-18"]
    assert _scores(root, "2026-11-19") == v["2026-11-18"]
    assert _scores(root, "2026-11-20") == v["2026-11-20"]  # before the rollback's day: unchanged
    assert _scores(root, "2026-11-21") == v["2026-11-18"]
    assert _scores(root, "2026-11-30") == v["2026-11-18"]
    entry = registry.blessed_as_of(RunPaths(str(root), "ctr", ""), "2026-11-21")
    assert entry is not None
    assert (entry["kind"], entry["who"], entry["why"], entry["origin_ds"]) == (
        "rollback",
        "alice",
        "CTR fell",
        "2026-11-18",
    )
    assert entry["digest"] == registry.read_registry(RunPaths(str(root), "ctr", ""))["history"][0]["digest"]  # type: ignore[index]
    # the score step itself scores the rolled-back day with the older model's files
    scored = ctr_run.run("batch_score", ds="2026-11-21", artifacts=str(root))
    assert scored["exit_code"] == 0 and scored["model_version"] == v["2026-11-18"]
    summary = json.loads((root / "ctr" / "2026-11-21" / "scores" / "summary.json").read_text())
    assert summary["model_version"] == v["2026-11-18"] and summary["rows"] > 0

    # the next nightly blessing, of a newer day, supersedes the rollback from its own day on
    v.update(_bless(ctr_run, judge, root, "2026-11-22"))
    assert _scores(root, "2026-11-21") == v["2026-11-18"]
    assert _scores(root, "2026-11-22") == v["2026-11-22"]
    doc = registry.read_registry(RunPaths(str(root), "ctr", ""))
    assert doc is not None
    assert [(e["ds"], registry.kind(e)) for e in doc["history"]] == [
        ("2026-11-18", "bless"),
        ("2026-11-20", "bless"),
        ("2026-11-21", "rollback"),
        ("2026-11-22", "bless"),
    ]
    assert len(list((root / "ctr" / "registry" / "blessings").glob("*.json"))) == 4  # one record per event

    # the history, newest first, names who rolled back what and why, and what scores a day
    listed, text = _registry(ctr_run, root, "list", "--ds", "2026-11-21")
    assert listed["scores"] == v["2026-11-18"] and listed["current"] == v["2026-11-22"]
    assert [r["kind"] for r in listed["events"]] == ["bless", "rollback", "bless", "bless"]
    assert listed["events"][1]["scores"] == "2026-11-21 .. before 2026-11-22"
    assert f"2026-11-21  rollback  {v['2026-11-18']}" in text
    assert "who alice" in text and "why CTR fell" in text and "metrics auc=0.7000" in text
    assert f"scoring 2026-11-21: {v['2026-11-18']} (rollback event of 2026-11-21)" in text

    # the repair keeps every event
    assert cli.main(["rebuild-registry", "--spec", ctr_run.spec, "--artifact-root", str(root)]) == 0
    rebuilt = registry.read_registry(RunPaths(str(root), "ctr", ""))
    assert rebuilt is not None and rebuilt["history"] == doc["history"]


def test_a_rollback_defaults_to_the_current_day_and_a_later_event_of_that_day_wins(
    ctr_run, judge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "artifacts"
    v = _bless(ctr_run, judge, root, "2026-11-18", "2026-11-20")
    monkeypatch.setenv("TFPIPE_USER", "bob")  # no --who: from the environment
    result, _ = _registry(
        ctr_run, root, "rollback", "--to", v["2026-11-18"], "--reason", "bad launch", "--expected-current",
        v["2026-11-20"],
    )  # fmt: skip
    assert result["from_ds"] == "2026-11-20" and result["who"] == "bob"
    assert _scores(root, "2026-11-19") == v["2026-11-18"] and _scores(root, "2026-11-20") == v["2026-11-18"]
    # a rerun of the day's publish_model is a later event of the same ds: it wins, the rollback stays recorded
    assert ctr_run.run("publish_model", ds="2026-11-20", artifacts=str(root))["exit_code"] == 0
    assert _scores(root, "2026-11-20") == v["2026-11-20"]
    doc = registry.read_registry(RunPaths(str(root), "ctr", ""))
    assert doc is not None
    assert [registry.kind(e) for e in doc["history"]] == ["bless", "rollback", "bless"]


def test_a_refused_model_blessed_by_hand_records_the_refusal_and_scores_its_day(ctr_run, judge, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    v = _bless(ctr_run, judge, root, "2026-11-18")
    refused = judge(root, "2026-11-20", "refused")
    assert ctr_run.run("publish_model", ds="2026-11-20", artifacts=str(root))["exit_code"] == 99
    assert _scores(root, "2026-11-20") == v["2026-11-18"]
    result, _ = _registry(
        ctr_run, root, "bless", "--ds", "2026-11-20", "--reason", "holiday traffic, offline check ok", "--who", "carol",
        "--version", refused["model_version"], "--expected-current", v["2026-11-18"],
    )  # fmt: skip
    assert result["model_version"] == refused["model_version"] and result["current"] == refused["model_version"]
    assert (result["kind"], result["who"], result["why"]) == ("manual", "carol", "holiday traffic, offline check ok")
    assert result["gate_verdict"] == "refused" and result["rules"] == ["FAIL lift over baseline: auc 0.50 vs 0.50"]
    assert result["replaces"] == v["2026-11-18"]
    # the same immutable copy as publish_model, and scoring follows it
    folder = root / "ctr" / "models" / refused["model_version"]
    assert result["serving"] == str(folder) and registry.saved_model_digest(str(folder)) == refused["digest"]
    assert _scores(root, "2026-11-20") == refused["model_version"]
    assert _scores(root, "2026-11-19") == v["2026-11-18"]
    scored = ctr_run.run("batch_score", ds="2026-11-20", artifacts=str(root))
    assert scored["exit_code"] == 0 and scored["model_version"] == refused["model_version"]
    _, text = _registry(ctr_run, root, "list", "--ds", "2026-11-20")
    assert f"2026-11-20  manual    {refused['model_version']}" in text
    assert f"blessed by hand over the gate's refusal, replacing {v['2026-11-18']}" in text
    assert "who carol" in text and "why holiday traffic, offline check ok" in text
    # blessed by hand, it is an earlier blessed version a later rollback may name
    v.update(_bless(ctr_run, judge, root, "2026-11-22"))
    _registry(
        ctr_run, root, "rollback", "--to", refused["model_version"], "--reason", "back", "--who", "carol",
        "--expected-current", v["2026-11-22"],
    )  # fmt: skip
    assert _scores(root, "2026-11-22") == refused["model_version"]


def test_a_manual_bless_goes_through_the_digest_check(ctr_run, judge, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    candidate = judge(root, "2026-11-20", "refused")
    with open(Path(candidate["serving"]) / "saved_model" / "saved_model.pb", "ab") as f:
        f.write(b"\0")  # a rerun of the export replaced the judged model
    message = _fails(
        ctr_run, root, "bless", "--ds", "2026-11-20", "--reason", "r", "--who", "carol", "--expected-current", "none"
    )
    assert message.startswith(
        f"tfpipe-job registry bless: cannot bless {candidate['model_version']}, the refused model of 2026-11-20: "
    )
    assert "changed after evaluate_gate judged it" in message
    assert not (root / "ctr" / "registry" / "blessed.json").exists()
    assert not list((root / "ctr").glob("models/*"))


def test_operator_errors_name_what_is_wrong(ctr_run, judge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "artifacts"
    assert "has no blessed model yet" in _fails(ctr_run, root, "list")
    v = _bless(ctr_run, judge, root, "2026-11-18", "2026-11-20")
    who = ("--who", "dave")

    assert _fails(ctr_run, root, "rollback", "--to", v["2026-11-18"], "--reason", "  ", *who) == (
        "tfpipe-job registry rollback: --reason is empty: say why (it is recorded with the change and shown by "
        "`tfpipe-job registry list`)"
    )
    message = _fails(ctr_run, root, "rollback", "--to", "2026-11-19-0123456789abcdef", "--reason", "r", *who)
    assert message.startswith("tfpipe-job registry rollback: unknown version '2026-11-19-0123456789abcdef'")
    assert f"has blessed {v['2026-11-20']}, {v['2026-11-18']}" in message
    assert "newer day's model never scores an older day" in _fails(
        ctr_run, root, "rollback", "--to", v["2026-11-20"], "--from-ds", "2026-11-19", "--reason", "r", *who
    )
    assert f"{v['2026-11-20']} already scores 2026-11-20" in _fails(
        ctr_run, root, "rollback", "--to", v["2026-11-20"], "--reason", "r", *who
    )
    assert "--to is empty" in _fails(ctr_run, root, "rollback", "--reason", "r", *who)
    assert "is in the future" in _fails(
        ctr_run, root, "rollback", "--to", v["2026-11-18"], "--from-ds", "2999-01-01", "--reason", "r", *who
    )
    assert _fails(ctr_run, root, "rollback", "--to", v["2026-11-18"], "--reason", "r", *who) == (
        "tfpipe-job registry rollback: --expected-current is empty: name the version you expect to score 2026-11-20 "
        f"now (`tfpipe-job registry list --ds 2026-11-20` shows it; it is {v['2026-11-20']}), so a change someone "
        "made since you looked is not overwritten"
    )
    shutil.rmtree(root / "ctr" / "models" / v["2026-11-18"])
    assert f"models/{v['2026-11-18']} is missing or incomplete" in _fails(
        ctr_run, root, "rollback", "--to", v["2026-11-18"], "--reason", "r", "--expected-current", v["2026-11-20"], *who
    )

    for name in ("TFPIPE_USER", "USER", "LOGNAME"):
        monkeypatch.delenv(name, raising=False)
    assert "who makes this change is unknown: pass --who NAME" in _fails(
        ctr_run, root, "rollback", "--to", v["2026-11-18"], "--reason", "r"
    )

    assert "--ds is required" in _fails(ctr_run, root, "bless", "--reason", "r", *who)
    assert "the gate has not judged a model of 2026-11-21" in _fails(
        ctr_run, root, "bless", "--ds", "2026-11-21", "--reason", "r", *who
    )
    assert "the gate did not refuse the model of 2026-11-20" in _fails(
        ctr_run, root, "bless", "--ds", "2026-11-20", "--reason", "r", *who
    )
    refused = judge(root, "2026-11-21", "refused")
    assert f"is not the model the gate refused for 2026-11-21: that is {refused['model_version']}" in _fails(
        ctr_run, root, "bless", "--ds", "2026-11-21", "--version", v["2026-11-20"], "--reason", "r", *who
    )
    shutil.rmtree(root / "ctr" / "2026-11-21" / "serving")
    assert f"the refused model of 2026-11-21 ({refused['model_version']}) is missing" in _fails(
        ctr_run, root, "bless", "--ds", "2026-11-21", "--reason", "r", *who
    )
    judge(root, "2026-11-21", "refused")
    assert "--expected-current is empty" in _fails(ctr_run, root, "bless", "--ds", "2026-11-21", "--reason", "r", *who)
    _registry(
        ctr_run, root, "bless", "--ds", "2026-11-21", "--reason", "r", "--expected-current", v["2026-11-20"], *who
    )
    assert f"{refused['model_version']} is already blessed for 2026-11-21 (manual event" in _fails(
        ctr_run, root, "bless", "--ds", "2026-11-21", "--reason", "r", *who
    )
    assert "--reason is not used by list" in _fails(ctr_run, root, "list", "--reason", "why")
    assert "--expected-current is not used by list" in _fails(ctr_run, root, "list", "--expected-current", "none")


def _records(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "ctr" / "registry" / "blessings").glob("*.json"))


def test_a_change_on_a_stale_view_is_refused_and_leaves_no_record(ctr_run, judge, tmp_path: Path) -> None:
    """Carol and dave both saw 11-18's model scoring 11-20; carol blesses first, dave's rollback then fails."""
    root = tmp_path / "artifacts"
    v = _bless(ctr_run, judge, root, "2026-11-16", "2026-11-18")
    refused = judge(root, "2026-11-20", "refused")
    seen = v["2026-11-18"]
    _registry(
        ctr_run, root, "bless", "--ds", "2026-11-20", "--reason", "ok offline", "--who", "carol",
        "--expected-current", seen,
    )  # fmt: skip
    before, records = (root / "ctr" / "registry" / "blessed.json").read_text(), _records(root)
    message = _fails(
        ctr_run, root, "rollback", "--to", v["2026-11-16"], "--from-ds", "2026-11-20", "--reason", "r", "--who",
        "dave", "--expected-current", seen,
    )  # fmt: skip
    assert message.startswith(
        f"tfpipe-job registry rollback: stale expected version: --expected-current {seen} was to score 2026-11-20, "
        f"but {refused['model_version']} does now (manual event of 2026-11-20 by carol, "
    )
    assert f"repeat it with --expected-current {refused['model_version']}" in message
    assert (root / "ctr" / "registry" / "blessed.json").read_text() == before and _records(root) == records
    # a bless of a day no model scores yet names `none`
    first = tmp_path / "first"
    judged = judge(first, "2026-11-20", "refused")
    assert f"--expected-current {seen} was to score 2026-11-20, but no model does now" in _fails(
        ctr_run, first, "bless", "--ds", "2026-11-20", "--reason", "r", "--who", "carol", "--expected-current", seen
    )
    blessed, _ = _registry(
        ctr_run, first, "bless", "--ds", "2026-11-20", "--reason", "first model", "--who", "carol",
        "--expected-current", "none",
    )  # fmt: skip
    assert blessed["model_version"] == judged["model_version"] and blessed["replaces"] is None
    assert _scores(first, "2026-11-20") == judged["model_version"]


def test_two_operators_changing_the_same_state_at_once_cannot_both_win(
    ctr_run, judge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manual bless and a rollback of 11-20, both checked on the same registry, write at the same moment."""
    root = tmp_path / "artifacts"
    v = _bless(ctr_run, judge, root, "2026-11-16", "2026-11-18")
    refused = judge(root, "2026-11-20", "refused")
    records = _records(root)
    paths = RunPaths(str(root), "ctr", "")
    # Both writers have passed every check on the registry they read when either writes.
    barrier = threading.Barrier(2)
    update = registry._update

    def update_together(*args, **kwargs):
        barrier.wait(timeout=60)
        return update(*args, **kwargs)

    monkeypatch.setattr(registry, "_update", update_together)
    outcomes: dict[str, object] = {}

    def act(name: str, change) -> None:
        try:
            outcomes[name] = change()
        except Exception as exc:  # the loser's error is the outcome under test
            outcomes[name] = exc

    changes = {
        "carol": lambda: registry_ops.bless_refused(
            RunPaths(str(root), "ctr", "2026-11-20"), "ok offline", "carol", v["2026-11-18"]
        ),
        "dave": lambda: registry_ops.rollback(
            paths, v["2026-11-16"], "2026-11-20", "bad", "dave", date(2026, 12, 2), v["2026-11-18"]
        ),
    }
    threads = [threading.Thread(target=act, args=(name, change)) for name, change in changes.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [name for name, outcome in outcomes.items() if isinstance(outcome, dict)]
    lost = [outcome for outcome in outcomes.values() if not isinstance(outcome, dict)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], registry_ops.RegistryCommandError)
    assert str(lost[0]).startswith(
        f"stale expected version: --expected-current {v['2026-11-18']} was to score 2026-11-20"
    )
    doc = registry.read_registry(paths)
    assert doc is not None
    assert [(e["ds"], registry.kind(e)) for e in doc["history"]][-1] == (
        "2026-11-20",
        {"carol": "manual", "dave": "rollback"}[won[0]],
    )
    assert len(doc["history"]) == 3 and len(_records(root)) == len(records) + 1  # the loser's record is gone
    winner = {"carol": refused["model_version"], "dave": v["2026-11-16"]}[won[0]]
    assert _scores(root, "2026-11-20") == winner
