#!/usr/bin/env bash
# One-command setup for a fresh Debian 12 machine (Python 3.11):
#   system packages (apt) + a virtualenv with vmflow installed editable, with test extras.
# Idempotent: safe to re-run.  It does NOT start vmflow; afterwards run e.g.
#   .venv/bin/vmflow up
# Environment:
#   VMFLOW_VENV        virtualenv path (default: .venv in the repo root)
#   VMFLOW_FORCE_APT=1 run apt-get update/install even if every package is installed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# -- root or sudo -----------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    die "not root and sudo is not available: run as root or install sudo"
fi

# -- system packages --------------------------------------------------------------------
# Build deps for libvirt-python / psycopg, qemu-img, genisoimage (guests' config
# drives), and the services the tests use.
APT_PACKAGES=(libvirt-dev pkg-config gcc python3-dev python3-venv qemu-utils genisoimage
              redis-server postgresql)
# libvirt-daemon only for libvirt's driver libraries; without --no-install-recommends it
# drags in qemu-system and ~170 other packages the test driver does not need.
# chromium: the headless browser the dashboard's tests drive (Playwright, system browser).
APT_PACKAGES_NO_RECOMMENDS=(libvirt-daemon chromium)

missing=()
for pkg in "${APT_PACKAGES[@]}" "${APT_PACKAGES_NO_RECOMMENDS[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
    [ "${status:0:2}" = "ii" ] || missing+=("$pkg")
done

apt_get() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o DPkg::Lock::Timeout=300 "$@"
}

if [ "${#missing[@]}" -eq 0 ] && [ "${VMFLOW_FORCE_APT:-0}" != "1" ]; then
    say "system packages already installed"
else
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script targets Debian 12"
    say "apt-get update"
    apt_get update
    say "installing system packages: ${APT_PACKAGES[*]}"
    apt_get install "${APT_PACKAGES[@]}"
    say "installing system packages (no recommends): ${APT_PACKAGES_NO_RECOMMENDS[*]}"
    apt_get install --no-install-recommends "${APT_PACKAGES_NO_RECOMMENDS[@]}"
fi

# -- the user simulated hypervisors run as ----------------------------------------------
# A simulated host's libvirtd (virt/hostd.py) runs in session mode, which a root
# libvirtd cannot: as root it runs as this unprivileged system user.
if ! id vmflowhv >/dev/null 2>&1; then
    say "creating system user vmflowhv (simulated hosts' libvirtd)"
    "${SUDO[@]}" useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin vmflowhv
fi

# -- virtualenv -------------------------------------------------------------------------
VENV="${VMFLOW_VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac

if command -v python3.11 >/dev/null 2>&1; then
    PYTHON=python3.11
elif command -v python3 >/dev/null 2>&1; then
    PYTHON=python3
else
    die "neither python3.11 nor python3 found"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); vmflow needs Python >= 3.11"

venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import sys, pip; sys.exit(sys.version_info < (3, 11))' \
            >/dev/null 2>&1
}

if venv_ok; then
    say "reusing virtualenv $VENV ($("$VENV/bin/python" -V 2>&1))"
else
    say "creating virtualenv $VENV with $PYTHON ($("$PYTHON" -V 2>&1))"
    "$PYTHON" -m venv --clear "$VENV"
fi

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
say "upgrading pip"
"$VENV/bin/python" -m pip install -q --progress-bar off --upgrade pip
say "installing vmflow (editable, with test extras)"
"$VENV/bin/python" -m pip install -q --progress-bar off -e '.[test]'

"$VENV/bin/vmflow" --help >/dev/null || die "vmflow was installed but '$VENV/bin/vmflow --help' fails"

# -- Tempest ----------------------------------------------------------------------------
# tests/acceptance/test_tempest.py runs Tempest (scripts/tempest.sh) from a venv of its
# own, so that its dependencies stay out of .venv.  Created here, before the tests, and
# reused when it already holds this version (a few seconds on a re-run).
# VMFLOW_SKIP_TEMPEST=1 leaves it out.
TEMPEST_VENV="${TEMPEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vmflow/tempest-venv}"
TEMPEST_VERSION="$(sed -n 's/^TEMPEST_VERSION=//p' "$ROOT/scripts/tempest.sh")"
tempest_ok() {
    "$TEMPEST_VENV/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(m.version("tempest") != sys.argv[1])' "$TEMPEST_VERSION" >/dev/null 2>&1 &&
        [ -x "$TEMPEST_VENV/bin/tempest" ] && [ -x "$TEMPEST_VENV/bin/stestr" ]
}
if [ "${VMFLOW_SKIP_TEMPEST:-0}" = "1" ]; then
    say "Tempest venv skipped (VMFLOW_SKIP_TEMPEST=1)"
elif tempest_ok; then
    say "reusing Tempest $TEMPEST_VERSION in $TEMPEST_VENV"
else
    say "installing Tempest $TEMPEST_VERSION into $TEMPEST_VENV"
    "$PYTHON" -m venv --clear "$TEMPEST_VENV"
    "$TEMPEST_VENV/bin/python" -m pip install -q --progress-bar off "tempest==$TEMPEST_VERSION"
    tempest_ok || die "Tempest was installed into $TEMPEST_VENV but does not run"
fi
say "done: $VENV/bin/vmflow is ready (start it with: $VENV/bin/vmflow up)"
