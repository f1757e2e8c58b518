"""Training/serving skew before publishing: a feature all NULL in scoring only is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfpipe_jobs.monitoring import skew

from .conftest import DAYS


def _scores_dir(days, ds) -> str:
    folder = Path(days.artifacts) / "ctr" / ds.isoformat() / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def test_a_feature_all_null_in_scoring_only(days) -> None:
    ds = DAYS[1]
    days.extract_checks(DAYS[0])
    days.extract_checks(ds)  # the training rows of ds keep their profile in drift.json
    days.sql("UPDATE candidates SET user_age = NULL WHERE event_date = ?", ds)
    result = skew.check(days.context(ds), _scores_dir(days, ds))
    report = json.loads(Path(result["report"]).read_text())
    (age,) = [c for c in report["skew"] if c["feature"] == "user_age"]
    assert age["measure"] == "psi" and age["exceeded"] and age["action"] == "warn"
    assert age["value"] > 5  # every scoring row in the NULL bucket, few training rows there
    warning = next(w for w in report["warnings"] if w.startswith("feature 'user_age':"))
    assert warning.startswith("feature 'user_age': skew psi ") and "> score.max_skew_psi 0.25" in warning
    assert report["scoring_rows"] == 500
    assert Path(result["picture"]).read_bytes()[:4] == b"\x89PNG"
    # the same day with the feature's action set to stop refuses the publish
    with pytest.raises(skew.SkewError, match=r"feature 'user_age': skew psi [0-9.]+ > score.max_skew_psi 0.25"):
        skew.check(days.context(ds, **{"score.skew_actions": {"user_age": "stop"}}), _scores_dir(days, ds))


def test_the_untouched_features_are_compared_too_and_a_threshold_per_feature_applies(days) -> None:
    ds = DAYS[1]
    days.extract_checks(ds)
    result = skew.check(days.context(ds, **{"score.skew_thresholds": {"device": 0.5}}), _scores_dir(days, ds))
    report = json.loads(Path(result["report"]).read_text())
    by_feature = {c["feature"]: c for c in report["skew"]}
    assert set(by_feature) == {
        "user_id", "item_id", "item_category", "device", "country", "hour", "user_age", "item_price", "position"
    }  # fmt: skip
    # device, hour and position are drawn alike for events and candidates
    for feature in ("device", "hour", "position"):
        assert not by_feature[feature]["exceeded"], by_feature[feature]
    assert by_feature["device"]["key"] == "score.skew_thresholds.device"
    assert by_feature["hour"]["key"] == "score.max_skew_psi" and by_feature["country"]["key"] == "score.max_skew_linf"


def test_without_the_days_profile_skew_is_not_measured_and_says_why(days) -> None:
    result = skew.check(days.context(DAYS[2]), _scores_dir(days, DAYS[2]))
    assert result["warnings"] == 0
    assert "have no profile to compare the scoring rows with; skew not measured" in result["notes"][0]
