#!/usr/bin/env bash
# Regenerates testdata/pages/ from a real PostgreSQL 15 server: a heap
# relation file of several 8 KiB pages, some changed after a chosen LSN
# (`since`) and some not, with pageinspect's page_header() as the oracle
# of every block's LSN. src/pg/page.rs checks its page LSN reading and its
# changed/unchanged verdict against it (test `real_pages_against_pageinspect`).
#
# Run as root on a machine with Debian's postgresql-15 (and its contrib):
#     sudo testdata/make-page-fixtures.sh
# Output: heap (the relation file, as on disk after a checkpoint),
# since (an LSN), lsns.txt (one line per block: "<block> <lsn>").
set -euo pipefail

BIN=/usr/lib/postgresql/15/bin
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/pages"

if [[ $(id -u) -ne 0 ]]; then
    echo "run as root (the server runs as the postgres OS user via runuser)" >&2
    exit 1
fi
TMP="$(mktemp -d /tmp/pitr-page-fixtures.XXXXXX)"
chmod 0755 "$TMP"
chown postgres: "$TMP"
as_pg() { runuser -u postgres -- env -i PATH="$BIN:/usr/bin:/bin" LC_ALL=C TZ=UTC "$@"; }
cleanup() {
    if [[ -f $TMP/data/postmaster.pid ]]; then
        as_pg pg_ctl -D "$TMP/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
sql() { as_pg psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$TMP" -p 5432 -d postgres -c "$*"; }

as_pg initdb -D "$TMP/data" -N --auth=trust >/dev/null
cat >>"$TMP/data/postgresql.conf" <<EOF
listen_addresses = ''
port = 5432
unix_socket_directories = '$TMP'
autovacuum = off
EOF
as_pg pg_ctl -D "$TMP/data" -l "$TMP/log" -w -t 60 start >/dev/null
sql "create extension pageinspect"
# Six pages of ~40 rows each (fillfactor keeps them apart).
sql "create table t(id int, pad text) with (fillfactor = 100)"
sql "insert into t select g, repeat('x', 180) from generate_series(1, 240) g"
sql "checkpoint"
since=$(sql "select pg_current_wal_lsn()")
# Change blocks 1 and 4 only, after `since`.
sql "update t set pad = repeat('y', 180) where ctid in ('(1,3)', '(4,5)')"
sql "checkpoint"
rm -rf "$OUT"
mkdir -p "$OUT"
cp "$TMP/data/$(sql "select pg_relation_filepath('t')")" "$OUT/heap"
echo "$since" >"$OUT/since"
sql "select b, (page_header(get_raw_page('t', b))).lsn from generate_series(0, pg_relation_size('t') / 8192 - 1) b" \
    | tr '|' ' ' >"$OUT/lsns.txt"
cat "$OUT/lsns.txt"
