"""/v1/agent: node agents register their hardware and heartbeat."""

from __future__ import annotations

from fastapi import APIRouter

from suanli.api.deps import AgentCaller, AppSettings, DbSession
from suanli.domain.agent import Heartbeat, Registration, RegistrationReply
from suanli.services import agents, deployments, qualification

router = APIRouter(prefix="/v1/agent", tags=["agent"])


@router.post("/register")
def register(
    reg: Registration, session: DbSession, caller: AgentCaller, settings: AppSettings
) -> RegistrationReply:
    row = agents.register(session, caller, reg)
    session.commit()
    return RegistrationReply(
        node=row.name, state=row.state, heartbeat_interval_s=settings.heartbeat_interval_s
    )


@router.post("/heartbeat")
def heartbeat(
    beat: Heartbeat, session: DbSession, caller: AgentCaller, settings: AppSettings
) -> RegistrationReply:
    row = agents.heartbeat(session, caller, beat)
    orders = []
    if beat.replicas is not None:  # this agent runs model replicas
        deployments.apply_reports(session, row, beat.replicas)
        deployments.place_pending(session)
        orders = deployments.orders_for(session, row)
    session.commit()
    return RegistrationReply(
        node=row.name,
        state=row.state,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        health_check_due=qualification.health_check_due(
            session, row, settings.health_check_interval_s
        ),
        replicas=orders,
    )
