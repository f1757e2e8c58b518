"""The step table: the daily chain in order, one record per step."""

from __future__ import annotations

from tfpipe_operators.operators import job, pod
from tfpipe_operators.steps import DAILY, REGISTRY, SELECT_TRIAL, STEPS


def test_the_daily_steps_are_the_chain_of_the_design_in_order() -> None:
    assert [s.task_id for s in DAILY] == [
        "extract_transform",
        "train",
        "export_serving_model",
        "evaluate_gate",
        "publish_model",
        "batch_score",
        "publish_scores",
    ]
    assert list(STEPS) == [*(s.task_id for s in DAILY), SELECT_TRIAL.task_id]
    assert REGISTRY.task_id not in STEPS  # its own arguments, not a day's step's


def test_the_beam_steps_run_on_dataflow_and_only_train_asks_for_a_gpu() -> None:
    assert {s.task_id for s in DAILY if s.dataflow} == {"extract_transform", "batch_score"}
    assert {s.task_id for s in DAILY if s.gpu} == {"train"}


def test_every_link_a_step_names_is_one_its_operators_show() -> None:
    known = {*job._BY_LINK, *pod._BY_LINK, *pod._DATAFLOW_BY_LINK}
    assert {s.ui_link for s in STEPS.values() if s.ui_link} <= known
