"""Widening a schema to accepted data keeps the rest of it; versions are never replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfpipe_jobs import artifacts
from tfpipe_jobs.artifacts import RunPaths
from tfpipe_jobs.monitoring import schema

CURRENT = {
    "format": 1,
    "pipeline": "ctr",
    "version": 3,
    "created": {"ds": "2026-11-20", "how": "edited by hand"},
    "features": {
        "device": {"kind": "vocabulary", "type": "string", "required": True, "values": ["desktop", "mobile"]},
        "user_age": {"kind": "numeric", "type": "float", "required": True, "min": 18.0, "max": 65.0},
        "user_id": {"kind": "vocabulary", "type": "string", "required": True, "values": None},
    },
}
SEEN = {
    "features": {
        "device": {"kind": "vocabulary", "type": "string", "required": True, "values": ["mobile", "tv"]},
        "user_age": {"kind": "numeric", "type": "float", "required": False, "min": 20.0, "max": 70.0},
        "user_id": {"kind": "vocabulary", "type": "string", "required": True, "values": ["u1"]},
    }
}


def test_widen_holds_the_new_data_and_keeps_the_edits() -> None:
    wider = schema.widen(CURRENT, SEEN, max_values=10)
    assert "version" not in wider and "created" not in wider
    f = wider["features"]
    assert f["device"]["values"] == ["desktop", "mobile", "tv"]
    assert (f["user_age"]["min"], f["user_age"]["max"], f["user_age"]["required"]) == (18.0, 70.0, False)
    assert f["user_id"]["values"] is None  # an open domain stays open
    assert schema.widen(CURRENT, SEEN, max_values=2)["features"]["device"]["values"] is None  # too many to list


def test_versions_are_numbered_and_never_replaced(tmp_path: Path) -> None:
    paths = RunPaths(str(tmp_path), "ctr", "2026-11-21")
    first = schema.write_version(paths, CURRENT, "inferred from ds=2026-11-21")
    second = schema.write_version(paths, SEEN | {"format": 1}, "accepted on ds=2026-11-21")
    assert (first["version"], second["version"]) == (1, 2)
    assert schema.current(paths) == second
    with pytest.raises(FileExistsError):
        artifacts.create_json(schema.version_file(paths, 1), {"replaced": True})
    assert artifacts.read_json(schema.version_file(paths, 1))["features"] == CURRENT["features"]
