"""The local Airflow's REST API, as the UI uses it: log in, trigger a day, read runs, tasks and logs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx

USER = "admin"


class LocalAirflowError(RuntimeError):
    """A process did not start, or the API did not answer as expected."""


@dataclass
class AirflowClient:
    """The API at `url`, logged in as the admin user with the password the API server generated."""

    url: str
    # Where Airflow 3's SimpleAuthManager writes the passwords it generates for
    # `[core] simple_auth_manager_users` (one per user, on the API server's first start).
    password_file: Path
    timeout: float = 30.0
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    def passwords(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.password_file.read_text() or "{}"))
        except (OSError, ValueError):
            return {}

    @property
    def client(self) -> httpx.Client:
        """An HTTP client with the admin user's token (logged in on first use)."""
        if self._client is None:
            client = httpx.Client(base_url=self.url, timeout=self.timeout)
            response = client.post("/auth/token", json={"username": USER, "password": self.passwords().get(USER)})
            if response.status_code != 201:
                client.close()
                raise LocalAirflowError(f"could not log in as {USER}: {response.status_code} {response.text}")
            client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
            self._client = client
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _ok(self, response: httpx.Response) -> Any:
        if response.is_error:
            raise LocalAirflowError(f"{response.request.method} {response.request.url.path}: {response.text}")
        return response.json()

    def dag_parsed(self, dag_id: str) -> bool:
        return self.client.get(f"/api/v2/dags/{dag_id}").is_success

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        body = self._ok(self.client.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}))
        return list(body["dag_runs"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._ok(self.client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")))

    def trigger(self, dag_id: str, ds: date, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a run whose logical date is `ds`; an earlier run of that date is cleared and runs again.

        The DAG is unpaused after the run exists: the scheduler then finds the latest
        interval's run already there instead of creating a second one for the same date.
        """
        logical_date = f"{ds.isoformat()}T00:00:00Z"
        response = self.client.post(
            f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": dict(conf or {})}
        )
        if response.status_code == 409:
            run_id = next(r["dag_run_id"] for r in self.runs(dag_id) if r["logical_date"][:10] == ds.isoformat())
            self._ok(self.client.post(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/clear", json={"dry_run": False}))
        else:
            run_id = str(self._ok(response)["dag_run_id"])
        self._ok(self.client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}))
        return run_id

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        body = self._ok(self.client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"))
        return sorted(body["task_instances"], key=lambda t: (t["start_date"] or "9", t["task_id"]))

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task's log as the UI shows it (the structured lines' events, joined)."""
        response = self.client.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True},
            headers={"Accept": "application/json"},
        )
        content = self._ok(response)["content"]
        lines = content if isinstance(content, list) else [content]
        return "\n".join(line.get("event", "") if isinstance(line, dict) else str(line) for line in lines)
