"""Prometheus metrics: HTTP traffic, plus fleet gauges read from the database at scrape."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from suanli.store.tables import AcceleratorRow, DataCenterRow, NodeRow


class FleetCollector(Collector):
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nodes = GaugeMetricFamily(
            "suanli_nodes", "Nodes by data center and state", labels=["data_center", "state"]
        )
        accs = GaugeMetricFamily(
            "suanli_accelerators",
            "Accelerators by data center, chip, node state and health",
            labels=["data_center", "chip", "state", "health"],
        )
        with self._factory() as session:
            for dc, state, n in session.execute(
                select(DataCenterRow.name, NodeRow.state, func.count(NodeRow.id))
                .join(NodeRow, NodeRow.data_center_id == DataCenterRow.id)
                .group_by(DataCenterRow.name, NodeRow.state)
            ):
                nodes.add_metric([dc, state], n)
            for dc, chip, state, health, n in session.execute(
                select(
                    DataCenterRow.name,
                    AcceleratorRow.chip,
                    NodeRow.state,
                    AcceleratorRow.health,
                    func.count(AcceleratorRow.id),
                )
                .join(NodeRow, AcceleratorRow.node_id == NodeRow.id)
                .join(DataCenterRow, NodeRow.data_center_id == DataCenterRow.id)
                .group_by(
                    DataCenterRow.name, AcceleratorRow.chip, NodeRow.state, AcceleratorRow.health
                )
            ):
                accs.add_metric([dc, chip, state, health], n)
        yield nodes
        yield accs


class Metrics:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "suanli_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "suanli_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(FleetCollector(factory))

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        self.latency.labels(request.method, path).observe(time.perf_counter() - start)
        self.requests.labels(request.method, path, str(response.status_code)).inc()
        return response

    def render(self) -> bytes:
        return generate_latest(self.registry)
