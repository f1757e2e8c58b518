"""Airflow DAG file: every pipeline spec under dags/pipelines/ becomes a `<pipeline>_daily` DAG.

Add a pipeline by adding `pipelines/<name>/pipeline.yaml` and its SQL; nothing here
changes. TFPIPE_SPECS_DIR points elsewhere if the specs live outside the dags folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfpipe_operators.dag_factory import build_dags

SPECS_DIR = Path(os.environ.get("TFPIPE_SPECS_DIR", Path(__file__).parent / "pipelines"))

globals().update(build_dags(SPECS_DIR))
