#!/usr/bin/env bash
# The soak scenario of BENCHMARKS.md in one command: builds wallet-bff and
# the bench tools in release, installs PostgreSQL's server binaries and
# redis-server when missing (apt, on a fresh Debian machine), then runs
# bench/src/bin/soak.rs: its own PostgreSQL cluster and Redis on free ports
# (the shared ones on 5432 and 6379 are left alone), two instances, the
# transfers through restarts of Redis, one instance and PostgreSQL, a
# subscriber that reconnects, and the checks of the books, keys and events
# at the end (exit status 1 when one fails).
#
# Usage: bench/soak.sh [transfers] [clients]   (100000, 200: 15 to 30 minutes
# on 2 cores; try 5000 50 first)
# Environment: CARGO_TARGET_DIR as for the tests; PG_BIN, the directory of
# initdb and pg_ctl (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/services.sh
. scripts/services.sh

ensure_build_tools
command -v redis-server >/dev/null || apt_install redis-server
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "${PG_BIN:-}" ] || apt_install postgresql
if [ -z "${PG_BIN:-}" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
export PG_BIN

log "cargo build --release -p api -p bench"
cargo build --release --locked -p api -p bench
target=${CARGO_TARGET_DIR:-target}
"$target/release/soak" "$target/release/wallet-bff" "${1:-100000}" "${2:-200}"
