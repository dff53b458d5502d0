# Shared by the scripts in this folder: paths, messages, and the services the project needs.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/.local"          # ignored: pids, logs, generated secrets
VENV="$ROOT/.venv"            # ignored: Python tools (cargo-lambda)
PG_SERVER_URL=${PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432}

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Starts the machine's PostgreSQL when it is not answering; installs it with apt where it is missing.
ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    command -v apt-get >/dev/null || fail "PostgreSQL is not running on 127.0.0.1:5432 and apt-get is not here to install it"
    step "Installing PostgreSQL with apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    # A new cluster asks for passwords over TCP; the local development cluster trusts loopback.
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  step "Starting PostgreSQL"
  local version
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  done
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 1; done
  fail "PostgreSQL did not start; see /var/log/postgresql/"
}

# Creates database $1 on the local server when it does not exist.
ensure_database() {
  local name=$1
  if [ -z "$(psql "$PG_SERVER_URL/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" ]; then
    psql "$PG_SERVER_URL/postgres" -qc "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

# sqlx-cli checks that the committed offline query data matches the queries and the schema.
ensure_sqlx_cli() {
  if sqlx --version 2>/dev/null | grep -q '^sqlx-cli 0\.8\.'; then return; fi
  step "Installing sqlx-cli 0.8 (about 2 minutes, once)"
  cargo install sqlx-cli --version '~0.8.6' --locked --no-default-features --features postgres,rustls
}

ensure_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then return; fi
  step "Installing cargo-nextest (once)"
  cargo install cargo-nextest --locked
}

# cargo-lambda from its Python wheel, in the project's virtualenv.
ensure_cargo_lambda() {
  if [ -x "$VENV/bin/cargo-lambda" ]; then return; fi
  step "Installing cargo-lambda into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r "$ROOT/scripts/requirements.txt"
}

# Runs eventstream-admin, built without needing a database for the query checks.
admin() {
  SQLX_OFFLINE=true cargo run --quiet --manifest-path "$ROOT/Cargo.toml" -p eventstream --bin eventstream-admin -- "$@"
}
