#!/usr/bin/env bash
# Two builds of wallet-bff side by side on the read path: both serve the
# same fresh PostgreSQL database (20 users, about 2,000 transfers between
# them, loaded through the first), and wrk runs the home-screen query of
# api_load (32 connections, 2 threads) against one, then the other, for as
# many pairs as asked. Each line is one measurement; compare within a pair.
# A change on the read path is seen here with less noise than in api_load,
# where the read shares each round with PostGraphile, pgbench and writes.
#
# Usage: bench/read_pair.sh <wallet-bff A> <wallet-bff B> [pairs] [seconds]   (5, 10)
# Environment: TEST_POSTGRES_URL, REDIS_URL as for the tests;
# DATABASE_MAX_CONNECTIONS, the pool of both builds (10); BENCH_SSLMODE,
# how both reach PostgreSQL (disable, or require), as in api_load.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/services.sh
. scripts/services.sh

a=$(realpath "$1")
b=$(realpath "$2")
pairs=${3:-5}
secs=${4:-10}
command -v wrk >/dev/null || apt_install wrk
command -v psql >/dev/null || apt_install postgresql-client
ensure_postgres
ensure_redis

base=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
sslmode=${BENCH_SSLMODE:-disable}
case $sslmode in disable | require) ;; *) echo "BENCH_SSLMODE=$sslmode: disable or require" >&2; exit 1 ;; esac
db="wallet_bench_pair_$$"
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$base/postgres?sslmode=$sslmode" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
psql "$base/postgres?sslmode=$sslmode" -qc "CREATE DATABASE $db"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts binary $1 on a free port with data dir $2; sets PORT.
serve() {
  local port
  port=$(free_port)
  mkdir -p "$2"
  env -i PATH="$PATH" DATABASE_URL="$base/$db?sslmode=$sslmode" REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}" \
    DATABASE_MAX_CONNECTIONS="${DATABASE_MAX_CONNECTIONS:-10}" DATA_DIR="$2" BIND_ADDR="127.0.0.1:$port" JWT_SECRET=bench-secret-bench-secret-bench-secret-00 \
    ACCESS_TOKEN_TTL_SECS=7200 RATE_LIMITS_ENABLED=false TIER_LIMITS='0:*:*=1000000000/1000000000' \
    RUST_LOG=warn "$1" serve >"$2/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && { PORT=$port; return; }
    sleep 0.2
  done
  echo "wallet-bff ($1) did not become ready: $(tail -5 "$2/log")" >&2
  exit 1
}

serve "$a" "$dir/a"
port_a=$PORT
pid_a=${pids[-1]}
# Users, wallets and history, through the first build (it migrates).
python3 - "$port_a" "$dir/tokens" <<'EOF'
import json, random, sys, urllib.request
port, tokens = sys.argv[1], sys.argv[2]
def gql(query, variables=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    answer = json.load(urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, headers)))
    if answer.get("errors"):
        raise SystemExit(f"loading failed: {answer}")
    return answer["data"]
users = []
for i in range(20):
    reg = gql("mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
              {"i": {"email": f"pair{i:02}@bench.example", "password": "correct horse battery staple", "displayName": f"Pair {i}"}})
    token = reg["register"]["accessToken"]
    usd = gql('mutation { openWallet(currency: "USD") { id } }', token=token)["openWallet"]["id"]
    gql('mutation { openWallet(currency: "EUR") { id } }', token=token)
    gql("mutation($i: DepositInput!, $k: String!) { deposit(input: $i, idempotencyKey: $k) { replayed } }",
        {"i": {"walletId": usd, "amount": "100000"}, "k": f"deposit-{i}"}, token)
    users.append((token, usd))
random.seed(7)
for n in range(2000):
    (token, source), (_, target) = random.sample(users, 2)
    gql("mutation($i: TransferInput!, $k: String!) { transfer(input: $i, idempotencyKey: $k) { replayed } }",
        {"i": {"fromWalletId": source, "toWalletId": target, "amount": "1.25"}, "k": f"transfer-{n}"}, token)
with open(tokens, "w") as f:
    f.writelines(token + "\n" for token, _ in users)
EOF
serve "$b" "$dir/b"
port_b=$PORT
pid_b=${pids[-1]}

# CPU time (user and system) the process $1 has used, in clock ticks.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}
ticks_per_sec=$(getconf CLK_TCK)

cat >"$dir/read.lua" <<EOF
local tokens = {}
for line in io.lines("$dir/tokens") do tokens[#tokens + 1] = line end
local body = '{"query":"{ me { id email wallets { id currency balance availableBalance frozenBalance } } transactions(first: 20) { edges { node { id kind status amount currency createdAt } } } }"}'
local n = 0
function request()
  n = n + 1
  return wrk.format("POST", "/graphql", { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[n % #tokens + 1] }, body)
end
EOF

# Both answer the query without errors before anything is measured.
token=$(head -1 "$dir/tokens")
query=$(sed -n "s/^local body = '\(.*\)'$/\1/p" "$dir/read.lua")
for port in "$port_a" "$port_b"; do
  answer=$(curl -s "http://127.0.0.1:$port/graphql" -H 'content-type: application/json' \
    -H "authorization: Bearer $token" -d "$query")
  if [[ $answer != *'"transactions"'* || $answer == *'"errors"'* ]]; then
    echo "the read failed on port $port: $answer" >&2
    exit 1
  fi
done

# The server's CPU per read is its CPU time over the run divided by the
# reads answered: the server's own cost of a read, apart from PostgreSQL's
# (on this kind of shared machine it moves with the load about as much as
# the rate does).
echo "| pair | build | read/s | p99 | not 200 | server CPU per read |"
echo "|---|---|---|---|---|---|"
for pair in $(seq "$pairs"); do
  for side in A B; do
    port=$port_a pid=$pid_a
    [ "$side" = B ] && port=$port_b pid=$pid_b
    before=$(cpu_ticks "$pid")
    out=$(wrk -t 2 -c 32 -d "$secs" --latency -s "$dir/read.lua" "http://127.0.0.1:$port/graphql")
    after=$(cpu_ticks "$pid")
    rate=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    bad=$(awk '/Non-2xx/ { print $5 }' <<<"$out")
    reads=$(awk '/requests in/ { print $1 }' <<<"$out")
    cpu=$(awk -v t=$((after - before)) -v hz="$ticks_per_sec" -v n="$reads" 'BEGIN { printf "%.0f µs", t / hz * 1e6 / n }')
    echo "| $pair | $side | $rate | $p99 | ${bad:-0} | $cpu |"
  done
done
