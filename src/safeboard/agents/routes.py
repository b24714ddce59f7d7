"""HTTP for agents: what an admin calls (``/api/v1/agents/...``, AGENTS_MANAGE) and what
an enrolled agent calls (``/api/v1/agent/...``, AGENT_CALL; enrollment is public, the join
token in its body being the credential)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from fastapi import APIRouter, Request
from starlette.status import HTTP_201_CREATED

from safeboard.agents.queries import CurrentTask
from safeboard.agents.repository import Agent
from safeboard.agents.schemas import (
    AgentOut,
    CurrentTaskOut,
    Enrolled,
    EnrollRequest,
    Hello,
    HelloAnswer,
    JoinTokenCreate,
    JoinTokenCreated,
)
from safeboard.agents.service import AgentService, Inventory
from safeboard.auth.dependencies import PUBLIC, client_address, public_origin, requires
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.provision import provided

__all__ = ["agent_router", "router"]

router = APIRouter(prefix="/api/v1/agents")  # admins
agent_router = APIRouter(prefix="/api/v1/agent")  # agents


def agent_out(agent: Agent, work: Sequence[CurrentTask] = ()) -> AgentOut:
    inventory = agent.inventory
    return AgentOut(
        id=agent.id,
        name=agent.name,
        pool=agent.pool,
        labels=list(agent.labels),
        reported_labels=list(inventory.get("labels") or []),
        hostname=agent.hostname,
        version=agent.version,
        gpus=list(inventory.get("gpus") or []),
        cpus=inventory.get("cpus"),
        memory_mib=inventory.get("memory_mib"),
        created_at=agent.created_at,
        created_by=agent.created_by,
        last_seen_at=agent.last_seen_at,
        last_address=agent.last_address,
        revoked_at=agent.revoked_at,
        revoked_by=agent.revoked_by,
        current_tasks=[
            CurrentTaskOut(
                task_id=t.task_id,
                attempt=t.attempt,
                project=t.project,
                run_id=t.run_id,
                state=t.state,
                gpus=t.gpu_uuids,
            )
            for t in work
        ],
        busy_gpus=sorted({uuid for t in work for uuid in t.gpu_uuids}),
    )


@router.post("/join-tokens", status_code=HTTP_201_CREATED, response_model=JoinTokenCreated)
def create_join_token(
    request: Request,
    body: JoinTokenCreate,
    principal: Principal = requires(Permission.AGENTS_MANAGE),
    service: AgentService = provided(AgentService),
) -> JoinTokenCreated:
    """A one-time join token for one agent. The join string is in this response only."""
    made = service.create_join_token(
        principal,
        pool=body.pool,
        labels=body.labels,
        ttl=timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None,
        url=public_origin(request),
        ca_pin=body.ca_pin,
        address=client_address(request),
    )
    return JoinTokenCreated(
        id=made.token.id,
        join_string=made.join_string,
        pool=made.token.pool,
        labels=list(made.token.labels),
        url=made.url,
        expires_at=made.token.expires_at,
    )


@router.get("", response_model=list[AgentOut])
def list_agents(
    _: Principal = requires(Permission.AGENTS_MANAGE),
    service: AgentService = provided(AgentService),
) -> list[AgentOut]:
    """Every enrolled agent, revoked ones included, with its inventory, last call and
    the tasks it runs now (``current_tasks``, ``busy_gpus``)."""
    return [agent_out(agent, work) for agent, work in service.list_with_work()]


@router.post("/{agent_id}/revoke", response_model=AgentOut)
def revoke_agent(
    request: Request,
    agent_id: str,
    principal: Principal = requires(Permission.AGENTS_MANAGE),
    service: AgentService = provided(AgentService),
) -> AgentOut:
    """Revoke an agent at once: its next call is refused with ``agent_revoked``."""
    return agent_out(service.revoke(principal, agent_id, client_address(request)))


@agent_router.post(
    "/enroll", status_code=HTTP_201_CREATED, response_model=Enrolled, dependencies=[PUBLIC]
)
def enroll(
    request: Request, body: EnrollRequest, service: AgentService = provided(AgentService)
) -> Enrolled:
    """Exchange a join token (single use) for this agent's own credential, shown once.
    Public: the token in the body is the credential (never in the URL)."""
    agent, credential = service.enroll(
        body.token,
        hostname=body.hostname,
        version=body.version,
        labels=body.labels,
        address=client_address(request),
    )
    return Enrolled(agent_id=agent.id, name=agent.name, pool=agent.pool, credential=credential)


@agent_router.post("/hello", response_model=HelloAnswer)
def hello(
    body: Hello,
    principal: Principal = requires(Permission.AGENT_CALL),
    service: AgentService = provided(AgentService),
) -> HelloAnswer:
    """The agent's machine (host, version, GPUs, CPUs, memory, labels), stored on the
    agent; answers who the server takes it for, and the server's time."""
    inventory = Inventory(
        hostname=body.hostname,
        version=body.version,
        gpus=[gpu.model_dump() for gpu in body.gpus],
        cpus=body.cpus,
        memory_mib=body.memory_mib,
        labels=body.labels,
    )
    agent = service.hello(principal, inventory)
    return HelloAnswer(
        agent_id=agent.id,
        name=agent.name,
        pool=agent.pool,
        labels=sorted({*agent.labels, *inventory.labels}),
        server_time=service.clock(),
    )
