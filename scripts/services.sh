# Shared by scripts/test.sh and bench/api.sh (sourced from the repository
# root): logging, apt installs on a fresh Debian machine, and PostgreSQL and
# Redis on 127.0.0.1, started when installed but stopped, installed when
# missing, and a loud failure when they still cannot be reached.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_port() {
  local host=$1 port=$2 name=$3
  for _ in $(seq 1 60); do
    port_open "$host" "$port" && return 0
    sleep 0.5
  done
  die "$name is not reachable on $host:$port"
}

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $*: no apt-get on this machine; install it yourself"
  [ "$(id -u)" = 0 ] || die "cannot install $*: run as root or install it yourself"
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_build_tools() {
  command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
  command -v cc >/dev/null || apt_install build-essential
  command -v npm >/dev/null || apt_install nodejs npm
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

ensure_postgres() {
  export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
  if port_open 127.0.0.1 5432; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    fresh_install=1
  fi
  log "starting PostgreSQL"
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 127.0.0.1 5432 PostgreSQL
  if [ "${fresh_install:-0}" = 1 ] && [ "$TEST_POSTGRES_URL" = "postgres://postgres@127.0.0.1:5432" ]; then
    # Debian's default is password auth over TCP: give the test user one.
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
    export TEST_POSTGRES_URL="postgres://postgres:postgres@127.0.0.1:5432"
  fi
}

ensure_redis() {
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
  # The outage test runs a private redis-server of its own.
  command -v redis-server >/dev/null || apt_install redis-server
  if port_open 127.0.0.1 6379; then return 0; fi
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/wallet-bff-redis.log
  wait_port 127.0.0.1 6379 Redis
}


# npm ci in directory $1 unless its packages match its package-lock.json.
ensure_npm_packages() {
  local dir=$1
  # npm writes node_modules/.package-lock.json last: a missing or older one
  # means no (complete) install of the current package-lock.json.
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "npm ci --prefix $dir"
    npm ci --prefix "$dir" --no-audit --no-fund || die "npm ci --prefix $dir failed"
  fi
}
