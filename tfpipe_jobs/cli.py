"""`tfpipe-job`: the command line every heavy step runs through.

The same command runs in a local subprocess, in a Kubernetes pod or as a Dataflow
launcher. Its last line on stdout is `TFPIPE_RESULT <json>`; the same JSON goes to the file
`$TFPIPE_RESULT_FILE` names (the local operator's XCom, read from there because stdout and
stderr share one pipe), and in a pod to `/airflow/xcom/return.json` (the cncf-kubernetes
sidecar convention). Exit code 99 means "skip this task" (e.g. the
gate refused the model, so there is nothing to publish).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from tfpipe_operators.contract import EXIT_SKIP, EXIT_TERMINATED, RESULT_FILE_ENV, RESULT_PREFIX, XCOM_FILE
from tfpipe_operators.steps import REGISTRY, STEPS

log = logging.getLogger("tfpipe_jobs")


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE (e.g. train.epochs=5), got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _run_params(text: str, overridable: list[str], where: str) -> dict[str, Any]:
    """The Airflow run's params: a variant and values for keys the spec marks overridable.

    Keys come as config keys (`train.epochs`, what the DAG passes) or as the trigger
    form's names (`train_epochs`); both are returned as config keys. Their values are
    checked by resolve_config, whose errors then name the run param, not the spec file.
    """
    from tfpipe_operators.config import run_param_name

    if not text:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--run-params is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(params, dict):
        raise SystemExit(f"--run-params must be a JSON object, got {text!r}")
    by_param_name = {run_param_name(key): key for key in overridable}
    out: dict[str, Any] = {}
    refused = []
    for name, value in params.items():
        key = name if name == "variant" or name in overridable else by_param_name.get(name)
        if key is None:
            refused.append(name)
        else:
            out[key] = value
    if refused:
        allowed = ", ".join(f"{run_param_name(key)} ({key})" for key in overridable) or "none"
        raise SystemExit(
            f"run params {', '.join(sorted(refused))} (from the Airflow run / --run-params) are not overridable "
            f"in {where}; the spec's overridable keys are: {allowed}"
        )
    return out


def _context(args: argparse.Namespace) -> Any:
    from tfpipe_jobs import select_trial
    from tfpipe_jobs.artifacts import RunPaths
    from tfpipe_jobs.context import JobContext
    from tfpipe_operators.config import resolve_config
    from tfpipe_operators.spec import load_spec, spec_queries
    from tfpipe_operators.warehouse import open_warehouse

    spec = load_spec(args.spec)
    overrides = _overrides(args.set)
    run = _run_params(args.run_params, spec.overridable, str(spec.path))
    # Say which argument named an unknown variant: the spec file is not at fault.
    known = ", ".join(sorted(spec.variants)) or "none"
    run_variant = run.pop("variant", None)
    if run_variant and run_variant not in spec.variants:
        raise SystemExit(f"run param variant={run_variant!r}: {spec.path} has no such variant (it defines: {known})")
    if args.variant and args.variant not in spec.variants:
        raise SystemExit(f"--variant {args.variant!r}: {spec.path} has no such variant (it defines: {known})")
    variant = run_variant or args.variant or None
    paths = RunPaths(root=args.artifact_root, pipeline=spec.pipeline, ds=args.ds.isoformat(), trial=args.trial)
    tuned = None if args.ignore_tuned else select_trial.read(paths)
    config = resolve_config(
        spec,
        variant=variant,
        overrides=overrides,
        run_params=run,
        tuned=(tuned or {}).get("overrides"),
        overrides_source="--set",
        tuned_source=f"tuned config {paths.tuned_file}",
    )
    ctx = JobContext(
        spec=spec,
        config=config,
        ds=args.ds,
        paths=paths,
        tuned=tuned,
        overrides={**overrides, **run},
        warehouse=open_warehouse(args.warehouse),
        runner=args.runner,
        beam_args=tuple(args.beam_arg),
    )
    # The spec query this step runs is checked before the step starts: it uses @ds and returns
    # every column the spec needs (a missing one otherwise fails deep inside Beam or tf.Transform).
    query = {"extract_transform": "source", "batch_score": "scoring"}.get(getattr(args, "command", ""))
    if query is not None:
        ctx.warehouse.check_query(spec, spec_queries(spec)[query], ctx.query_params).require()
    return ctx


def _with_beam_job(result: dict[str, Any]) -> dict[str, Any]:
    """Add the Dataflow job id the step launched (gcp), so XCom and the UI link can name it."""
    from tfpipe_jobs.beam_jobs import runner

    return {**result, **runner.launched_jobs()}


# Each step's code: a module (or package) named for its task id whose `run(ctx)` is the step.
# Imported when the step runs: a command loads TensorFlow or Beam only when it needs them.
STEP_MODULES = {
    "extract_transform": "tfpipe_jobs.beam_jobs.extract_transform",
    "train": "tfpipe_jobs.training.train",
    "export_serving_model": "tfpipe_jobs.serving_export.export_serving_model",
    "evaluate_gate": "tfpipe_jobs.evaluate_gate",
    "publish_model": "tfpipe_jobs.publish_model",
    "batch_score": "tfpipe_jobs.beam_jobs.batch_score",
    "publish_scores": "tfpipe_jobs.publish_scores",
    "select_trial": "tfpipe_jobs.select_trial",
}


def _run_step(args: argparse.Namespace) -> dict[str, Any]:
    from tfpipe_jobs.tensorflow_import import keras_3_left_out

    with keras_3_left_out():  # a step that imports TensorFlow starts about 1 s sooner (measured)
        step = importlib.import_module(STEP_MODULES[args.command])
    result: dict[str, Any] = step.run(_context(args))
    return _with_beam_job(result) if STEPS[args.command].dataflow else result


def _rebuild_registry(args: argparse.Namespace) -> dict[str, Any]:
    from tfpipe_jobs import registry
    from tfpipe_jobs.artifacts import RunPaths
    from tfpipe_operators.spec import load_spec

    pipeline = load_spec(args.spec).pipeline
    return registry.rebuild(RunPaths(root=args.artifact_root, pipeline=pipeline, ds=""))


def _registry(args: argparse.Namespace) -> dict[str, Any]:
    """`tfpipe-job registry list|rollback|bless`: an operator's look at, or change to, the registry."""
    from tfpipe_jobs import registry_ops
    from tfpipe_jobs.artifacts import RunPaths
    from tfpipe_operators.spec import load_spec

    pipeline = load_spec(args.spec).pipeline
    today = max(date.today(), datetime.now(UTC).date())
    ds = args.ds.isoformat() if args.ds else None
    version = args.version.strip()
    try:
        if args.action == "list":
            given = (("--version", version), ("--reason", args.reason), ("--expected-current", args.expected_current))
            for option, value in ((option, value.strip()) for option, value in given):
                if value:
                    raise registry_ops.RegistryCommandError(f"{option} is not used by list (got {value!r})")
            paths = RunPaths(root=args.artifact_root, pipeline=pipeline, ds="")
            return registry_ops.history(paths, ds or today.isoformat())
        by = registry_ops.who(args.who, os.environ)
        if args.action == "rollback":
            paths = RunPaths(root=args.artifact_root, pipeline=pipeline, ds="")
            return registry_ops.rollback(paths, version, ds, args.reason, by, today, args.expected_current)
        if ds is None:
            raise registry_ops.RegistryCommandError("--ds is required: the day whose refused model is blessed")
        paths = RunPaths(root=args.artifact_root, pipeline=pipeline, ds=ds)
        return registry_ops.bless_refused(paths, args.reason, by, args.expected_current, version=version)
    except registry_ops.RegistryCommandError as exc:
        raise SystemExit(f"tfpipe-job registry {args.action}: {exc}") from None


def _sample_data(args: argparse.Namespace) -> dict[str, Any]:
    from tfpipe_jobs.tools import sample_data
    from tfpipe_operators.warehouse import DuckDBWarehouse, open_warehouse

    warehouse = open_warehouse(args.warehouse)
    if not isinstance(warehouse, DuckDBWarehouse):
        raise SystemExit(f"--warehouse {args.warehouse}: the sample data is written to a DuckDB warehouse only")
    counts = sample_data.generate(
        warehouse.path,
        end_date=args.end_date,
        days=args.days,
        rows_per_day=args.rows_per_day,
        candidates_per_day=args.candidates_per_day,
        seed=args.seed,
    )
    return {"warehouse": args.warehouse, **counts}


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _optional_date(text: str) -> date | None:
    """A date, or None for an empty value (a form field left blank)."""
    return _iso_date(text) if text.strip() else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfpipe-job", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def step(name: str, fn: Callable[[argparse.Namespace], dict[str, Any]], help_text: str) -> None:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--spec", required=True, type=Path, help="the pipeline's pipeline.yaml")
        p.add_argument("--ds", required=True, type=_iso_date, help="the day whose data is processed")
        p.add_argument("--artifact-root", required=True, help="local folder or gs:// prefix")
        p.add_argument("--warehouse", required=True, help="duckdb:///path.duckdb or bigquery://project/dataset")
        p.add_argument("--runner", default="DirectRunner", help="Beam runner (DirectRunner locally)")
        p.add_argument("--variant", default="", help="a variant named in the spec")
        p.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. train.epochs=5"
        )
        p.add_argument("--run-params", default="", help="JSON of the Airflow run's params (variant, overridable keys)")
        p.add_argument("--trial", default="", help="tuning trial name: train into <ds>/trials/<name>/")
        p.add_argument("--ignore-tuned", action="store_true", help="do not apply the tune DAG's best config")
        p.add_argument("--beam-arg", action="append", default=[], help="extra Beam pipeline option")
        p.set_defaults(fn=fn)

    for task_id, definition in STEPS.items():
        step(task_id, _run_step, definition.summary)

    rebuild = sub.add_parser(
        "rebuild-registry", help="write registry/blessed.json anew from its per-blessing records (repair)"
    )
    rebuild.add_argument("--spec", required=True, type=Path, help="the pipeline's pipeline.yaml")
    rebuild.add_argument("--artifact-root", required=True, help="local folder or gs:// prefix")
    rebuild.set_defaults(fn=_rebuild_registry)

    reg = sub.add_parser(REGISTRY.task_id, help=REGISTRY.summary)
    actions = reg.add_subparsers(dest="action", required=True)
    # Every action takes the same options (an empty value is "not given"), so the registry DAG
    # passes its whole form whatever the action; each action says which it needs.
    for action, help_text in (
        ("list", "every registry event, newest first, and which version scores --ds (default today)"),
        ("rollback", "from --ds (default: the current event's) on, score with the earlier blessed --to version"),
        ("bless", "bless by hand the model the gate refused for --ds"),
    ):
        p = actions.add_parser(action, help=help_text, description=help_text)
        p.add_argument("--spec", required=True, type=Path, help="the pipeline's pipeline.yaml")
        p.add_argument("--artifact-root", required=True, help="local folder or gs:// prefix")
        p.add_argument(
            "--ds",
            "--from-ds",
            default=None,
            type=_optional_date,
            help="list: the day to resolve; rollback: the first day rolled back; bless: the refused day",
        )
        p.add_argument(
            "--version",
            "--to",
            default="",
            help="rollback: the blessed version to score with; bless: the refused version expected (a check)",
        )
        p.add_argument(
            "--expected-current",
            default="",
            metavar="VERSION",
            help="rollback, bless (required): the version you expect to score the day now, as `list` shows it "
            "('none': no model); the change is refused if the registry changed since",
        )
        p.add_argument("--reason", default="", help="why (rollback, bless: required, recorded)")
        p.add_argument("--who", default="", help="who makes the change (default: $TFPIPE_USER, $USER)")
        p.set_defaults(fn=_registry)

    gen = sub.add_parser("sample-data", help="write the synthetic ctr tables into a DuckDB warehouse")
    gen.add_argument("--warehouse", required=True)
    gen.add_argument("--end-date", required=True, type=_iso_date)
    gen.add_argument("--days", type=int, default=3)
    gen.add_argument("--rows-per-day", type=int, default=20_000)
    gen.add_argument("--candidates-per-day", type=int, default=5_000)
    gen.add_argument("--seed", type=int, default=7)
    gen.set_defaults(fn=_sample_data)
    return parser


def emit_result(result: dict[str, Any]) -> None:
    text = json.dumps(result, sort_keys=True, default=str)
    files = [XCOM_FILE] if os.path.isdir(os.path.dirname(XCOM_FILE)) else []
    files += [os.environ[RESULT_FILE_ENV]] if os.environ.get(RESULT_FILE_ENV) else []
    for name in files:
        staged = Path(f"{name}.partial")
        staged.write_text(text)
        staged.replace(name)  # a reader finds the whole result or none
    # The line in one write: stderr shares the launcher's pipe, and a line written in two
    # parts (print writes its end separately) can get a log line between them.
    sys.stdout.write(f"{RESULT_PREFIX}{text}\n")
    sys.stdout.flush()


class Terminated(SystemExit):
    """SIGTERM (how Airflow and Kubernetes stop a task), raised in the main thread so every
    `finally` and staged output cleans up on the way out."""


# Set by the handler: what then escapes the step is how it stopped, whatever it is called.
_SIGTERM_RECEIVED = threading.Event()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    _SIGTERM_RECEIVED.set()
    raise Terminated(EXIT_TERMINATED)


def _refuse_future(args: argparse.Namespace) -> None:
    """A day that has not happened yet has no data: its run would publish an empty day."""
    ds = getattr(args, "ds", None)
    latest = max(date.today(), datetime.now(UTC).date())
    if ds is not None and ds > latest:
        raise SystemExit(f"--ds {ds} is in the future (today is {latest}): a day is processed after it ends")


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `tfpipe-job` command itself, not a call from another program
        from tfpipe_jobs import stderr_filter

        stderr_filter.install()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    _refuse_future(args)
    from tfpipe_jobs.context import SkipStep

    started = time.monotonic()
    in_main_thread = threading.current_thread() is threading.main_thread()
    _SIGTERM_RECEIVED.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        result = args.fn(args)
    except SkipStep as exc:
        log.info("skipped: %s", exc)
        emit_result({"skipped": str(exc)})
        return EXIT_SKIP
    except Terminated:
        log.error("stopped by SIGTERM: temporary outputs removed, nothing published by this step")
        return EXIT_TERMINATED
    except Exception:
        if not _SIGTERM_RECEIVED.is_set():
            raise
        # Raised inside a Beam transform, Terminated comes back as the runner's RuntimeError
        # naming it ("tfpipe_jobs.cli.Terminated: 143 [while running ...]").
        log.exception("stopped by SIGTERM: temporary outputs removed, nothing published by this step")
        return EXIT_TERMINATED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    result["seconds"] = round(time.monotonic() - started, 2)
    emit_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
