"""Serve the suanli API over an already-migrated database, for the benchmarks.

Run by ``api_latency.py`` as a child process so the client and the server do not share one
interpreter (and one GIL). The database comes from ``SUANLI_DATABASE_URL`` (kept off the
command line, where a password would show in ``ps``), the state directory from
``SUANLI_HOME``. It binds 127.0.0.1 on a free port, prints one JSON line ``{"port": N}`` on
stdout once it accepts connections, and stops by itself on SIGTERM, when its parent goes
away, or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import uvicorn

from suanli.api.app import create_app
from suanli.settings import Settings
from suanli.store.db import make_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args()

    settings = Settings(log_level="warning")  # SUANLI_DATABASE_URL, SUANLI_HOME
    if not settings.database_url:
        parser.error("set SUANLI_DATABASE_URL")
    engine = make_engine(settings.database_url)
    app = create_app(settings, engine, liveness=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    parent = os.getppid()
    deadline = time.monotonic() + args.max_seconds

    def announce_then_watch() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        while not server.should_exit:
            if os.getppid() != parent or time.monotonic() > deadline:
                server.should_exit = True
                return
            time.sleep(0.5)

    threading.Thread(target=announce_then_watch, name="announce", daemon=True).start()
    try:
        server.run()
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
