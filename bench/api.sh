#!/usr/bin/env bash
# The whole-request benchmark of BENCHMARKS.md in one command: builds
# wallet-bff and the bench tools in release, installs PostGraphile 4 from
# bench/postgraphile/package-lock.json, wrk and pgbench (apt, on a fresh
# Debian machine), makes sure PostgreSQL and Redis run, then runs
# bench/src/bin/api_load.rs, which prints the table and the ratios.
#
# Usage: bench/api.sh [seconds per measurement] [rounds]   (10, 2)
# Environment: TEST_POSTGRES_URL, REDIS_URL, CARGO_TARGET_DIR as for the tests;
# DATABASE_MAX_CONNECTIONS, the database pool of wallet-bff and, shared by
# its workers, of PostGraphile (10); BENCH_SSLMODE, how every client reaches
# PostgreSQL (disable, or require); BENCH_NOTIFIER=off, wallet-bff without
# its outbox relay and notifier (what a transfer's own transaction costs).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/services.sh
. scripts/services.sh

ensure_build_tools
command -v wrk >/dev/null || apt_install wrk
command -v pgbench >/dev/null || apt_install postgresql-contrib
command -v psql >/dev/null || apt_install postgresql-client
ensure_npm_packages bench/postgraphile
ensure_postgres
ensure_redis

log "cargo build --release -p api -p bench"
cargo build --release --locked -p api -p bench
target=${CARGO_TARGET_DIR:-target}
"$target/release/api_load" "$target/release/wallet-bff" \
  bench/postgraphile/node_modules/.bin/postgraphile "${1:-10}" "${2:-2}"
