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
  command -v prometheus >/dev/null || need+=(prometheus)  # trellis up --prometheus
  command -v npm >/dev/null || need+=(npm)  # the console web UI's packages (cytoscape)
  command -v chromium >/dev/null || need+=(chromium)  # the console's browser tests (Playwright)
  command -v firefox-esr >/dev/null || need+=(firefox-esr)  # the console's Firefox test (puppeteer-core, BiDi)
  if [ ${#need[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${need[*]}"
    apt-get update -qq
    # Debian's prometheus starts a system service on install; Trellis runs its own instead.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
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
if command -v npm >/dev/null; then
  echo "==> installing the console web UI's npm packages"
  (cd src/trellis/console/web && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
  # Test-only: puppeteer-core drives Debian's firefox-esr (it downloads no browser).
  (cd tests/console/firefox && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "note: npm not found, so the console's traffic graph will not load (install npm, rerun)" >&2
fi
mkdir -p "$HOME/.local/bin" 2>/dev/null || true
for cmd in trellis trellisd trellis-agent; do
  ln -sf "$PWD/.venv/bin/$cmd" /usr/local/bin/$cmd 2>/dev/null || ln -sf "$PWD/.venv/bin/$cmd" "$HOME/.local/bin/$cmd"
done
echo "==> done: run 'trellis demo'"
