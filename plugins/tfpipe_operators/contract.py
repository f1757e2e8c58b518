"""What a job command and its launcher agree on, in one place: exit codes and the result.

The Airflow side (the local operator's hook, the pod operator) and the jobs side (`tfpipe-job`)
both import this module, so it imports nothing.
"""

from __future__ import annotations

EXIT_SKIP = 99  # "skip this task": the step had nothing to do (e.g. the gate refused the model)
EXIT_TERMINATED = 128 + 15  # what a shell reports for a process ended by SIGTERM
# The result (the task's XCom) is one JSON object: printed as the last stdout line after this
# prefix, written to the file RESULT_FILE_ENV names when a local launcher sets it, and in a
# pod to XCOM_FILE (the cncf-kubernetes sidecar's convention).
RESULT_PREFIX = "TFPIPE_RESULT "
RESULT_FILE_ENV = "TFPIPE_RESULT_FILE"
XCOM_FILE = "/airflow/xcom/return.json"
