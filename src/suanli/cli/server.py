"""`suanli up` (the whole platform in one process), `suanli agent`, `suanli migrate`."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from suanli import __version__
from suanli.cli.common import ThresholdsOpt, console, err_console
from suanli.settings import Settings

# The server, database and agent stacks are imported inside the commands that need them,
# so that every other CLI command starts quickly.


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def up(
    host: Annotated[str | None, typer.Option(help="bind address [default: 127.0.0.1]")] = None,
    port: Annotated[
        int | None, typer.Option(help="port; 0 picks a free one [default: 8270]")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL [default: SQLite]")
    ] = None,
    home: Annotated[Path | None, typer.Option(help="state directory [default: ~/.suanli]")] = None,
    agent: Annotated[bool, typer.Option(help="run a node agent for this machine")] = True,
    new_admin_token: Annotated[bool, typer.Option(help="issue another admin token")] = False,
) -> None:
    """Start the platform: API, liveness and scheduling loops and a node agent for this
    machine."""
    import uvicorn

    from suanli.api.app import create_app
    from suanli.gateway.app import Dispatch, from_settings
    from suanli.services import bootstrap
    from suanli.store import migrate
    from suanli.store.db import make_engine, make_sessionmaker

    t0 = time.perf_counter()
    settings = _settings(host=host, port=port, database_url=database_url, home=home)
    _quiet_libraries()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    url = settings.resolved_database_url()
    engine = make_engine(url)
    migrate.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        admin_token = bootstrap.ensure_admin(session, new_admin_token)
        bootstrap.ensure_local_data_center(session, settings.local_country)
        agent_token = bootstrap.embedded_agent_token(session)
        session.commit()
    gateway = from_settings(settings, engine)
    app = Dispatch(create_app(settings, engine, gateway=gateway), gateway)
    agents: list[Any] = []

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets)
            for node in agents:  # stop the model replicas this process started
                node.stop()

    server = Server(
        uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="warning", lifespan="on"
        )
    )

    def when_started() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()
        base = f"http://{settings.host}:{bound[1]}"
        _banner(base, url, admin_token, time.perf_counter() - t0)
        if agent:
            agents.append(_start_embedded_agent(base, agent_token, settings))

    threading.Thread(target=when_started, name="banner", daemon=True).start()
    server.run()


def _quiet_libraries() -> None:
    for name in ("httpx", "alembic", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _banner(base: str, url: str, admin_token: str | None, seconds: float) -> None:
    from sqlalchemy.engine import make_url

    safe_url = make_url(url).render_as_string(hide_password=True)
    console.print(f"[bold green]suanli {__version__} is up[/bold green] in {seconds:.2f} s")
    console.print(f"  API       {base}   (OpenAPI {base}/openapi.json, docs {base}/docs)")
    console.print(f"  gateway   {base}/v1   (OpenAI-compatible; tenant API keys)")
    console.print(f"  database  {safe_url}")
    if admin_token:
        console.print("  operator admin token (shown once, stored hashed):")
        print(f"    {admin_token}", flush=True)
        print(f"  export SUANLI_SERVER={base} SUANLI_TOKEN={admin_token}", flush=True)
    else:
        console.print(
            "  an admin token exists already; `suanli up --new-admin-token` issues another"
        )
        print(f"  export SUANLI_SERVER={base}", flush=True)


def _start_embedded_agent(base: str, token: str, settings: Settings) -> Any:
    from suanli.agent.runner import Agent, AgentConfig, default_node_name
    from suanli.client import ApiClient, ApiError
    from suanli.services import bootstrap

    client = ApiClient(base, token)
    config = AgentConfig(
        name=default_node_name(),
        data_center=bootstrap.LOCAL_DC,
        qualify_time_scale=settings.qualify_time_scale,
        qualify_thresholds=settings.qualify_thresholds,
        serve_dir=settings.home / "replicas",
        drain_grace_s=settings.replica_drain_grace_s,
    )
    node = Agent(client, config)

    def run() -> None:
        try:
            node.run()
        except ApiError as exc:
            err_console.print(f"[red]embedded agent stopped:[/red] {exc}")

    threading.Thread(target=run, name="agent", daemon=True).start()
    return node


def agent_cmd(
    server: Annotated[str, typer.Option(envvar="SUANLI_SERVER", help="control-plane URL")],
    token: Annotated[str, typer.Option(envvar="SUANLI_AGENT_TOKEN", help="agent or admin token")],
    name: Annotated[str | None, typer.Option(help="node name [default: host name]")] = None,
    data_center: Annotated[str, typer.Option(help="data center of this node")] = "local",
    island: Annotated[
        str, typer.Option(help="interconnect island (rack, NVLink/HCCS domain)")
    ] = "",
    interval: Annotated[float | None, typer.Option(help="heartbeat seconds [server's]")] = None,
    once: Annotated[bool, typer.Option(help="register, send one heartbeat, exit")] = False,
    qualify: Annotated[
        bool, typer.Option(help="run the acceptance suite when the node is new or repaired")
    ] = True,
    level: Annotated[str, typer.Option(help="acceptance level: standard or long")] = "standard",
    backend: Annotated[str, typer.Option(help="suite backend: auto, numpy, cuda, npu")] = "auto",
    time_scale: Annotated[
        float, typer.Option(envvar="SUANLI_QUALIFY_TIME_SCALE", help="scale suite durations")
    ] = 1.0,
    thresholds: Annotated[Path | None, ThresholdsOpt] = None,
) -> None:
    """Run the node agent: detect hardware, register this node, heartbeat."""
    from suanli.agent.runner import Agent, AgentConfig, default_node_name
    from suanli.client import ApiClient, ApiError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _quiet_libraries()
    if level not in ("standard", "long"):
        raise typer.BadParameter("acceptance level is standard or long", param_hint="--level")
    config = AgentConfig(
        name=name or default_node_name(),
        data_center=data_center,
        island=island,
        interval_s=interval,
        qualify=qualify and not once,
        qualify_level=level,
        qualify_backend=backend,
        qualify_time_scale=time_scale,
        qualify_thresholds=thresholds,
    )
    with ApiClient(server, token) as client:
        node = Agent(client, config)
        try:
            if once:
                state = node.register()
                state = node.beat()
                console.print(f"node {config.name}: {state}")
                return
            node.run()
        except ApiError as exc:
            err_console.print(f"[red]agent stopped:[/red] {exc}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            node.stop()


def gateway_cmd(
    host: Annotated[str | None, typer.Option(help="bind address [default: 127.0.0.1]")] = None,
    port: Annotated[int, typer.Option(help="port")] = 8271,
    workers: Annotated[int, typer.Option(min=1, max=256, help="processes")] = 1,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL [default: SQLite]")
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(help="share rate limits between processes [default: in-process]"),
    ] = None,
) -> None:
    """Run gateway-only processes (OpenAI-compatible /v1) beside a running control plane.

    Every process reads keys and replicas from the same database and journals its usage;
    give --redis-url when several processes (or hosts) must share rate limits."""
    import os

    import uvicorn

    if database_url:
        os.environ["SUANLI_DATABASE_URL"] = database_url
    if redis_url:
        os.environ["SUANLI_GATEWAY_REDIS_URL"] = redis_url
    elif workers > 1:
        err_console.print(
            "[yellow]note:[/yellow] without --redis-url each process keeps its "
            "own rate-limit buckets"
        )
    settings = _settings(host=host)
    _quiet_libraries()
    console.print(f"suanli gateway on http://{settings.host}:{port}/v1 ({workers} process(es))")
    uvicorn.run(
        "suanli.gateway.app:standalone",
        factory=True,
        host=settings.host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


def migrate_cmd(
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL [default: SQLite]")
    ] = None,
) -> None:
    """Bring the database schema to the latest version (Alembic)."""
    from suanli.store import migrate
    from suanli.store.db import make_engine

    settings = _settings(database_url=database_url)
    engine = make_engine(settings.resolved_database_url())
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    console.print(f"schema: {before or 'empty'} -> {migrate.current_revision(engine)}")
