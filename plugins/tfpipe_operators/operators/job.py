"""TfpipeJobOperator: one job command as a local subprocess (the `local` profile).

`step_task` and `trials_task` are the `local` profile's side of `Profile.operators`;
`operators/pod.py` has the same two for the `gcp` profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from tfpipe_operators.contract import EXIT_SKIP
from tfpipe_operators.hooks.job_command import JobCommandHook
from tfpipe_operators.links import TensorBoardLink
from tfpipe_operators.profiles import Profile
from tfpipe_operators.spec import PipelineSpec
from tfpipe_operators.steps import Step


class TfpipeJobOperator(BaseOperator):  # type: ignore[misc]
    """Run `<job_cli> <arguments...>` and return the job's result as XCom.

    Exit code 99 marks the task skipped (the job decided there is nothing to do, e.g.
    the gate refused the model); any other non-zero code fails it with the job's last
    lines in the error.
    """

    template_fields: Sequence[str] = ("arguments", "env")
    ui_color = "#ffd54f"

    def __init__(self, *, job_cli: str, arguments: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_cli = job_cli
        self.arguments = arguments
        self.env = env
        self._hook: JobCommandHook | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        self._hook = JobCommandHook()
        run = self._hook.run([self.job_cli, *self.arguments], env=self.env)
        if run.exit_code == EXIT_SKIP:
            raise AirflowSkipException(str(run.result.get("skipped", "the job had nothing to do")))
        if run.exit_code != 0:
            last = "\n".join(run.tail[-12:])
            raise AirflowException(f"job command failed with exit code {run.exit_code}; its last lines:\n{last}")
        return run.result

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.kill()


class TfpipeTrainJobOperator(TfpipeJobOperator):
    """The local `train` step: the same command, with a TensorBoard link to the model's logs."""

    operator_extra_links = (TensorBoardLink(),)


# The operator of a step, by the extra link it shows (Step.ui_link; the drift picture is a Dataflow pod's).
_BY_LINK: dict[str | None, type[TfpipeJobOperator]] = {"tensorboard": TfpipeTrainJobOperator}


def step_task(
    spec: PipelineSpec, profile: Profile, step: Step, arguments: list[str], gpus: int, **kwargs: Any
) -> TfpipeJobOperator:
    """The step as a local subprocess (no GPU is asked for: the job uses what the machine has)."""
    operator = _BY_LINK.get(step.ui_link, TfpipeJobOperator)
    return operator(job_cli=profile.job_cli, arguments=arguments, **kwargs)


def trials_task(spec: PipelineSpec, profile: Profile, step: Step, trials: Any, gpus: int, **kwargs: Any) -> Any:
    """One mapped task instance per trial's argument list (the tune DAG's `train`)."""
    operator = _BY_LINK.get(step.ui_link, TfpipeJobOperator)
    return operator.partial(job_cli=profile.job_cli, **kwargs).expand(arguments=trials)
