#!/usr/bin/env bash
# Installs what pitr's demo and tests need on a fresh Debian machine, as
# root: PostgreSQL 15 (server and tools), zstd (fixture scripts), and a C
# compiler for zstd-sys. Idempotent: installs only what is missing.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need+=(postgresql-15)
[ -x /usr/lib/postgresql/15/bin/psql ] || need+=(postgresql-client-15)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${need[*]}; run as root to install them" >&2
        exit 1
    fi
    echo "setup: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
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
