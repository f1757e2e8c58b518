"""Task callbacks: a failed step, or a model the gate refused, tells someone.

Every message goes to the task log. To send it further (Slack, e-mail, a pager), set
`TFPIPE_NOTIFY=package.module:function`; tfpipe calls `function(message, context)` with a
one-line message that names the DAG, the day, the task and why.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)


def _hook() -> Callable[[str, Mapping[str, Any]], None] | None:
    target = os.environ.get("TFPIPE_NOTIFY", "")
    if not target:
        return None
    module, _, name = target.partition(":")
    if not name:
        raise ValueError(f"TFPIPE_NOTIFY must look like package.module:function, got {target!r}")
    fn: Callable[[str, Mapping[str, Any]], None] = getattr(importlib.import_module(module), name)
    return fn


def message(context: Mapping[str, Any], what: str) -> str:
    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    ds = context.get("ds", "?")
    reason = context.get("exception")
    return f"tfpipe {dag_id} ds={ds}: {task_id} {what}" + (f": {reason}" if reason else "")


def _send(text: str, context: Mapping[str, Any]) -> None:
    log.warning("%s", text)
    hook = _hook()
    if hook is not None:
        hook(text, context)


def on_failure(context: Mapping[str, Any]) -> None:
    _send(message(context, "failed"), context)


def on_gate_refused(context: Mapping[str, Any]) -> None:
    """publish_model was skipped: the new model was not blessed (or a newer one is)."""
    _send(message(context, "skipped, the model was not published (scoring keeps the blessed model)"), context)
