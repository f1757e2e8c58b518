"""Synthetic click-through data for the sample `ctr` pipeline.

Users, items and context drive a known click probability (`true_ctr`); the label is
drawn from it. Most of the signal is what a model can learn from the columns at the data
volume: a market taste (country x item category, as tastes are largely shared by a
market), the device, the hour, the user's age, the price and the position on the page.
Users and items add modest biases of their own, and the population grows with the data
so a typical user or item is seen a few hundred times while ids stay high-cardinality
(thousands at 1M rows) with skewed popularity. Because the generator stores that probability, the best AUC any model
can reach on an eval set is computable (the Bayes-optimal AUC), which is what the
training quality target is measured against. Deterministic by seed: the population
(users, items, their latent tastes) depends on the seed only, each day's rows on the
seed and the date, so a day can be regenerated alone and comes out the same.

Rows are produced in chunks and appended to DuckDB so memory stays flat at 10M+ rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

CATEGORIES = [f"cat_{i:02d}" for i in range(12)]
DEVICES = ["mobile", "desktop", "tablet", "tv"]
DEVICE_EFFECT = np.array([0.2, 0.0, -0.2, -0.6])
COUNTRIES = [f"c{i:02d}" for i in range(40)]
CHUNK_ROWS = 500_000
MARKET_TASTE_SD = 0.8
USER_BIAS_SD = 0.25
ITEM_BIAS_SD = 0.3
ROWS_PER_ID = 400  # population size: one user and one item per this many daily rows

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR, event_date DATE, user_id VARCHAR, item_id VARCHAR,
    item_category VARCHAR, device VARCHAR, country VARCHAR, hour INTEGER,
    user_age DOUBLE, item_price DOUBLE, position INTEGER,
    clicked INTEGER, true_ctr DOUBLE
)"""
CANDIDATES_DDL = """
CREATE TABLE IF NOT EXISTS candidates (
    event_date DATE, user_id VARCHAR, item_id VARCHAR,
    item_category VARCHAR, device VARCHAR, country VARCHAR, hour INTEGER,
    user_age DOUBLE, item_price DOUBLE, position INTEGER, true_ctr DOUBLE
)"""


@dataclass(frozen=True)
class Population:
    """Users and items with the latent effects the click probability is made of."""

    user_bias: np.ndarray
    market_taste: np.ndarray  # countries x categories
    user_country: np.ndarray
    user_age: np.ndarray  # NaN = unknown
    user_weight: np.ndarray  # how active each user is (Zipf-like)
    item_bias: np.ndarray
    item_category: np.ndarray
    item_price: np.ndarray
    item_weight: np.ndarray

    @classmethod
    def build(cls, n_users: int, n_items: int, seed: int) -> Population:
        rng = np.random.default_rng([seed, 0])
        user_weight = 1.0 / np.arange(1, n_users + 1) ** 0.6
        item_weight = 1.0 / np.arange(1, n_items + 1) ** 0.8
        age = rng.normal(38, 12, n_users).clip(16, 90).round()
        age[rng.random(n_users) < 0.07] = np.nan
        return cls(
            user_bias=rng.normal(0, USER_BIAS_SD, n_users),
            market_taste=rng.normal(0, MARKET_TASTE_SD, (len(COUNTRIES), len(CATEGORIES))),
            user_country=rng.integers(0, len(COUNTRIES), n_users),
            user_age=age,
            user_weight=user_weight / user_weight.sum(),
            item_bias=rng.normal(0, ITEM_BIAS_SD, n_items),
            item_category=rng.integers(0, len(CATEGORIES), n_items),
            item_price=np.exp(rng.normal(3.0, 0.9, n_items)).round(2),
            item_weight=item_weight / item_weight.sum(),
        )


def population_for(rows_per_day: int, seed: int) -> Population:
    """Size the population with the data so ids stay high-cardinality but learnable."""
    n_users = int(np.clip(rows_per_day // ROWS_PER_ID, 200, 200_000))
    n_items = int(np.clip(rows_per_day // ROWS_PER_ID, 100, 50_000))
    return Population.build(n_users, n_items, seed)


def _true_ctr(
    pop: Population, users: np.ndarray, items: np.ndarray, device: np.ndarray, hour: np.ndarray, position: np.ndarray
) -> np.ndarray:
    cat = pop.item_category[items]
    age = np.nan_to_num(pop.user_age[users], nan=38.0)
    logit = (
        -1.6
        + pop.user_bias[users]
        + pop.item_bias[items]
        + pop.market_taste[pop.user_country[users], cat]
        + DEVICE_EFFECT[device]
        + 0.4 * np.sin(hour / 24.0 * 2 * np.pi)
        - 0.45 * np.log1p(position)
        - 0.3 * (np.log(pop.item_price[items]) - 3.0)
        + 0.012 * (age - 38.0)
    )
    return 1.0 / (1.0 + np.exp(-logit))


def _context(pop: Population, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    users = rng.choice(len(pop.user_bias), n, p=pop.user_weight)
    items = rng.choice(len(pop.item_bias), n, p=pop.item_weight)
    return {
        "users": users,
        "items": items,
        "device": rng.choice(len(DEVICES), n, p=[0.55, 0.3, 0.1, 0.05]),
        "hour": rng.integers(0, 24, n),
        "position": rng.integers(1, 21, n),
    }


def _columns(pop: Population, ctx: dict[str, np.ndarray], ctr: np.ndarray) -> dict[str, pa.Array]:
    users, items = ctx["users"], ctx["items"]
    age = pop.user_age[users]
    return {
        "user_id": pa.array(np.char.add("u", users.astype(str))),
        "item_id": pa.array(np.char.add("i", items.astype(str))),
        "item_category": pa.array(np.asarray(CATEGORIES)[pop.item_category[items]]),
        "device": pa.array(np.asarray(DEVICES)[ctx["device"]]),
        "country": pa.array(np.asarray(COUNTRIES)[pop.user_country[users]]),
        "hour": pa.array(ctx["hour"].astype(np.int32)),
        "user_age": pa.array(age, mask=np.isnan(age)),
        "item_price": pa.array(pop.item_price[items]),
        "position": pa.array(ctx["position"].astype(np.int32)),
    }


def events_for_day(pop: Population, day: date, rows: int, seed: int, offset: int = 0) -> pa.Table:
    """`rows` events of one day, rows [offset, offset+rows) of that day's stream."""
    rng = np.random.default_rng([seed, day.toordinal(), offset])
    ctx = _context(pop, rng, rows)
    ctr = _true_ctr(pop, ctx["users"], ctx["items"], ctx["device"], ctx["hour"], ctx["position"])
    clicked = (rng.random(rows) < ctr).astype(np.int32)
    ids = np.char.add(f"{day:%Y%m%d}-", np.arange(offset, offset + rows).astype(str))
    cols = {"event_id": pa.array(ids), "event_date": pa.array([day] * rows, pa.date32())}
    cols.update(_columns(pop, ctx, ctr))
    cols["clicked"] = pa.array(clicked)
    cols["true_ctr"] = pa.array(ctr)
    return pa.table(cols)


def candidate_chunks(pop: Population, day: date, rows: int, seed: int) -> Iterator[pa.Table]:
    """Unique (user_id, item_id) pairs to score for a day (the analysts' lookup keys), in chunks.

    Users and items are drawn uniformly, so millions of distinct pairs exist; pairs are
    made unique as integers first, and only one chunk of rows is turned into strings at a time.
    """
    rng = np.random.default_rng([seed, day.toordinal(), 1_000_003])
    n_users, n_items = len(pop.user_bias), len(pop.item_bias)
    if rows > n_users * n_items // 2:
        raise ValueError(f"{rows} candidate pairs asked for, but the population has {n_users} users x {n_items} items")
    pairs = np.unique(rng.integers(0, n_users * n_items, int(rows * 1.05) + 64, dtype=np.int64))
    while pairs.size < rows:
        more = rng.integers(0, n_users * n_items, rows, dtype=np.int64)
        pairs = np.unique(np.concatenate([pairs, more]))
    pairs = rng.permutation(pairs)[:rows]
    for start in range(0, rows, CHUNK_ROWS):
        chunk = pairs[start : start + CHUNK_ROWS]
        n = chunk.size
        ctx = {
            "users": chunk // n_items,
            "items": chunk % n_items,
            "device": rng.choice(len(DEVICES), n, p=[0.55, 0.3, 0.1, 0.05]),
            "hour": rng.integers(0, 24, n),
            "position": rng.integers(1, 21, n),
        }
        ctr = _true_ctr(pop, ctx["users"], ctx["items"], ctx["device"], ctx["hour"], ctx["position"])
        cols = {"event_date": pa.array([day] * n, pa.date32())}
        cols.update(_columns(pop, ctx, ctr))
        cols["true_ctr"] = pa.array(ctr)
        yield pa.table(cols)


def generate(
    warehouse: str | Path,
    end_date: date,
    days: int,
    rows_per_day: int,
    candidates_per_day: int,
    seed: int = 7,
    population_rows: int | None = None,
) -> dict[str, int]:
    """(Re)write `days` days ending at `end_date` into the DuckDB warehouse; return row counts.

    `population_rows` sizes the users and items (default: the larger daily volume); pass the
    same value to calls that must share one population.
    """
    import duckdb

    pop = population_for(population_rows or max(rows_per_day, candidates_per_day), seed)
    Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    counts = {"events": 0, "candidates": 0}
    with duckdb.connect(str(warehouse)) as con:
        con.execute(EVENTS_DDL)
        con.execute(CANDIDATES_DDL)
        for i in range(days):
            day = end_date - timedelta(days=days - 1 - i)
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM events WHERE event_date = ?", [day])
            con.execute("DELETE FROM candidates WHERE event_date = ?", [day])
            for offset in range(0, rows_per_day, CHUNK_ROWS):
                chunk = events_for_day(pop, day, min(CHUNK_ROWS, rows_per_day - offset), seed, offset)
                con.register("chunk", chunk)
                con.execute("INSERT INTO events SELECT * FROM chunk")
                con.unregister("chunk")
                counts["events"] += chunk.num_rows
            for cands in candidate_chunks(pop, day, candidates_per_day, seed):
                con.register("cands", cands)
                con.execute("INSERT INTO candidates SELECT * FROM cands")
                con.unregister("cands")
                counts["candidates"] += cands.num_rows
            con.execute("COMMIT")
            log.info("sample data: %s written (%d events, %d candidates)", day, rows_per_day, candidates_per_day)
    return counts


def bayes_auc(true_ctr: np.ndarray, labels: np.ndarray) -> float:
    """AUC of the true click probability: the ceiling for any model on these rows."""
    from tfpipe_jobs.metrics import roc_auc

    return roc_auc(labels, true_ctr)
