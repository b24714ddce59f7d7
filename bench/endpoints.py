"""How to talk to each server: a picklable endpoint (URL, auth header, CA file), metric batch
bodies in each server's wire format, and the calls that set up a run."""

from __future__ import annotations

import json
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Literal

import httpx
import numpy as np

__all__ = [
    "Bodies",
    "Endpoint",
    "MlflowBodies",
    "SafeboardBodies",
    "mlflow_run",
    "safeboard_run",
]

Kind = Literal["safeboard", "mlflow"]
TIMEOUT = httpx.Timeout(120.0, connect=10.0)


@dataclass(frozen=True)
class Endpoint:
    """A server as the clients see it; plain values only, so it pickles into workers."""

    kind: Kind
    url: str
    auth_header: str | None  # the value of Authorization, or None
    ca_file: str | None  # PEM bundle to verify HTTPS with

    def verify(self) -> ssl.SSLContext | bool:
        if self.ca_file is None:
            return True
        return ssl.create_default_context(cafile=self.ca_file)

    def client(
        self, *, reuse: bool = True, verify: ssl.SSLContext | bool | None = None
    ) -> httpx.Client:
        """``reuse=False``: every request says ``Connection: close``, so each one opens a new
        TCP (and TLS) connection, as a client without keep-alive would."""
        headers = {"User-Agent": "safeboard-bench"}
        if self.auth_header:
            headers["Authorization"] = self.auth_header
        if not reuse:
            headers["Connection"] = "close"
        return httpx.Client(
            base_url=self.url,
            verify=self.verify() if verify is None else verify,
            headers=headers,
            timeout=TIMEOUT,
            trust_env=False,  # never a proxy: all traffic stays on 127.0.0.1
        )

    @property
    def health_path(self) -> str:
        return "/healthz" if self.kind == "safeboard" else "/health"


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response


def safeboard_run(client: httpx.Client, project: str) -> str:
    """Create the project if needed and a new run in it; return the run id."""
    response = client.post("/api/v1/projects", json={"name": project})
    if response.status_code != 409:
        _check(response)
    return str(_check(client.post(f"/api/v1/projects/{project}/runs", json={})).json()["id"])


def mlflow_run(client: httpx.Client, experiment: str) -> str:
    """Create (or find) the experiment and a new run in it; return the run id."""
    response = client.post("/api/2.0/mlflow/experiments/create", json={"name": experiment})
    if response.status_code == 200:
        experiment_id = response.json()["experiment_id"]
    else:
        found = client.get(
            "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment}
        )
        experiment_id = _check(found).json()["experiment"]["experiment_id"]
    body = {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)}
    created = _check(client.post("/api/2.0/mlflow/runs/create", json=body)).json()
    return str(created["run"]["info"]["run_id"])


class Bodies:
    """Request bodies for one client: ``path`` and ``next()`` (bytes, JSON)."""

    path: str
    points: int

    def next(self) -> bytes:
        raise NotImplementedError


class SafeboardBodies(Bodies):
    """Columnar batches of ``points`` points of one key. The columns are encoded once (as a
    client that batches would); each request gets a fresh batch id and the next steps."""

    def __init__(self, run_id: str, points: int, step_base: int = 0, key: str = "loss") -> None:
        self.path = f"/api/v1/runs/{run_id}/metrics"
        self.points = points
        self.key = key
        self._step = step_base
        rng = np.random.default_rng(points + step_base)
        now = time.time()
        self._times = json.dumps((now + np.arange(points) * 1e-3).tolist())
        self._values = json.dumps(rng.random(points).tolist())

    def next(self) -> bytes:
        steps = json.dumps(list(range(self._step, self._step + self.points)))
        self._step += self.points
        column = f'{{"steps":{steps},"times":{self._times},"values":{self._values}}}'
        return (
            f'{{"batch_id":"{secrets.token_hex(16)}","metrics":{{"{self.key}":{column}}}}}'.encode()
        )


class MlflowBodies(Bodies):
    """``runs/log-batch`` bodies: ``points`` metrics (1,000 at most, MLflow's limit)."""

    path = "/api/2.0/mlflow/runs/log-batch"

    def __init__(self, run_id: str, points: int, step_base: int = 0, key: str = "loss") -> None:
        self.run_id = run_id
        self.points = points
        self.key = key
        self._step = step_base
        self._values = np.random.default_rng(points + step_base).random(points).tolist()

    def next(self) -> bytes:
        now = int(time.time() * 1000)
        metrics = [
            {"key": self.key, "value": value, "timestamp": now + i, "step": self._step + i}
            for i, value in enumerate(self._values)
        ]
        self._step += self.points
        return json.dumps({"run_id": self.run_id, "metrics": metrics}).encode()


def bodies_for(endpoint: Endpoint, run_id: str, points: int, step_base: int) -> Bodies:
    if endpoint.kind == "safeboard":
        return SafeboardBodies(run_id, points, step_base)
    return MlflowBodies(run_id, points, step_base)
