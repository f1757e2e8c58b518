from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tfpipe_operators import callbacks


def test_failure_reaches_the_users_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "team_alerts.py").write_text("SENT = []\ndef send(message, context):\n    SENT.append(message)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TFPIPE_NOTIFY", "team_alerts:send")
    ti = SimpleNamespace(dag_id="ctr_daily", task_id="train")
    callbacks.on_failure({"task_instance": ti, "ds": "2026-11-21", "exception": ValueError("out of memory")})
    callbacks.on_gate_refused(
        {"task_instance": SimpleNamespace(dag_id="ctr_daily", task_id="publish_model"), "ds": "2026-11-21"}
    )
    sent = sys.modules["team_alerts"].SENT
    assert sent[0] == "tfpipe ctr_daily ds=2026-11-21: train failed: out of memory"
    assert sent[1].startswith("tfpipe ctr_daily ds=2026-11-21: publish_model skipped, the model was not published")


def test_bad_hook_setting_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFPIPE_NOTIFY", "no_colon_here")
    with pytest.raises(ValueError, match="package.module:function"):
        callbacks.on_failure({"ds": "2026-11-21"})
