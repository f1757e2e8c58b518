"""Provider metadata: what `airflow providers list` shows for tfpipe."""

from __future__ import annotations

from typing import Any

from tfpipe_operators import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "tfpipe",
        "name": "tfpipe",
        "description": "Daily TensorFlow pipelines from one spec: extract, train, export, gate, score.",
        "versions": [__version__],
        "operators": [
            {
                "integration-name": "tfpipe",
                "python-modules": ["tfpipe_operators.operators.job", "tfpipe_operators.operators.pod"],
            }
        ],
        "sensors": [{"integration-name": "tfpipe", "python-modules": ["tfpipe_operators.sensors.partition"]}],
        "hooks": [
            {
                "integration-name": "tfpipe",
                "python-modules": ["tfpipe_operators.hooks.job_command", "tfpipe_operators.hooks.warehouse"],
            }
        ],
        "extra-links": [
            "tfpipe_operators.links.DataflowJobLink",
            "tfpipe_operators.links.PodLogsLink",
            "tfpipe_operators.links.TensorBoardLink",
            "tfpipe_operators.links.DriftReportLink",
        ],
        "integrations": [
            {"integration-name": "tfpipe", "external-doc-url": "https://pypi.org/project/tfpipe/", "tags": ["software"]}
        ],
    }
