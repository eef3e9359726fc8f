"""Command line: ``python -m suanli.engines.cpu_server --model DIR --port PORT``.

The model is loaded before the port opens, so a process that is listening answers
``GET /health`` with 200. Once listening it prints one line to standard error,
``suanli-cpu-server listening on http://HOST:PORT``, with the real port (useful with
``--port 0``). A model that cannot be loaded ends the process with status 2.

``--threads N`` caps the BLAS thread pool numpy's matrix products use (by default
one per core). On a machine whose cores are busy with other work, a smaller pool
is faster: pool threads that wait on each other waste their time slices.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

log = logging.getLogger("suanli.engines.cpu_server")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m suanli.engines.cpu_server",
        description="Serve a sentence-embedding model on the CPU with an OpenAI-compatible API.",
    )
    parser.add_argument("--model", required=True, type=Path, help="model directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind; 0 picks one")
    parser.add_argument(
        "--served-model-name",
        default=None,
        help="model id clients must send (default: the model directory's name)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=32, help="most inputs in one forward pass (32)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for matrix products (default: one per core)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
    )
    return parser


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, as the host resolves)."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_batch < 1:
        build_parser().error("--max-batch must be at least 1")
    if not 0 <= args.port <= 65535:
        build_parser().error("--port must be between 0 and 65535")
    if args.threads is not None:
        if args.threads < 1:
            build_parser().error("--threads must be at least 1")
        # read by the BLAS libraries when numpy loads, which is just below
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    from suanli.engines.cpu_server.bert import BertEmbedder, ModelFormatError
    from suanli.engines.cpu_server.server import EmbeddingService, create_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    name = args.served_model_name or args.model.resolve().name

    try:
        embedder = BertEmbedder.from_dir(args.model)
    except (ModelFormatError, OSError, ValueError) as exc:
        print(f"cannot load the model in {args.model}: {exc}", file=sys.stderr)
        return 2
    log.info("loaded %s (%d dimensions) as %r", args.model, embedder.dimensions, name)

    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"suanli-cpu-server listening on http://{shown}:{port}", file=sys.stderr, flush=True)

    app = create_app(EmbeddingService(embedder, name, max_batch=args.max_batch))
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False, lifespan="on")
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
