"""The job's output in the task log at the level each line says it has."""

from __future__ import annotations

import logging
import sys

from tfpipe_operators.hooks.job_command import JobCommandHook, line_level

LINES = [
    ("2026-12-02 13:00:00,001 INFO tfpipe_jobs: extract: 2000 rows", logging.INFO),
    ("2026-12-02 13:00:00,002 WARNING tfpipe_jobs: 12 rows have a NULL label", logging.WARNING),
    ("2026-12-02 13:00:00,003 ERROR tfpipe_jobs: stopped by SIGTERM", logging.ERROR),
    ("2026-12-02 13:00:00,004 DEBUG urllib3: connection", logging.DEBUG),
    ("WARNING:absl:a warning in logging's default format", logging.WARNING),
    ("I0000 00:00:1796219455.156625    6937 port.cc:153] oneDNN custom operations are on.", logging.INFO),
    ("W1202 13:00:00.123456   42 loader.cc:12] a native warning", logging.WARNING),
    ("E0000 00:00:1796219487.228272    7180 some_op.cc:52] a native error", logging.ERROR),
    ("  a continuation line of the native error", logging.ERROR),
    ("F1202 13:00:00.123456   42 check.cc:9] Check failed", logging.CRITICAL),
    ("2026-12-02 13:00:01,000 INFO tfpipe_jobs: back to info", logging.INFO),
    ("Traceback (most recent call last):", logging.ERROR),
    ('  File "x.py", line 1, in <module>', logging.ERROR),
]


def test_each_kind_of_line_gets_its_level() -> None:
    level = logging.INFO
    for line, expected in LINES:
        level = line_level(line, level)
        assert level == expected, line


def test_a_real_job_process_is_relayed_at_each_lines_level() -> None:
    from structlog.testing import capture_logs

    script = "import sys\nfor line in sys.argv[1:]:\n    print(line, file=sys.stderr, flush=True)\n"
    script += "print('TFPIPE_RESULT {\"rows\": 1}', flush=True)\n"
    with capture_logs() as events:
        run = JobCommandHook().run([sys.executable, "-c", script, *(line for line, _ in LINES)])
    assert run.exit_code == 0 and run.result == {"rows": 1}
    names = {line for line, _ in LINES}
    relayed = [(e["event"], e["log_level"]) for e in events if e["event"] in names]
    # DEBUG stays out of the task log at its default level (INFO), as Airflow's own debug lines do
    shown = [(line, logging.getLevelName(level).lower()) for line, level in LINES if level > logging.DEBUG]
    assert relayed == shown


def test_a_log_line_inside_the_printed_result_is_relayed_and_the_result_still_read() -> None:
    # What a busy job did: the result line went out in two writes, and a warning from another
    # thread, on stderr (the same pipe), landed between them.
    from structlog.testing import capture_logs

    script = (
        "import os, sys\n"
        "os.write(1, b'TFPIPE_RESULT {\"rows\": 3}')\n"
        "os.write(2, b'W1202 13:00:00.123456   42 loader.cc:12] a warning from another thread')\n"
        "os.write(1, b'\\n')\n"
    )
    with capture_logs() as events:
        run = JobCommandHook().run([sys.executable, "-c", script])
    assert run.exit_code == 0 and run.result == {"rows": 3}
    relayed = [(e["event"], e["log_level"]) for e in events if e["event"].startswith("W1202")]
    assert relayed == [("W1202 13:00:00.123456   42 loader.cc:12] a warning from another thread", "warning")]


def test_the_result_file_is_the_result_whatever_stdout_printed() -> None:
    script = (
        "import json, os\n"
        "open(os.environ['TFPIPE_RESULT_FILE'], 'w').write(json.dumps({'rows': 5, 'from': 'file'}))\n"
        'print(\'TFPIPE_RESULT {"rows": 5, "broken\', flush=True)\n'
    )
    run = JobCommandHook().run([sys.executable, "-c", script])
    assert run.result == {"rows": 5, "from": "file"}
    assert run.tail == ['TFPIPE_RESULT {"rows": 5, "broken']  # an unreadable line is kept, not dropped
