#!/usr/bin/env bash
# Sets up everything the project needs on a fresh machine, idempotently.
#   scripts/setup.sh run    the virtualenv and the package
#   scripts/setup.sh test   that, plus the Debian peers the tests talk to and the local services
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
# Real peers the tests run against (see DEVELOPERS guide: real over mock).
# chromium + chromium-driver: the browser the web console's tests drive (Playwright's own browsers are never downloaded).
# gcc: the C compiler scripts/native.py builds the compiled modules with (tests/test_native.py expects them).
DEBIAN_PEERS=(rsyslog prometheus zabbix-agent haproxy chrony systemd systemd-journal-remote faketime chromium chromium-driver gcc)

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

python_env() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Python >= 3.11 is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1
  fi
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
  local extra=$1 stamp="$VENV/.installed-$1" want
  want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing the package and its dependencies ($extra)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    if [ "$extra" = "run" ]; then
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[native]"
    else
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extra]"
    fi
    echo "$want" > "$stamp"
  fi
}

debian_peers() {
  local missing=()
  for p in "${DEBIAN_PEERS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing Debian peers: ${missing[*]}"
  $sudo apt-get update -qq
  # The packages' own services are not wanted: tests start the peers themselves.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

services() {
  # PostgreSQL and RabbitMQ normally run already; start them if they do not.
  if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  if command -v rabbitmq-server >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    log "starting RabbitMQ"
    rabbitmq-server -detached || true
    for _ in $(seq 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done
  fi
}

gnocchi_env() {
  # The real Gnocchi server (tests/test_gnocchi_*.py, benchmarks/gnocchi.py) pins library versions that
  # clash with ours (oslo, sqlalchemy, werkzeug), so it lives in a virtualenv of its own.
  local venv=.venv-gnocchi want="gnocchi[postgresql]==4.7.1 gunicorn"
  [ -x "$venv/bin/python" ] || { log "creating $venv"; "$PYTHON" -m venv "$venv"; }
  if [ ! -f "$venv/.installed" ] || [ "$(cat "$venv/.installed")" != "$want" ]; then
    log "installing the real Gnocchi server into $venv"
    # shellcheck disable=SC2086  # $want is a list of requirements
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $want
    echo "$want" > "$venv/.installed"
  fi
}

native() {
  # The hot modules compiled with mypyc (telemetry/_native.py); a no-op when the build matches the source.
  # Without a compiler the package runs as Python, slower, and says so.
  "$VENV/bin/python" scripts/native.py || log "compiled modules not built: the package runs as Python"
}

case "${1:-run}" in
  run) python_env run; native ;;
  test) python_env test; debian_peers; native; gnocchi_env; services ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
