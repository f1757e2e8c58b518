"""Publishing on gs://: outputs flip by one pointer object, the registry has one winner.

Run against fake-gcs-server (TensorFlow's GCS client through the TLS relay for the outputs,
google-cloud-storage for the registry's generation preconditions). fake-gcs-server honours
`if_generation_match` on uploads, which is all the registry relies on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gcp_emulated

Client = Callable[..., dict[str, Any]]


def _root(gcp_standins: Any) -> str:
    return f"{gcp_standins.artifact_root}/{uuid.uuid4().hex[:8]}"


def test_outputs_flip_by_one_pointer_and_superseded_versions_go(client_process: Client, gcp_standins: Any) -> None:
    result = client_process(
        """
        import tensorflow as tf
        from tfpipe_jobs import artifacts

        final = PARAMS["root"] + "/ctr/2026-11-21/data"
        seen = []
        for text in ("one", "two", "three"):
            with artifacts.staged_output(final) as out:
                artifacts.write_text(out + "/part-00000", text)
                # a reader during the write still gets the previous version, whole
                before = artifacts.published(final)
                seen.append(artifacts.read_text(before + "/part-00000") if before else None)
            seen.append(artifacts.read_text(artifacts.require_complete(final, "extract_transform") + "/part-00000"))
        try:
            with artifacts.staged_output(final) as out:
                artifacts.write_text(out + "/part-00000", "four")
                raise RuntimeError("the step failed")
        except RuntimeError:
            pass
        print(json.dumps({
            "seen": seen,
            "current": artifacts.read_text(artifacts.require_complete(final, "extract_transform") + "/part-00000"),
            "versions": sorted(p.rstrip("/").rsplit("/", 1)[1] for p in tf.io.gfile.glob(final + ".v-*")),
            "pointer": artifacts.read_text(final + "/_CURRENT").strip(),
        }))
        """,
        root=_root(gcp_standins),
    )
    assert result["seen"] == [None, "one", "one", "two", "two", "three"]
    assert result["current"] == "three"  # the failed fourth write published nothing
    # the current version and the one before it (a reader may still be on it); the first is gone,
    # and so is the failed write's
    assert len(result["versions"]) == 2 and result["pointer"] in result["versions"]


def test_a_writer_killed_mid_publish_leaves_nothing_a_reader_takes_for_complete(gcp_standins: Any) -> None:
    root = _root(gcp_standins)
    final = f"{root}/ctr/2026-11-21/data"
    writer = textwrap.dedent(
        f"""
        import sys, time
        from tfpipe_jobs import artifacts
        final = {final!r}
        with artifacts.staged_output(final) as out:
            artifacts.write_text(out + "/part-00000", "old")
        with artifacts.staged_output(final) as out:
            for i in range(3):
                artifacts.write_text(out + f"/part-0000{{i}}", "new")
            print("written", flush=True)
            time.sleep(600)  # killed here: data written, marker and pointer not
        """
    )
    env = gcp_standins.process_env(TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-c", writer], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    while proc.stdout.readline().strip() != "written":
        assert proc.poll() is None and time.monotonic() < deadline, "the writer never got mid-publish"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader = textwrap.dedent(
        f"""
        import json
        import tensorflow as tf
        from tfpipe_jobs import artifacts
        final = {final!r}
        current = artifacts.require_complete(final, "extract_transform")
        versions = [p.rstrip("/") for p in tf.io.gfile.glob(final + ".v-*")]
        state = {{
            "current": artifacts.read_text(current + "/part-00000"),
            "partial_is_complete": [artifacts.is_complete(v) for v in versions if v != current],
            "versions": len(versions),
        }}
        with artifacts.staged_output(final) as out:  # the next run of the step
            artifacts.write_text(out + "/part-00000", "rerun")
        state["after_rerun"] = len(tf.io.gfile.glob(final + ".v-*"))
        print(json.dumps(state))
        """
    )
    out = subprocess.run([sys.executable, "-c", reader], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["current"] == "old" and state["versions"] == 2
    assert state["partial_is_complete"] == [False]
    # the killed writer's version (its pid is gone on this host) is removed by the next writer
    assert state["after_rerun"] == 2


def test_concurrent_registry_updates_on_gcs_lose_no_blessing(client_process: Client, gcp_standins: Any) -> None:
    """Eight writers at once on one blessed.json: each write is conditioned on the generation it
    read, so a writer that lost the race reads again and retries instead of overwriting."""
    result = client_process(
        """
        import threading
        from tfpipe_jobs import registry
        from tfpipe_jobs.artifacts import RunPaths

        paths = RunPaths(PARAMS["root"], "ctr", "")
        days = [f"2026-10-{d:02d}" for d in range(1, 9)]
        barrier = threading.Barrier(len(days))

        errors = []

        def bless(ds):
            entry = {"ds": ds, "model_version": ds + "-x", "digest": "x", "blessed_at": ds}
            barrier.wait()
            try:
                registry._update(paths, lambda doc: registry._document(paths, [*(doc or {}).get("history", []), entry]))
            except Exception as exc:  # a thread's error would otherwise vanish
                errors.append(repr(exc))

        threads = [threading.Thread(target=bless, args=(ds,)) for ds in days]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        doc = registry.read_registry(paths)
        history = [e["ds"] for e in doc["history"]]
        print(json.dumps({"history": history, "current": doc["ds"], "days": days, "errors": errors}))
        """,
        root=_root(gcp_standins),
    )
    assert result["errors"] == []
    assert result["history"] == result["days"] and result["current"] == result["days"][-1]


def test_racing_publishes_on_gcs_keep_the_newer_day(gcp_standins: Any, ctr_spec_path: Path) -> None:
    """`publish_model` of 11-30 and 12-01 at once, ten rounds, each day's judged model on gs://:
    the 12-01 model is current every round and both blessings are kept."""
    cli = str(Path(sys.executable).parent / "tfpipe-job")
    env = gcp_standins.process_env(TF_CPP_MIN_LOG_LEVEL="2")
    days = ("2026-11-30", "2026-12-01")
    for round_ in range(10):
        root = _root(gcp_standins)
        setup = textwrap.dedent(
            f"""
            import json
            from tfpipe_jobs import artifacts, registry
            from tfpipe_jobs.artifacts import RunPaths
            versions = {{}}
            for ds in {list(days)!r}:
                paths = RunPaths({root!r}, "ctr", ds)
                with artifacts.staged_output(paths.serving) as out:
                    artifacts.write_text(out + "/saved_model/saved_model.pb", "a model of " + ds)
                serving = artifacts.require_complete(paths.serving, "export_serving_model")
                digest = registry.saved_model_digest(serving)
                version = registry.model_version(ds, digest)
                candidate = {{"serving": serving, "model_version": version, "digest": digest}}
                evaluation = {{"rules": ["PASS"], "metrics": {{"new": {{"auc": 0.7}}}}, "config_hash": "c",
                              "candidate": candidate}}
                with artifacts.staged_output(paths.eval) as out:
                    artifacts.write_json(out + "/evaluation.json", evaluation)
                    artifacts.write_text(out + "/verdict", "blessed\\n")
                versions[ds] = version
            print(json.dumps(versions))
            """
        )
        out = subprocess.run([sys.executable, "-c", setup], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-4000:]
        versions = json.loads(out.stdout.strip().splitlines()[-1])
        order = days if round_ % 2 else days[::-1]
        procs = [
            subprocess.Popen(
                [
                    *(cli, "publish_model", "--spec", str(ctr_spec_path), "--ds", ds, "--artifact-root", root),
                    *("--warehouse", gcp_standins.warehouse),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for ds in order
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-4000:]
        blessed = f"{root}/ctr/registry/blessed.json"
        read = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from tfpipe_jobs import artifacts; print(artifacts.read_text({blessed!r}))",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        doc = json.loads(read.stdout[read.stdout.index("{") :])
        assert doc["model_version"] == versions["2026-12-01"], round_
        assert [e["ds"] for e in doc["history"]] == list(days), round_


def test_two_rollbacks_on_gcs_made_on_the_same_state_cannot_both_win(client_process: Client, gcp_standins: Any) -> None:
    """Two operators saw 11-18's model scoring 11-18 and roll back to different versions at once:
    the generation precondition makes one write first, and the other is refused on what it wrote."""
    root = _root(gcp_standins)
    result = client_process(
        """
        import threading
        from datetime import date
        from tfpipe_jobs import artifacts, registry, registry_ops
        from tfpipe_jobs.artifacts import RunPaths

        root = PARAMS["root"]
        versions = {}
        for ds in ("2026-11-14", "2026-11-16", "2026-11-18"):
            paths = RunPaths(root, "ctr", ds)
            with artifacts.staged_output(paths.serving) as out:
                artifacts.write_text(out + "/saved_model/saved_model.pb", "a model of " + ds)
            serving = artifacts.require_complete(paths.serving, "export_serving_model")
            digest = registry.saved_model_digest(serving)
            candidate = {"serving": serving, "model_version": registry.model_version(ds, digest), "digest": digest}
            evaluation = {"rules": ["PASS"], "metrics": {"new": {"auc": 0.7}}, "config_hash": "c",
                          "candidate": candidate}
            with artifacts.staged_output(paths.eval) as out:
                artifacts.write_json(out + "/evaluation.json", evaluation)
                artifacts.write_text(out + "/verdict", "blessed\\n")
            entry = registry.bless_candidate(paths, ds, artifacts.require_complete(paths.eval, "evaluate_gate"),
                                             evaluation, {"kind": registry.NIGHTLY})
            versions[ds] = entry["model_version"]
        paths = RunPaths(root, "ctr", "")
        records = len(artifacts.glob(paths.blessings + "/*.json"))
        barrier = threading.Barrier(2)
        update = registry._update

        def update_together(*args, **kwargs):
            barrier.wait(timeout=120)  # both checked the registry they read before either writes
            return update(*args, **kwargs)

        registry._update = update_together
        outcomes = {}

        def roll_back(who, to):
            try:
                outcomes[who] = registry_ops.rollback(paths, versions[to], "2026-11-18", "bad", who,
                                                      date(2026, 12, 2), versions["2026-11-18"])["model_version"]
            except registry_ops.RegistryCommandError as exc:
                outcomes[who] = "refused: " + str(exc)

        threads = [threading.Thread(target=roll_back, args=a) for a in (("dave", "2026-11-14"), ("erin", "2026-11-16"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps({"versions": versions, "outcomes": outcomes, "records": records}))
        """,
        root=root,
    )
    # Read back in a fresh process: TensorFlow's GCS client caches an object's size for a few
    # seconds, so the process that read blessed.json before the update would read it cut short.
    after = client_process(
        """
        from tfpipe_jobs import artifacts, registry
        from tfpipe_jobs.artifacts import RunPaths

        paths = RunPaths(PARAMS["root"], "ctr", "")
        doc = registry.read_registry(paths)
        print(json.dumps({
            "history": [[e["ds"], registry.kind(e), e["model_version"], e.get("who")] for e in doc["history"]],
            "scores": registry.blessed_as_of(paths, "2026-11-18")["model_version"],
            "records": len(artifacts.glob(paths.blessings + "/*.json")),
        }))
        """,
        root=root,
    )
    versions, outcomes = result["versions"], result["outcomes"]
    refused = [who for who, outcome in outcomes.items() if outcome.startswith("refused: ")]
    assert len(refused) == 1, outcomes
    winner = ({"dave", "erin"} - set(refused)).pop()
    assert outcomes[refused[0]].startswith(
        f"refused: stale expected version: --expected-current {versions['2026-11-18']} was to score 2026-11-18, but "
        f"{outcomes[winner]} does now (rollback event of 2026-11-18 by {winner}, "
    )
    assert after["history"][-1] == ["2026-11-18", "rollback", outcomes[winner], winner]
    assert len(after["history"]) == 4 and after["scores"] == outcomes[winner]
    assert after["records"] == result["records"] + 1  # the refused change's record was removed
