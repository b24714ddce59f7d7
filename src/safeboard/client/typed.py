"""``Client``: safeboard's API as typed methods (projects, runs, metrics, artifacts, keys,
users, grants, audit, tasks; task logs from ``client.task_logs``) returning the dataclasses
of ``client.models``.

Built on ``ApiClient`` (TLS, credentials, errors mapped from the server's codes to the
classes of ``safeboard.errors``); every path comes from ``client.paths``; requests that
are safe to repeat (reads, PUT, DELETE, and the POSTs that carry their own idempotency
key: a run with a client-made id, a metric batch with its ``batch_id``) are retried
under one ``RetryPolicy``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from safeboard.client import columns, paths
from safeboard.client.http import ApiClient
from safeboard.client.job_models import (
    AgentInfo,
    Enrollment,
    Heartbeat,
    HelloAnswer,
    JoinToken,
    Task,
    TaskLease,
)
from safeboard.client.models import (
    ApiKey,
    Artifact,
    AuditEntry,
    CreatedKey,
    History,
    Points,
    Project,
    Run,
    RunListed,
    RunPage,
    User,
)
from safeboard.client.retry import DEFAULT_POLICY, RetryPolicy
from safeboard.client.task_logs import TaskLogCalls
from safeboard.vocabulary import MAX_HISTORY_KEYS, KeyScope, ProjectRole, RunStatus

__all__ = ["Client"]

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH"})


class Client(TaskLogCalls):
    """``Client(api)`` over an ``ApiClient`` (``ServerAccess.client()`` makes one), or
    ``Client.connect(url, api_key)``. A context manager; ``close()`` closes the API."""

    def __init__(self, api: ApiClient, *, retry: RetryPolicy = DEFAULT_POLICY) -> None:
        self.api = api
        self.retry = retry

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, **options: Any) -> Client:
        return cls(ApiClient(url, api_key, **options))

    def __repr__(self) -> str:
        return f"Client({self.api.url!r})"

    # --- plumbing ----------------------------------------------------------------------

    def send(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request to ``path`` (from ``client.paths``), retried under the policy when
        repeating it is safe."""
        repeatable = method in _IDEMPOTENT if idempotent is None else idempotent
        if not repeatable:
            return self.api.request(method, path, **kwargs)
        return self.retry.call(lambda: self.api.request(method, path, **kwargs))

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.send(method, path, **kwargs).json()

    # --- projects and grants -----------------------------------------------------------

    def projects(self) -> list[Project]:
        return [Project.from_json(p) for p in self._json("GET", paths.projects())]

    def project(self, name: str) -> Project:
        return Project.from_json(self._json("GET", paths.project(name)))

    def create_project(
        self, name: str, description: str = "", *, timeout: httpx.Timeout | float | None = None
    ) -> Project:
        """Create a project (Conflict when the name is taken). ``timeout``: this request's."""
        body = {"name": name, "description": description}
        return Project.from_json(self._json("POST", paths.projects(), json=body, timeout=timeout))

    def grant(self, project: str, username: str, role: ProjectRole | str) -> None:
        """Give ``username`` a role in ``project`` (replacing the one they had)."""
        body = {"role": ProjectRole(role).value}
        self.send("PUT", paths.grant(project, username), json=body)

    def revoke(self, project: str, username: str) -> None:
        self.send("DELETE", paths.grant(project, username))

    # --- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        project: str,
        *,
        run_id: str | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        system: Mapping[str, Any] | None = None,
        notes: str = "",
        timeout: httpx.Timeout | float | None = None,
    ) -> Run:
        """Start a run. With a client-made ``run_id`` (32 hex) sending it again returns
        the same run, so it is retried; without one it is sent once. ``timeout``: this
        request's, instead of the client's."""
        body: dict[str, Any] = {"config": dict(config or {}), "tags": dict(tags or {}),
                                "system": dict(system or {}), "notes": notes}  # fmt: skip
        if run_id is not None:
            body["id"] = run_id
        if name is not None:
            body["name"] = name
        path = paths.project_runs(project)
        repeatable = run_id is not None
        answer = self._json("POST", path, json=body, idempotent=repeatable, timeout=timeout)
        return Run.from_json(answer)

    def run(self, run_id: str) -> Run:
        return Run.from_json(self._json("GET", paths.run(run_id)))

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str | None] | None = None,
        notes: str | None = None,
    ) -> Run:
        """Merge config, set tags (None removes one), notes; ``status`` finishes it."""
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = RunStatus(status).value
        for name, value in (("config", config), ("tags", tags)):
            if value is not None:
                body[name] = dict(value)
        if notes is not None:
            body["notes"] = notes
        return Run.from_json(self._json("PATCH", paths.run(run_id), json=body))

    def finish_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED) -> Run:
        return self.update_run(run_id, status=status)

    def runs_page(
        self,
        project: str,
        *,
        filter: str | None = None,
        sort: str = "created",
        descending: bool = True,
        config_keys: tuple[str, ...] | list[str] = (),
        metrics: tuple[str, ...] | list[str] = (),
        limit: int = 50,
        cursor: str | None = None,
        count: bool = False,
    ) -> RunPage:
        """One page of a project's runs matching ``filter`` (the dashboard's search
        language), sorted by ``sort`` as the dashboard sorts: created (the default, newest
        first), ended, name, status, params.<path>, tags.<key>, metrics.<key> (the last
        value); runs without a value last either way. A bad filter or sort key raises
        BadRequest naming the problem. ``count``: also count the matching runs."""
        params: dict[str, Any] = {
            "sort": sort,
            "order": "desc" if descending else "asc",
            "limit": limit,
            "config_key": list(config_keys),
            "metric": list(metrics),
        }
        for name, value in (("filter", filter), ("cursor", cursor)):
            if value:
                params[name] = value
        if count:
            params["count"] = "true"
        page = self._json("GET", paths.project_runs(project), params=params)
        runs = tuple(RunListed.from_json(r) for r in page["runs"])
        return RunPage(runs, page.get("next_cursor"), page.get("total"))

    def runs(
        self,
        project: str,
        *,
        filter: str | None = None,
        sort: str = "created",
        descending: bool = True,
        config_keys: tuple[str, ...] | list[str] = (),
        metrics: tuple[str, ...] | list[str] = (),
        page_size: int = 200,
    ) -> Iterator[RunListed]:
        """Every matching run in the order of ``runs_page``, a page at a time."""
        cursor: str | None = None
        while True:
            page = self.runs_page(project, filter=filter, sort=sort, descending=descending,
                                  config_keys=config_keys, metrics=metrics, limit=page_size,
                                  cursor=cursor)  # fmt: skip
            yield from page.runs
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    def run_ids(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Ids of the runs you can see that start with ``prefix`` (sorted, at most limit)."""
        params = {"prefix": prefix, "limit": limit}
        return list(self._json("GET", paths.run_ids(), params=params)["ids"])

    # --- metrics -------------------------------------------------------------------------

    def post_metrics(
        self, run_id: str, body: bytes | Mapping[str, Any], *, media_type: str | None = None
    ) -> dict[str, Any]:
        """Store one batch (stored once per its ``batch_id``, so retried): a JSON batch as
        a mapping, or packed bytes (``safeboard.wire``) with ``media_type`` (a compact
        body says its own, and goes plain to a server from before it: client/columns.py)."""
        path = paths.metrics(run_id)
        if isinstance(body, bytes):
            return dict(columns.post(self, path, body, media_type))
        return dict(self._json("POST", path, json=dict(body), idempotent=True))

    def points(
        self, run_id: str, key: str, *, start: int | None = None, end: int | None = None
    ) -> Points:
        """Every point of metric ``key`` (any characters: it travels in the query)."""
        params: dict[str, Any] = {"metric": key}
        params |= {k: v for k, v in (("start", start), ("end", end)) if v is not None}
        answer = self.send("GET", paths.metric_points(run_id), params=params)
        body = answer.json()
        del answer  # its bytes go before the tuples are built (10M points: 400 MB of JSON)
        return Points.from_json(body)

    def histories(
        self, run_id: str, keys: Sequence[str], *, buckets: int = 1000
    ) -> dict[str, History]:
        """Metrics downsampled to at most ``buckets`` min/max buckets each, asked
        ``MAX_HISTORY_KEYS`` keys at a time (the server's bound on one request)."""
        found: dict[str, History] = {}
        wanted = list(dict.fromkeys(keys))
        for i in range(0, len(wanted), MAX_HISTORY_KEYS):
            params = {"metric": wanted[i : i + MAX_HISTORY_KEYS], "buckets": buckets}
            answer = self._json("GET", paths.metric_history(run_id), params=params)
            found |= {k: History.from_json(k, h) for k, h in answer["metrics"].items()}
        return found

    def history(self, run_id: str, key: str, *, buckets: int = 1000) -> History:
        """One metric downsampled to at most ``buckets`` min/max buckets."""
        return self.histories(run_id, [key], buckets=buckets)[key]

    # --- artifacts -----------------------------------------------------------------------

    def artifact(self, artifact_id: str) -> Artifact:
        return Artifact.from_json(self._json("GET", paths.artifact(artifact_id)))

    def artifacts(self, run_id: str, *, page_size: int = 1000) -> Iterator[Artifact]:
        """Every artifact of a run, in the order they were declared."""
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = self._json("GET", paths.run_artifacts(run_id), params=params)
            yield from (Artifact.from_json(item) for item in page["items"])
            following = page.get("next_cursor")
            if not following or following == cursor:
                return
            cursor = following

    def artifact_ids(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Ids of the artifacts you can see that start with ``prefix`` (sorted)."""
        params = {"prefix": prefix, "limit": limit}
        return list(self._json("GET", paths.artifact_ids(), params=params)["ids"])

    def delete_artifact(self, artifact_id: str) -> None:
        self.send("DELETE", paths.artifact(artifact_id))

    # --- tasks (queued jobs) ---------------------------------------------------------------

    def submit_task(
        self,
        project: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        gpus: int = 0,
        labels: Sequence[str] = (),
        priority: int = 0,
        max_seconds: int | None = None,
        max_lost_retries: int = 2,
        retry_on_failure: bool = False,
        name: str | None = None,
        code_sha256: str | None = None,
        secrets: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Task:
        """Queue ``command`` (argv) in the code archive ``code_sha256`` uploaded to the
        project (``client.code.upload_code``; None: no code, the command must exist on the
        agent's machine), with ``secrets`` stored encrypted and never shown again (answers
        name them) and ``params`` over the config its ``safeboard.init(config=...)`` gives.
        Sent once: a retry could queue it twice."""
        body: dict[str, Any] = {"command": list(command), "env": dict(env or {}), "gpus": gpus,
                                "labels": list(labels), "priority": priority,
                                "max_seconds": max_seconds, "max_lost_retries": max_lost_retries,
                                "retry_on_failure": retry_on_failure}  # fmt: skip
        extra = {"name": name, "code_sha256": code_sha256, "secrets": dict(secrets or {}),
                 "params": dict(params or {})}  # fmt: skip
        body.update({key: value for key, value in extra.items() if value not in (None, {})})
        return Task.from_json(self._json("POST", paths.project_tasks(project), json=body))

    def tasks(
        self,
        *,
        project: str | None = None,
        states: Sequence[str] = (),
        page_size: int = 100,
    ) -> Iterator[Task]:
        """Tasks newest first, every page: of ``project`` or of every project you can read."""
        before: int | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size, "state": list(states)}
            if project is not None:
                params["project"] = project
            if before is not None:
                params["before"] = before
            answer = self._json("GET", paths.tasks(), params=params)
            yield from (Task.from_json(t) for t in answer["tasks"])
            before = answer.get("next_before")
            if before is None:
                return

    def task(self, task_id: int) -> Task:
        """The task with its attempts."""
        return Task.from_json(self._json("GET", paths.task(task_id)))

    def cancel_task(self, task_id: int) -> Task:
        """Cancel: at once if queued, else ``cancelling`` until the agent stopped it.
        Repeating it changes nothing, so it is retried."""
        path = paths.task_action(task_id, "cancel")
        return Task.from_json(self._json("POST", path, idempotent=True))

    def retry_task(self, task_id: int) -> Task:
        """A finished task again, as a new task (sent once)."""
        return Task.from_json(self._json("POST", paths.task_action(task_id, "retry")))

    # --- keys, users, audit --------------------------------------------------------------

    def api_keys(self, *, everyone: bool = False) -> list[ApiKey]:
        params = {"everyone": "true"} if everyone else {}
        return [ApiKey.from_json(k) for k in self._json("GET", paths.keys(), params=params)]

    def create_key(
        self,
        name: str,
        *,
        scope: KeyScope | str = KeyScope.WRITE,
        project_id: int | None = None,
        days: int | None = None,
        never_expires: bool = False,
    ) -> CreatedKey:
        """A key for yourself; ``scope`` defaults to write (log runs), as the dashboard's."""
        body = {"name": name, "scope": KeyScope(scope).value, "project_id": project_id,
                "expires_in_days": days, "never_expires": never_expires}  # fmt: skip
        found = self._json("POST", paths.keys(), json=body)
        return CreatedKey(ApiKey.from_json(found), str(found["token"]))

    def revoke_key(self, key_id: str) -> None:
        self.send("DELETE", paths.key(key_id))

    def users(self) -> list[User]:
        return [User.from_json(u) for u in self._json("GET", paths.users())]

    def audit(
        self, *, since: str | None = None, action: str | None = None, page_size: int = 1000
    ) -> Iterator[AuditEntry]:
        """Audit entries, oldest first, every page (``since``: ISO-8601 with a zone)."""
        after: int | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            for name, value in (("since", since), ("action", action), ("after_id", after)):
                if value is not None:
                    params[name] = value
            answer = self._json("GET", paths.audit(), params=params)
            found = [AuditEntry.from_json(e) for e in answer]
            yield from found
            if len(found) < page_size:
                return
            after = found[-1].id

    # --- agents -------------------------------------------------------------------------

    def create_join_token(
        self,
        pool: str,
        *,
        labels: Sequence[str] = (),
        ttl_seconds: int | None = None,
        ca_pin: str | None = None,
    ) -> JoinToken:
        """A one-time join token for one agent (admins). Sent once: a retry would mint
        a second token."""
        body: dict[str, Any] = {"pool": pool, "labels": list(labels)}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        if ca_pin is not None:
            body["ca_pin"] = ca_pin
        return JoinToken.from_json(self._json("POST", paths.join_tokens(), json=body))

    def agents(self) -> list[AgentInfo]:
        return [AgentInfo.from_json(a) for a in self._json("GET", paths.agents())]

    def revoke_agent(self, agent_id: str) -> AgentInfo:
        """Revoke an agent at once (admins); revoking it again changes nothing."""
        found = self._json("POST", paths.agent_revoke(agent_id), idempotent=True)
        return AgentInfo.from_json(found)

    def enroll(
        self, token: str, *, hostname: str, version: str, labels: Sequence[str] = ()
    ) -> Enrollment:
        """Exchange a join token (``<id>.<secret>``) for an agent credential. No API key
        needed: the token is the credential. Sent once (single use)."""
        body = {"token": token, "hostname": hostname, "version": version, "labels": list(labels)}
        return Enrollment.from_json(self._json("POST", paths.agent_enroll(), json=body))

    def hello(self, inventory: Mapping[str, Any]) -> HelloAnswer:
        """An agent's inventory (host, version, GPUs, CPUs, memory, labels); with the
        agent's credential. Repeating it is harmless."""
        answer = self._json("POST", paths.agent_hello(), json=dict(inventory), idempotent=True)
        return HelloAnswer.from_json(answer)

    def lease(
        self, free_gpus: Sequence[str], labels: Sequence[str] = (), wait_seconds: float = 0.0
    ) -> TaskLease | None:
        """A task for this agent (its credential), or None when none came within
        ``wait_seconds`` (at most 25). Sent once: a lease whose answer is lost lapses and
        the task is queued again."""
        body = {"free_gpus": list(free_gpus), "labels": list(labels),
                "wait_seconds": float(wait_seconds)}  # fmt: skip
        response = self.send("POST", paths.agent_lease(), json=body, idempotent=False,
                             timeout=wait_seconds + 30.0)  # fmt: skip
        if response.status_code == 204:
            return None
        return TaskLease.from_json(response.json())

    def heartbeat(self, task_id: int, attempt: int) -> Heartbeat:
        """Renew an attempt's lease; ``cancel`` says to stop its process. Conflict: the
        attempt was taken away (requeued, or its lease lapsed)."""
        path = paths.agent_task_heartbeat(task_id, attempt)
        return Heartbeat.from_json(self._json("POST", path, idempotent=True))

    def report_task(
        self,
        task_id: int,
        attempt: int,
        kind: str,
        *,
        pid: int | None = None,
        exit_code: int | None = None,
        signal: int | None = None,
        reason: str = "",
    ) -> str:
        """The attempt's process is ``starting``, ``running`` (``pid``) or ``exited``
        (``exit_code`` or ``signal``; ``reason``: why the command was not run, or that
        the agent stopped it); the task's state after it. Idempotent."""
        body: dict[str, Any] = {"kind": kind}
        for name, value in (("pid", pid), ("exit_code", exit_code), ("signal", signal)):
            if value is not None:
                body[name] = value
        if reason:
            body["reason"] = reason[:200]
        path = paths.agent_task_events(task_id, attempt)
        return str(self._json("POST", path, json=body, idempotent=True)["state"])

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
