"""Which replicas serve which names, refreshed from the database in the background.

The gateway never queries the database per request for routing: a task reloads the table of
ready replicas every ``refresh_s`` and swaps it in. Each replica keeps one ``Handle`` across
reloads, so the count of requests in flight (what the routers balance on) survives them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from yarl import URL

from suanli.gateway.routing import Router, make_router
from suanli.services import deployments
from suanli.services.deployments import Route, Upstream

log = logging.getLogger("suanli.gateway.registry")


@dataclass(eq=False, slots=True)
class Handle:
    """A replica as the router sees it (``id``, ``outstanding``) plus where to reach it."""

    id: str
    upstream: Upstream
    outstanding: int = 0
    urls: dict[str, URL] = field(default_factory=dict)  # endpoint kind -> parsed URL

    def url(self, kind: str, suffix: str) -> URL:
        """The upstream URL for ``kind``, parsed once (not per request)."""
        url = self.urls.get(kind)
        if url is None:
            url = self.urls[kind] = URL(self.upstream.endpoint + suffix)
        return url


@dataclass(slots=True)
class Entry:
    route: Route
    handles: list[Handle]
    router: Router
    by_id: dict[str, Handle] = field(default_factory=dict)


class Registry:
    def __init__(self, factory: sessionmaker[Session], refresh_s: float = 0.5) -> None:
        self.factory = factory
        self.refresh_s = refresh_s
        self.entries: dict[str, Entry] = {}
        self._handles: dict[int, Handle] = {}
        self._routers: dict[int, Router] = {}
        self.loaded = asyncio.Event()
        self.read_at = -1e9  # when the table in place began to be read (monotonic)
        self._reload: asyncio.Future[None] | None = None

    def _load(self) -> dict[str, Route]:
        with self.factory() as session:
            return deployments.routes(session)

    async def refresh(self) -> None:
        began = time.monotonic()
        loop = asyncio.get_running_loop()
        table = await loop.run_in_executor(None, self._load)
        self.apply(table)
        self.read_at = max(self.read_at, began)

    def apply(self, table: dict[str, Route]) -> None:
        handles: dict[int, Handle] = {}
        routers: dict[int, Router] = {}
        entries: dict[str, Entry] = {}
        for name, route in table.items():
            router = routers.get(route.deployment_id) or self._routers.get(route.deployment_id)
            if router is None or router.name != route.routing:
                router = make_router(route.routing)  # type: ignore[arg-type]
            routers[route.deployment_id] = router
            current = []
            for up in route.upstreams:
                handle = handles.get(up.replica_id) or self._handles.get(up.replica_id)
                if handle is None or handle.upstream != up:
                    handle = Handle(str(up.replica_id), up, handle.outstanding if handle else 0)
                handles[up.replica_id] = handle
                current.append(handle)
            entries[name] = Entry(route, current, router, {h.id: h for h in current})
        for replica_id in self._handles.keys() - handles.keys():
            for router in routers.values():
                router.forget(str(replica_id))
        self._handles, self._routers, self.entries = handles, routers, entries
        self.loaded.set()

    async def fresh(self, since: float) -> None:
        """Make sure the table in place was read from the database after ``since`` (a
        ``time.monotonic()``): a request for a model not (yet) in the table, or without a
        ready replica, asks before it is refused, so a replica that became ready after the
        last reload serves at once. One reload at a time, shared by every request waiting
        for it; on a database error the last table stands."""
        while self.read_at < since:
            if self._reload is None or self._reload.done():
                self._reload = asyncio.ensure_future(self.refresh())
            try:
                await asyncio.shield(self._reload)
            except SQLAlchemyError as exc:
                log.warning("replica table not refreshed: %s", exc)
                return

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except SQLAlchemyError as exc:  # keep serving the last table
                log.warning("replica table not refreshed: %s", exc)
            await asyncio.sleep(self.refresh_s)
