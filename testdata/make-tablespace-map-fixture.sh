#!/usr/bin/env bash
# Regenerates testdata/pg15/tablespace_map: the tablespace_map text that
# PostgreSQL 15's pg_backup_stop returns (spcmapfile) for a cluster with two
# tablespaces, one whose path has a space ("ts one") and one whose path has
# a backslash ("ts\two", escaped as "\\" from PostgreSQL 15 on). The
# temp-dir part of the paths changes run to run; src/pg/tablespace_map.rs
# checks only the ends of the paths and that the text writes back byte for
# byte.
#
# Run as root on a machine with Debian's postgresql-15 package:
#     sudo testdata/make-tablespace-map-fixture.sh
# The server listens on a Unix socket in the temp dir only.
set -euo pipefail

BIN=/usr/lib/postgresql/15/bin
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/pg15/tablespace_map"

if [[ $(id -u) -ne 0 ]]; then
    echo "run as root (initdb and the server run as the postgres OS user via runuser)" >&2
    exit 1
fi

TMP="$(mktemp -d /tmp/pitr-fixtures.XXXXXX)"
chmod 0755 "$TMP"
chown postgres: "$TMP"
as_pg() { runuser -u postgres -- env -i LC_ALL=C PATH=/usr/bin:/bin "$@"; }
cleanup() {
    as_pg "$BIN/pg_ctl" stop -m immediate -D "$TMP/data" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

as_pg "$BIN/initdb" -D "$TMP/data" -A trust -U postgres --no-sync >/dev/null
cat >>"$TMP/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$TMP'
port = 5432
wal_level = replica
fsync = off
CONF
as_pg "$BIN/pg_ctl" start -w -D "$TMP/data" -l "$TMP/log" >/dev/null
as_pg mkdir "$TMP/ts one" "$TMP/ts\\two"
PSQL=("$BIN/psql" -X -q -At -h "$TMP" -p 5432 -U postgres -d postgres)
as_pg "${PSQL[@]}" -c "create tablespace one location '$TMP/ts one'"
as_pg "${PSQL[@]}" -c "create tablespace two location '$TMP/ts\\two'"
# One session for start and stop (the non-exclusive API); the map is the
# third column of pg_backup_stop, printed without psql's escaping.
as_pg "${PSQL[@]}" -o "$TMP/map" <<'SQL'
select pg_backup_start('fixture', true) \g /dev/null
select spcmapfile from pg_backup_stop(false) \g (format=unaligned tuples_only=on)
SQL
# psql adds one newline after the value; the map already ends in one.
head -c -1 "$TMP/map" >"$OUT"
echo "wrote $OUT:"
cat -A "$OUT"
