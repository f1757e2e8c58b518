from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import numpy as np

from tfpipe_jobs.metrics import roc_auc
from tfpipe_jobs.tools import sample_data


def test_generator_is_deterministic_and_shaped(tmp_path: Path) -> None:
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    for path in (a, b):
        counts = sample_data.generate(
            path, date(2026, 11, 21), days=2, rows_per_day=3000, candidates_per_day=400, seed=3
        )
        assert counts == {"events": 6000, "candidates": 800}
    with duckdb.connect(str(a), read_only=True) as ca, duckdb.connect(str(b), read_only=True) as cb:
        q = "SELECT * FROM events ORDER BY event_id"
        assert ca.execute(q).fetchall() == cb.execute(q).fetchall()
        days = ca.execute("SELECT event_date, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall()
        assert [d for d, _ in days] == [date(2026, 11, 20), date(2026, 11, 21)]
        assert ca.execute("SELECT count(DISTINCT user_id) FROM events").fetchone()[0] > 100  # high cardinality
        assert 0.0 < ca.execute("SELECT avg(user_age IS NULL::INT) FROM events").fetchone()[0] < 0.2
        dupes = ca.execute(
            "SELECT count(*) FROM "
            "(SELECT event_date, user_id, item_id FROM candidates GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
        assert dupes == 0  # one scoring row per (user, item) and day


def test_regenerating_a_day_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    sample_data.generate(path, date(2026, 11, 21), days=1, rows_per_day=500, candidates_per_day=50)
    sample_data.generate(path, date(2026, 11, 21), days=1, rows_per_day=500, candidates_per_day=50)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 500


def test_labels_follow_the_true_probability(tmp_path: Path) -> None:
    pop = sample_data.population_for(20_000, seed=1)
    table = sample_data.events_for_day(pop, date(2026, 11, 21), 20_000, seed=1)
    ctr = table.column("true_ctr").to_numpy()
    clicked = table.column("clicked").to_numpy()
    assert abs(clicked.mean() - ctr.mean()) < 0.01
    bayes = sample_data.bayes_auc(ctr, clicked)
    assert 0.7 < bayes < 0.95  # learnable, not trivial
    assert bayes > roc_auc(clicked, np.random.default_rng(0).random(clicked.size)) + 0.1


def test_most_of_the_signal_is_in_the_columns() -> None:
    """Users' and items' own biases are modest: knowing every other effect exactly comes
    within a few percent of the Bayes-optimal AUC, so what a model must learn is in the
    columns (and the market cross of country and category) at any data volume."""
    pop = sample_data.population_for(200_000, seed=1)
    table = sample_data.events_for_day(pop, date(2026, 11, 21), 200_000, seed=1)
    ctr = table.column("true_ctr").to_numpy()
    clicked = table.column("clicked").to_numpy()
    users = np.array([int(u[1:]) for u in table.column("user_id").to_pylist()])
    items = np.array([int(i[1:]) for i in table.column("item_id").to_pylist()])
    without_ids = np.log(ctr / (1 - ctr)) - pop.user_bias[users] - pop.item_bias[items]
    bayes = sample_data.bayes_auc(ctr, clicked)
    assert 0.95 < roc_auc(clicked, without_ids) / bayes < 0.995  # the ids still add something


def test_population_grows_with_the_data_and_popularity_is_skewed() -> None:
    pop = sample_data.population_for(1_000_000, seed=1)
    assert 1000 <= len(pop.user_bias) <= 10_000 and 1000 <= len(pop.item_bias) <= 10_000
    top = np.sort(pop.item_weight)[::-1]
    assert top[: len(top) // 100].sum() > 0.2  # the top 1% of items get over a fifth of the events
