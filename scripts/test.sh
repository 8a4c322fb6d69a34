#!/usr/bin/env bash
# Runs every check of the project: formatting, clippy, unit tests and the
# integration tests against a real PostgreSQL and Redis on 127.0.0.1.
#
# Starts PostgreSQL and Redis when they are installed but stopped, installs
# them (and the build tools, and python3-aiosmtpd for the tests' SMTP
# server) with apt on a fresh Debian machine when missing,
# and fails loudly when a service still cannot be reached. Tests never skip a
# missing service. Installs the npm packages of the local OpenID Connect
# provider the OAuth2 tests run (scripts/oidc) when they are missing or stale.
#
# Environment:
#   TEST_POSTGRES_URL  server URL without database (default postgres://postgres@127.0.0.1:5432)
#   REDIS_URL          Redis for the tests (default redis://127.0.0.1:6379)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/services.sh
. scripts/services.sh

# The local OpenID Connect provider of the OAuth2 tests (scripts/oidc).
ensure_oidc_provider() {
  local dir=scripts/oidc
  command -v node >/dev/null || die "node is not installed (apt-get install nodejs npm)"
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
    || die "node $(node --version) is too old for $dir (oidc-provider): install Node.js >= 20.19"
  ensure_npm_packages "$dir"
}

# The apps' contract (frontend-contract/): its generated TypeScript must match
# schema.graphql and the operations.
check_frontend_contract() {
  local dir=frontend-contract
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "npm ci --prefix $dir"
    npm ci --prefix "$dir" --no-audit --no-fund || die "npm ci --prefix $dir failed"
  fi
  log "frontend-contract: generated files and types"
  npm --prefix "$dir" run --silent check || die "frontend-contract is stale: npm --prefix $dir run generate"
}

# The SMTP server of the notifier tests (scripts/smtp/sink.py): Debian's
# python3-aiosmtpd, run by Debian's own python3 (not a pyenv one).
ensure_smtp_sink() {
  export TEST_SMTP_PYTHON="${TEST_SMTP_PYTHON:-/usr/bin/python3}"
  if ! "$TEST_SMTP_PYTHON" -c 'import aiosmtpd' 2>/dev/null; then
    apt_install python3 python3-aiosmtpd
  fi
  "$TEST_SMTP_PYTHON" -c 'import aiosmtpd' || die "$TEST_SMTP_PYTHON cannot import aiosmtpd (apt-get install python3-aiosmtpd)"
}

# The deploy topology test runs Debian's nginx with deploy/nginx.conf.
ensure_nginx() {
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx
  export TEST_NGINX="${TEST_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
  [ -x "$TEST_NGINX" ] || die "nginx is not installed (apt-get install nginx)"
}

ensure_build_tools
ensure_nginx
ensure_oidc_provider
ensure_smtp_sink
# The push tests make the fake FCM service account's RSA key with openssl.
command -v openssl >/dev/null || apt_install openssl
ensure_postgres
ensure_redis
log "PostgreSQL at ${TEST_POSTGRES_URL%%@*}@..., Redis at $REDIS_URL"

check_frontend_contract
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
results=$(mktemp)
cargo test --workspace --locked 2>&1 | tee "$results"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1); if ($(i) ~ /^ignored/) s += $(i-1) } }
     END { printf "Tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$results"
rm -f "$results"
