"""Search dimensions: what a spec's `search_space` entries draw, and how bad ones are refused."""

from __future__ import annotations

import random

import pytest

from tfpipe_operators.search_dimensions import parse_dimension


def test_each_kind_draws_within_its_range() -> None:
    rng = random.Random(0)
    for _ in range(200):
        assert 0.1 <= parse_dimension({"uniform": [0.1, 0.5]}).draw(rng) <= 0.5
        value = parse_dimension({"log_uniform": [1e-4, 1e-1]}).draw(rng)
        assert 1e-4 <= value <= 1e-1 and isinstance(value, float)
        drawn = parse_dimension({"int": [2, 4]}).draw(rng)
        assert drawn in (2, 3, 4) and isinstance(drawn, int)
        assert parse_dimension({"choice": ["adam", "sgd"]}).draw(rng) in ("adam", "sgd")


def test_the_same_seed_draws_the_same_values() -> None:
    dim = parse_dimension({"log_uniform": [1e-4, 1e-1]})
    first, second = random.Random(7), random.Random(7)
    assert [dim.draw(first) for _ in range(5)] == [dim.draw(second) for _ in range(5)]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"uniform": [0, 1], "int": [1, 2]}, "exactly one of uniform, log_uniform, int, choice; got ['int', 'uni"),
        ({"normal": [0, 1]}, "Input should be 'uniform', 'log_uniform', 'int' or 'choice'"),
        ({"uniform": [1, 0]}, "uniform bounds [1, 0] are not a valid range"),
        ({"log_uniform": [0, 1]}, "log_uniform bounds [0, 1] are not a valid range"),
        ({"int": [1, 2, 3]}, "int takes [low, high], got [1, 2, 3]"),
        ({"uniform": ["a", "b"]}, "uniform takes [low, high], got ['a', 'b']"),
        ({"choice": []}, "List should have at least 1 item"),
    ],
)
def test_bad_dimensions_say_why(raw: dict[str, list[object]], reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_dimension(raw)
    assert reason in str(refused.value)
    assert "Value error," not in str(refused.value)  # the reason in words, not pydantic's wrapping
