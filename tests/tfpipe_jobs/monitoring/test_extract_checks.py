"""The extract step's monitoring on the sample days: quiet on ordinary days, loud on injected shifts."""

from __future__ import annotations

import json

import pytest

from tfpipe_jobs.monitoring.extract_checks import DriftError
from tfpipe_jobs.monitoring.schema import SchemaViolationError

from .conftest import DAYS


def test_consecutive_sample_days_raise_no_alarm(days) -> None:
    first = days.extract_checks(DAYS[0])
    assert first["reference_ds"] is None and first["drift"] == []
    assert any("drift has nothing to compare with" in note for note in first["notes"])
    assert any("v0001 inferred from this day's rows" in note for note in first["notes"])
    for ds in DAYS[1:]:
        report = days.extract_checks(ds)
        assert report["reference_ds"] == (ds.fromordinal(ds.toordinal() - 1)).isoformat()
        assert {c["feature"] for c in report["drift"]} == {
            "user_id", "item_id", "item_category", "device", "country", "hour", "user_age", "item_price", "position"
        }  # fmt: skip
        assert [c for c in report["drift"] if c["exceeded"]] == [] and report["warnings"] == []
        assert report["schema"]["version"] == 1 and report["schema"]["warnings"] == []
    published = days.root / "artifacts" / "ctr" / DAYS[-1].isoformat() / "data"
    assert json.loads((published / "drift.json").read_text())["drift"][0]["threshold"] > 0
    assert (published / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_mean_shift_in_one_numeric_feature(days) -> None:
    days.extract_checks(DAYS[0])
    # every position moved down the page by 6 (within the schema's range 1..20): the mean shifts
    days.sql("UPDATE events SET position = LEAST(position + 6, 20) WHERE event_date = ?", DAYS[1])
    report = days.extract_checks(DAYS[1])
    flagged = [c for c in report["drift"] if c["exceeded"]]
    assert [c["feature"] for c in flagged] == ["position"]
    assert report["warnings"][0].startswith("feature 'position': drift psi ")
    assert "> extract.max_drift_psi 0.25 (over the 10 quantile buckets" in report["warnings"][0]
    # a per-feature action makes it stop the extraction, a per-feature threshold tolerates it
    with pytest.raises(DriftError, match=r"feature 'position': drift psi [0-9.]+ > extract.max_drift_psi 0.25"):
        days.extract_checks(DAYS[1], **{"extract.drift_actions": {"position": "stop"}})
    lenient = days.extract_checks(DAYS[1], **{"extract.drift_thresholds": {"position": 50.0}})
    (position,) = [c for c in lenient["drift"] if c["feature"] == "position"]
    assert position["key"] == "extract.drift_thresholds.position" and not position["exceeded"]


def test_new_categories_in_a_categorical_feature(days) -> None:
    days.extract_checks(DAYS[0])
    days.sql(
        "UPDATE events SET device = CASE WHEN hash(event_id) % 10 < 2 THEN 'vr-headset' ELSE 'watch' END "
        "WHERE event_date = ? AND hash(event_id) % 10 < 3",
        DAYS[1],
    )
    report = days.extract_checks(DAYS[1])  # a warning by default
    (warning,) = report["schema"]["warnings"]
    assert warning.startswith("column 'device': 2 value(s) not in schema v0001's values ('vr-headset', 'watch')")
    assert "of the day's rows > extract.max_new_value_share 0.01" in warning
    assert report["schema"]["new_values"]["device"]["values"] == 2
    # the frequencies moved too: the L-infinity distance of device's values
    assert any(
        w.startswith("feature 'device': drift linf ") and "extract.max_drift_linf 0.1" in w for w in report["warnings"]
    )
    with pytest.raises(SchemaViolationError, match=r"column 'device': 2 value\(s\) not in schema v0001's values"):
        days.extract_checks(DAYS[1], **{"extract.new_values_fatal": True})
    # a few new values under the share are recorded, not reported
    quiet = days.extract_checks(DAYS[1], **{"extract.max_new_value_share": 0.5})
    assert quiet["schema"]["warnings"] == [] and quiet["schema"]["new_values"]["device"]["share"] > 0.2


def test_schema_violations_stop_with_column_value_and_rule(days) -> None:
    days.extract_checks(DAYS[0])
    schema = json.loads((days.schema_dir() / "schema.json").read_text())
    price_max = schema["features"]["item_price"]["max"]
    assert schema["features"]["country"]["required"] is True
    days.sql("UPDATE events SET country = NULL WHERE event_date = ? AND hash(event_id) % 50 = 0", DAYS[1])
    days.sql("UPDATE events SET item_price = 5000.0 WHERE event_date = ? AND hash(event_id) % 97 = 0", DAYS[1])
    with pytest.raises(SchemaViolationError) as err:
        days.extract_checks(DAYS[1])
    text = str(err.value)
    assert "breaks schema v0001" in text and "in 2 rule(s)" in text
    assert "column 'country': " in text and "NULL value(s) (null rate 0.0" in text
    assert "in a column schema v0001 marks required: true" in text
    assert f"column 'item_price': value 5000 is above schema v0001's max: {price_max:g}" in text
    assert "extract.accept_schema=true" in text


def test_a_type_change_and_accepting_the_next_schema(days) -> None:
    days.extract_checks(DAYS[0])
    v1 = (days.schema_dir() / "v0001.json").read_text()
    days.sql("ALTER TABLE events ALTER hour TYPE DOUBLE")
    with pytest.raises(SchemaViolationError, match=r"column 'hour': type float, schema v0001 says type: integer"):
        days.extract_checks(DAYS[1])
    accepted = days.extract_checks(DAYS[1], **{"extract.accept_schema": True})
    assert accepted["schema"]["version"] == 2
    assert any("schema v0002 written, widened from v0001" in note for note in accepted["notes"])
    current = json.loads((days.schema_dir() / "schema.json").read_text())
    assert current["version"] == 2 and current["features"]["hour"]["type"] == "float"
    assert current["created"] == {"ds": DAYS[1].isoformat(), "how": f"accepted on ds={DAYS[1]}"}
    assert (days.schema_dir() / "v0001.json").read_text() == v1  # the old version is kept as it was
    assert days.extract_checks(DAYS[2])["schema"]["version"] == 2


def test_a_hand_edit_is_checked_and_recorded_as_a_version(days) -> None:
    days.extract_checks(DAYS[0])
    path = days.schema_dir() / "schema.json"
    schema = json.loads(path.read_text())
    schema["features"]["device"]["values"].remove("tv")
    schema["features"]["position"]["max"] = 10
    path.write_text(json.dumps(schema, indent=2))
    with pytest.raises(SchemaViolationError, match=r"column 'position': value 20 is above schema v0002's max: 10"):
        days.extract_checks(DAYS[1])
    recorded = json.loads((days.schema_dir() / "v0002.json").read_text())
    assert recorded["created"]["how"] == "edited by hand" and recorded["features"]["position"]["max"] == 10
