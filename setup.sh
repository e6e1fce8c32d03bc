#!/usr/bin/env bash
# Set up Trellis on a fresh Debian machine: Debian packages (as root), .venv, the package itself.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

if [ "$(id -u)" = 0 ]; then
  need=()
  command -v iptables >/dev/null || need+=(iptables)
  command -v ip >/dev/null || need+=(iproute2)
  command -v setpriv >/dev/null || need+=(util-linux)
  command -v wrk >/dev/null || need+=(wrk)  # bench/dataplane.py's load generator
  if [ ${#need[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
else
  echo "note: not root, so no Debian packages were installed and only --capture=proxy mode works" >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
echo "==> installing trellis into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# xds-protos ships an old copy of the OpenTelemetry protos in the same package path, and
# whichever wheel pip unpacks last wins: reinstall the pinned opentelemetry-proto on top.
.venv/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps \
  "$(grep -o 'opentelemetry-proto==[0-9.]*' pyproject.toml)"
mkdir -p "$HOME/.local/bin" 2>/dev/null || true
for cmd in trellis trellisd trellis-agent; do
  ln -sf "$PWD/.venv/bin/$cmd" /usr/local/bin/$cmd 2>/dev/null || ln -sf "$PWD/.venv/bin/$cmd" "$HOME/.local/bin/$cmd"
done
echo "==> done: run 'trellis demo'"
