# Shared by the scripts: paths, messages, and the services and tools the project needs. Sourcing it
# only defines variables of the sourcing script and functions: it exports nothing. A script that talks
# to LocalStack says so by calling use_localstack.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/.local"          # ignored: pids, logs, generated secrets, node tools
VENV="$ROOT/.venv"            # ignored: Python tools (cargo-lambda, SAM, cfn-lint, pytest)
PG_SERVER_URL=${PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
MAILDEV_VERSION=3.0.0
UV_VERSION=0.13.9
LOCALSTACK_PORT=${LOCALSTACK_PORT:-4566}

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# The local AWS for this script and what it runs (the AWS CLI, SAM, boto3, the AWS SDK): LocalStack's
# gateway (or endpoint $1), with its fixed test credentials unless others are set.
use_localstack() {
  export AWS_ENDPOINT_URL=${1:-http://127.0.0.1:$LOCALSTACK_PORT}
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
  export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} AWS_REGION=${AWS_REGION:-us-east-1}
  export SAM_CLI_TELEMETRY=0
}

# For the tools that serve AWS as well (scripts/queues, scripts/redrive, scripts/bench-lambda): the
# caller's AWS_ENDPOINT_URL; unset, LocalStack; set but empty, AWS with the caller's own credentials.
use_endpoint_from_env() {
  case ${AWS_ENDPOINT_URL-unset} in
    unset) use_localstack ;;
    '') unset AWS_ENDPOINT_URL ;;
    *) use_localstack "$AWS_ENDPOINT_URL" ;;
  esac
}

# The stack's settings, as scripts/up wrote them to .local/stack.env (or the file $1), as variables of
# this script (exported only where they already were).
# shellcheck disable=SC2120  # $1 is optional
load_stack_settings() {
  local file=${1:-$LOCAL/stack.env}
  [ -f "$file" ] || fail "$file is missing; run scripts/up"
  # shellcheck disable=SC1090
  source "$file"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to $2 seconds for `curl $1` to succeed; $3 names what is awaited, $4 the log to show.
wait_for_url() {
  local url=$1 seconds=$2 what=$3 log=${4:-}
  for ((i = 1; i <= seconds; i++)); do
    curl -sf -m 2 -o /dev/null "$url" && return 0
    [ $((i % 15)) -eq 0 ] && echo "    waiting for $what... (${i}s)"
    sleep 1
  done
  [ -n "$log" ] && tail -n 20 "$log" >&2
  fail "$what did not answer at $url within ${seconds}s${log:+; see $log}"
}

apt_install() {
  command -v apt-get >/dev/null || fail "$1 is missing and apt-get is not here to install it"
  step "Installing $* with apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Starts the machine's PostgreSQL when it is not answering; installs it with apt where it is missing.
ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql
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

# Starts the machine's RabbitMQ when it is not answering; installs it with apt where it is missing.
ensure_rabbitmq() {
  if port_open 5672; then return; fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  step "Starting RabbitMQ"
  rabbitmq-server -detached
  for _ in $(seq 60); do port_open 5672 && return; sleep 1; done
  fail "RabbitMQ did not start; see /var/log/rabbitmq/"
}

# The management UI, for people watching the queues.
ensure_rabbitmq_ui() {
  if port_open 15672; then return; fi
  step "Enabling RabbitMQ's management UI"
  rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null
  for _ in $(seq 30); do port_open 15672 && return; sleep 1; done
  fail "RabbitMQ's management UI did not open port 15672"
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

# Whether stamp file $1 holds $2, the hash of the sources of what was installed: then it is current.
stamp_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }

# uv installs the virtualenvs' requirements in seconds where pip's resolver takes minutes; it sits
# in .local/uv, installed with the machine's pip, and caches downloads in ~/.cache/uv.
ensure_uv() {
  UV="$LOCAL/uv/bin/uv"
  if "$UV" --version 2>/dev/null | grep -q "^uv $UV_VERSION\b"; then return; fi
  step "Installing uv $UV_VERSION into $LOCAL/uv"
  rm -rf "$LOCAL/uv"
  python3 -m pip install --quiet --disable-pip-version-check --target "$LOCAL/uv" "uv==$UV_VERSION" \
    || fail "pip could not install uv $UV_VERSION"
}

# The virtualenv $1 with the requirements file $2 installed, made with Python $4 (python3 by default);
# reinstalled, saying $3, only when $2 changed (a hash stamp inside the virtualenv), so that a repeat
# run reuses it. Warns when $2 names a Python ("Python 3.11") other than the virtualenv's.
ensure_venv() {
  local dir=$1 requirements=$2 message=${3:-Installing $2 into $1} python=${4:-python3}
  local stamp="$1/.requirements.sha256" wanted locked version
  wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
  if stamp_is "$stamp" "$wanted"; then return; fi
  locked=$(grep -o -m 1 'Python 3\.[0-9]*' "$requirements" | cut -d' ' -f2 || true)
  if ! "$dir/bin/python" -c 'import sys' 2>/dev/null; then
    command -v "$python" >/dev/null || fail "$python is needed${locked:+ (Python $locked)}"
    step "Creating $dir"
    rm -rf "$dir"
    if ! "$python" -m venv "$dir" 2>/dev/null; then
      # Debian and Ubuntu ship venv (ensurepip) separately.
      rm -rf "$dir"
      apt_install "python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
      "$python" -m venv "$dir"
    fi
  fi
  version=$("$dir/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ -z "$locked" ] || [ "$version" = "$locked" ] \
    || printf 'warning: %s was locked on Python %s, this is %s\n' "${requirements#"$ROOT"/}" "$locked" "$version" >&2
  ensure_uv
  step "$message"
  run_logged "install-$(basename "$dir")" "$UV" pip install --python "$dir/bin/python" -r "$requirements" \
    || fail "uv could not install $requirements; see .local/install-$(basename "$dir").log"
  echo "$wanted" > "$stamp"
}

# The Python tools, in the project's virtualenv.
ensure_tools() {
  ensure_venv "$VENV" "$ROOT/scripts/requirements.txt" \
    "Installing cargo-lambda, AWS SAM, cfn-lint, awscli-local, pytest and Playwright into $VENV"
}

# checkov, in its own virtualenv (its pins clash with the tools'); scripts/test scans template.yaml with it.
CHECKOV_VENV="$ROOT/.venv-checkov"
ensure_checkov() {
  ensure_venv "$CHECKOV_VENV" "$ROOT/scripts/checkov-requirements.txt" "Installing checkov into $CHECKOV_VENV"
}

# The browser tests: Debian's Chromium, and the pinned npm packages that stand in for the CDN the
# GraphiQL page loads from (tests/e2e/package-lock.json), reinstalled when the lock changes.
ensure_browser() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  local lock="$ROOT/tests/e2e/package-lock.json" stamp="$ROOT/tests/e2e/node_modules/.package-lock.sha256" wanted
  wanted=$(sha256sum "$lock" | cut -d' ' -f1)
  if stamp_is "$stamp" "$wanted"; then return; fi
  command -v npm >/dev/null || apt_install nodejs npm
  step "Installing GraphiQL and React for the browser tests into tests/e2e/node_modules"
  npm ci --prefix "$ROOT/tests/e2e" --no-audit --no-fund --loglevel=error >/dev/null \
    || fail "npm ci could not install tests/e2e/package-lock.json"
  echo "$wanted" > "$stamp"
}

# maildev: a local SMTP sink with a web UI and an HTTP API, from npm.
ensure_maildev() {
  if [ -x "$LOCAL/maildev/node_modules/.bin/maildev" ]; then return; fi
  command -v npm >/dev/null || apt_install nodejs npm
  step "Installing maildev $MAILDEV_VERSION into $LOCAL/maildev"
  mkdir -p "$LOCAL/maildev"
  npm install --silent --no-audit --no-fund --prefix "$LOCAL/maildev" "maildev@$MAILDEV_VERSION" >/dev/null 2>&1 \
    || fail "npm could not install maildev@$MAILDEV_VERSION"
}

# What the functions, the bridge and the Rust tests talk to, natively: the machine's PostgreSQL and
# RabbitMQ, LocalStack with the project's executor (localstack/), maildev on SMTP port 1025 with its
# UI and API on 1080. Installs what is missing; returns once LocalStack answers. scripts/down stops
# LocalStack and maildev.
start_native_services() {
  ensure_postgres
  ensure_rabbitmq
  "$ROOT/localstack/install"
  ensure_maildev
  start_background localstack "$ROOT/localstack/run"
  start_background maildev "$LOCAL/maildev/node_modules/.bin/maildev" \
    --ip 127.0.0.1 --smtp 1025 --web 1080 --silent
  wait_for_url "http://127.0.0.1:$LOCALSTACK_PORT/_localstack/health" 120 LocalStack "$LOCAL/localstack.log"
}

# Secrets (.env, the demo password, the stack's settings, the deploy's parameters) are their owner's
# alone and never on a command line, where any user of the machine reads them (/proc/*/cmdline).
# Runs "${@:2}" with its output going to $1, written whole or not at all, readable by its owner only.
write_private() (
  umask 077
  local file=$1 tmp
  shift
  tmp=$(mktemp "$file.XXXXXX")
  if "$@" >"$tmp"; then mv -f "$tmp" "$file"; else rm -f "$tmp"; exit 1; fi
)

# Makes each of "$@" that exists readable by its owner only: files a checkout wrote before this rule.
make_private() {
  local file
  for file in "$@"; do
    if [ -d "$file" ]; then chmod 700 "$file"; elif [ -e "$file" ]; then chmod 600 "$file"; fi
  done
}

# Runs "$@" in its own process group in the background, logging to .local/$name.log, unless the
# process recorded in .local/$name.pid is still alive.
start_background() {
  local name=$1; shift
  mkdir -p "$LOCAL"
  if [ -f "$LOCAL/$name.pid" ] && kill -0 "$(cat "$LOCAL/$name.pid")" 2>/dev/null; then
    step "$name is already running (pid $(cat "$LOCAL/$name.pid"))"
    return
  fi
  step "Starting $name (log: .local/$name.log)"
  setsid "$@" >"$LOCAL/$name.log" 2>&1 </dev/null &
  echo $! > "$LOCAL/$name.pid"
}

# Stops what start_background started as $name, if it runs, and forgets its pid.
stop_background() {
  local name=$1 pidfile="$LOCAL/$1.pid" pid
  [ -e "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    step "Stopping $name (pid $pid)"
    # Each was started as its own process group (setsid): TERM lets it stop its children.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Starts "${@:2}" in the background with its output in .local/$1.log; its pid is in LOGGED_PID, for
# wait_logged. Lets a long step (the build) go on while the script does others.
start_logged() {
  local name=$1; shift
  mkdir -p "$LOCAL"
  "$@" >"$LOCAL/$name.log" 2>&1 &
  LOGGED_PID=$!
}

# Waits for what start_logged started as $1 (pid $2), echoing its log's latest line every 10 s so a
# long step shows progress; on failure shows the log's tail and returns the command's status.
wait_logged() {
  local name=$1 pid=$2 log="$LOCAL/$1.log" seconds=0 status=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    seconds=$((seconds + 1))
    [ $((seconds % 10)) -eq 0 ] && printf '    %3ds  %s\n' "$seconds" "$(tail -n 1 "$log" | tr -d '\r' | cut -c1-100)"
  done
  wait "$pid" || status=$?
  [ "$status" -eq 0 ] || tail -n 30 "$log" >&2
  return "$status"
}

# Runs "${@:2}" with its output in .local/$1.log and progress as wait_logged shows it.
run_logged() {
  start_logged "$@"
  wait_logged "$1" "$LOGGED_PID"
}

# The local stack, the admin command and the tests are built once, with cargo's `local` profile
# (Cargo.toml: optimised, no LTO, incremental); EVENTSTREAM_PROFILE=release builds what goes to AWS,
# as the benchmarks measure it. BUILT is where the binaries land.
BUILD_PROFILE=${EVENTSTREAM_PROFILE:-local}
BUILT="${CARGO_TARGET_DIR:-$ROOT/target}/$BUILD_PROFILE"

# Every binary of the workspace but the benchmarks': the functions, the bridge, eventstream-admin.
build_binaries() {
  cargo build --profile "$BUILD_PROFILE" --locked --manifest-path "$ROOT/Cargo.toml" \
    --workspace --exclude bench --bins
}

# Runs eventstream-admin as build_binaries built it. Not `cargo run -p eventstream`: cargo unifies
# features over the packages it builds, so building one package alone compiles the library and
# several dependencies again, with other features, for minutes.
admin() {
  [ -x "$BUILT/eventstream-admin" ] || build_binaries
  "$BUILT/eventstream-admin" "$@"
}
