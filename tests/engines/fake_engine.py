"""A stand-in inference engine for the supervisor tests, speaking vLLM's HTTP API.

    python fake_engine.py --port P [--crash-after S] [--exit-code N] [--never-healthy]
                          [--running N] [--spawn-child] [--ignore-sigterm]

``/health`` answers 200 (503 with --never-healthy); ``/metrics`` reports N running requests.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--crash-after", type=float, default=None)
    parser.add_argument("--exit-code", type=int, default=3)
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--running", type=int, default=0)
    parser.add_argument("--spawn-child", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    args = parser.parse_args()

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.spawn_child:  # a worker in the same process group, like an engine's workers
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])

    def crash() -> None:
        print("loading weights ... done", flush=True)
        print("fatal: simulated engine failure", file=sys.stderr, flush=True)
        os._exit(args.exit_code)

    if args.crash_after == 0:
        crash()
    if args.crash_after is not None:
        threading.Timer(args.crash_after, crash).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self.reply(503 if args.never_healthy else 200, "")
            elif self.path == "/metrics":
                self.reply(
                    200,
                    "# TYPE vllm:num_requests_running gauge\n"
                    f'vllm:num_requests_running{{model_name="fake"}} {args.running}.0\n'
                    'vllm:num_requests_waiting{model_name="fake"} 0.0\n',
                )
            else:
                self.reply(404, "not found")

        def reply(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *items: object) -> None:
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"fake engine listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
