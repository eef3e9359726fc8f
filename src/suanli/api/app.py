"""The control-plane application: routers, errors, auth, metrics, the liveness loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from suanli import __version__
from suanli.api import errors
from suanli.api.deps import Admin
from suanli.api.metrics import Metrics
from suanli.api.routers import (
    agent,
    audit,
    billing,
    chips,
    datacenters,
    deployments,
    fleet,
    nodes,
    policy,
    qualification,
    tenants,
    tokens,
    workloads,
)
from suanli.errors import SuanliError
from suanli.gateway.app import Gateway
from suanli.services import agents
from suanli.services.audit import request_id_var
from suanli.settings import Settings
from suanli.store.db import make_engine, make_sessionmaker

log = logging.getLogger("suanli.api")


def create_app(
    settings: Settings,
    engine: Engine | None = None,
    liveness: bool = True,
    gateway: Gateway | None = None,
) -> FastAPI:
    """Build the app. The schema must already be at head (``suanli.store.migrate``).

    With ``gateway``, its lifetime follows the app's (wrap the app in ``Dispatch``)."""
    engine = engine or make_engine(settings.resolved_database_url())
    factory = make_sessionmaker(engine)
    metrics = Metrics(factory)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_liveness_loop(settings, factory)) if liveness else None
        billing_task = asyncio.create_task(_billing_loop(settings, factory)) if liveness else None
        scheduling_task = (
            asyncio.create_task(_scheduling_loop(settings, factory)) if liveness else None
        )
        if gateway is not None:
            await gateway.start()
        try:
            yield
        finally:
            if gateway is not None:
                await gateway.stop()
            if scheduling_task is not None:
                scheduling_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scheduling_task
            if billing_task is not None:
                billing_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await billing_task
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="suanli control plane",
        version=__version__,
        description="Fleet inventory, tenants and credentials of a mixed accelerator cloud.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = factory
    errors.install(app)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if "\x00" in request.url.path or "\x00" in unquote(request.url.query):
            body = errors.error_body(
                "the URL must not contain NUL characters", "invalid_request_error", "invalid_value"
            )
            return JSONResponse(body, 422)
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = request_id_var.set(rid[:64])
        try:
            response = await metrics.middleware(request, call_next)
        finally:
            request_id_var.reset(token)
        response.headers["x-request-id"] = rid[:64]
        return response

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["health"], response_class=Response)
    def prometheus(_admin: Admin) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    routers = (
        chips,
        datacenters,
        nodes,
        tenants,
        tokens,
        fleet,
        agent,
        audit,
        workloads,
        policy,
        qualification,
        deployments,
        billing,
    )
    for module in routers:
        app.include_router(module.router)
    return app


async def _liveness_loop(settings: Settings, factory: sessionmaker[Session]) -> None:
    """Mark nodes down when their agent goes silent."""

    def check() -> list[str]:
        with factory() as session:
            downed = agents.mark_silent_down(session, settings.heartbeat_timeout_s)
            session.commit()
            return downed

    while True:
        await asyncio.sleep(settings.liveness_check_s)
        try:
            downed = await run_in_threadpool(check)
        except OperationalError as exc:  # database busy or restarting: try next round
            log.warning("liveness check skipped: %s", exc.orig)
            continue
        for name in downed:
            log.warning("node %s marked down: no heartbeat", name)


async def _billing_loop(settings: Settings, factory: sessionmaker[Session]) -> None:
    """Rate new usage every ``rating_interval_s``; accrue accelerator time each minute."""
    from datetime import UTC, datetime, timedelta

    from suanli.services import billing, billing_reports

    def rate() -> None:
        with factory() as session:
            billing.rate_pending(session)
            session.commit()

    def accrue(minute: datetime) -> None:
        with factory() as session:
            billing_reports.accrue_minute(session, minute)
            session.commit()

    last_minute = None
    while True:
        await asyncio.sleep(settings.rating_interval_s)
        try:
            await run_in_threadpool(rate)
            minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
            if minute != last_minute:
                await run_in_threadpool(accrue, minute)
                last_minute = minute
        except SQLAlchemyError as exc:  # database busy, restarting, a lost race: next round
            log.warning("billing round skipped: %s", exc)
        except SuanliError as exc:  # e.g. a model the price book does not price
            log.error("usage cannot be rated: %s", exc)


async def _scheduling_loop(settings: Settings, factory: sessionmaker[Session]) -> None:
    """Place pending workloads every ``scheduler_interval_s`` (one round, one transaction)."""
    from suanli.services import scheduling

    def round_() -> scheduling.RoundSummary:
        with factory() as session:
            summary = scheduling.schedule_pending(session, policy=settings.scheduler_policy)
            session.commit()
            return summary

    while True:
        await asyncio.sleep(settings.scheduler_interval_s)
        try:
            summary = await asyncio.to_thread(round_)
        except SQLAlchemyError as exc:  # database busy, restarting, a lost race: next round
            log.warning("scheduling round skipped: %s", exc)
            continue
        except SuanliError as exc:  # e.g. a broken rule set: log, and try again
            log.error("scheduling round failed: %s", exc)
            continue
        except Exception:  # a bug must not stop placement for good: log it, next round
            log.exception("scheduling round failed")
            continue
        for name in summary.placed:
            log.info("workload %s placed", name)
        for name in summary.preempted:
            log.info("workload %s preempted", name)
