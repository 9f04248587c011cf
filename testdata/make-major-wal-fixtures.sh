#!/usr/bin/env bash
# Regenerates testdata/wal/pgNN/ for the majors without a pg_waldump here
# (13, 14, 16, 17, 18; 15 has make-wal-fixtures.sh): archived 1 MiB WAL
# segments (zstd) of a small workload, and an oracle written by the server
# itself (oracle.txt), so src/pg/wal is checked against every major.
#
# Run as root after scripts/pg-majors.sh (initdb and the servers run as the
# postgres OS user via runuser; Debian's postgresql-15 psql drives them):
#     sudo scripts/pg-majors.sh && sudo testdata/make-major-wal-fixtures.sh [MAJOR...]
# Idempotent: each major's directory is rebuilt from a fresh cluster.
#
# The workload, in one psql session, after a segment switch (so setup DDL
# stays out of the archived range): commits (one dropping a table), a
# rollback, a rollback that created a table, a large insert (TOAST records
# across pages), a prepared transaction with a subtransaction and a dropped
# table committed, one rolled back, pg_create_restore_point('rp_one'), a
# CHECKPOINT, a 1.5 MB logical message (a record spanning segments) and
# pg_switch_wal() three times. autovacuum is off, so every transaction end in
# the archived segments is one the oracle lists.
#
# oracle.txt (whitespace-separated; `#` comments), in WAL order where ordered:
#   major N / server_version_num N / system_identifier N / wal_segment_size N
#   commit|commit_prepared <xid> <commit time, µs, UTC>
#       time = pg_xact_commit_timestamp(xid) (track_commit_timestamp = on)
#   abort|abort_prepared <xid> <clock before> <clock after>
#       aborts have no commit timestamp: the record's time lies in between
#   restore_point <name> <lsn returned by pg_create_restore_point: record end>
#   checkpoint <checkpoint_lsn> <redo_lsn> <timeline_id> (pg_control_checkpoint())
#   switch <lsn returned by pg_switch_wal(): end of the switch record>
#   segment <name>   every archived segment kept, in order
# xids are pg_current_xact_id() (13+), which for epoch 0 is the 32-bit xid.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PSQL=/usr/lib/postgresql/15/bin/psql

if [[ $(id -u) -ne 0 ]]; then
    echo "run as root (it runs Postgres as the postgres user)" >&2
    exit 1
fi
[[ -x $PSQL ]] || { echo "missing $PSQL: apt-get install postgresql-15" >&2; exit 1; }
command -v zstd >/dev/null || apt-get install -y -q zstd >/dev/null

MAJORS=("$@")
[[ ${#MAJORS[@]} -gt 0 ]] || MAJORS=(13 14 16 17 18)
declare -A BIN=()
while read -r m dir; do BIN[$m]=$dir; done < <("$REPO/scripts/pg-majors.sh" --print)
for m in "${MAJORS[@]}"; do
    [[ -n ${BIN[$m]:-} ]] || {
        echo "no PostgreSQL $m installed: run scripts/pg-majors.sh as root first" >&2
        exit 1
    }
done

WORK="$(mktemp -d /tmp/pitr-majorwal.XXXXXX)"
chmod 0755 "$WORK"
chown postgres: "$WORK"
cd "$WORK" # the postgres user must be able to read the cwd
CURRENT="" CURRENT_BIN=""

as_pg() { runuser -u postgres -- env -i PATH=/usr/bin:/bin LC_ALL=C TZ=UTC PGTZ=UTC "$@"; }

cleanup() {
    if [[ -n $CURRENT && -f $CURRENT/postmaster.pid ]]; then
        as_pg "$CURRENT_BIN/pg_ctl" -D "$CURRENT" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

one_major() {
    local major=$1 bin=${BIN[$1]} dir="$WORK/$1"
    local data="$dir/data" archive="$dir/archive" out="$REPO/testdata/wal/pg$1"
    as_pg mkdir -p "$dir" "$archive"
    as_pg "$bin/initdb" -D "$data" --wal-segsize=1 -U postgres --auth=trust -E UTF8 \
        --locale=C --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF
# --- pitr fixture settings ---
listen_addresses = ''
port = 5432
unix_socket_directories = '$dir'
wal_level = replica
archive_mode = on
archive_command = 'test ! -f $archive/%f && cp %p $archive/%f'
max_prepared_transactions = 5
track_commit_timestamp = on
timezone = 'UTC'
log_timezone = 'UTC'
autovacuum = off
fsync = off
EOF
    CURRENT=$data CURRENT_BIN=$bin
    as_pg "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >/dev/null || {
        tail -n 20 "$dir/server.log" >&2
        exit 1
    }
    local oracle="$dir/oracle.txt"
    as_pg "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h "$dir" -p 5432 -d postgres \
        -f - >"$oracle" <<'EOF'
SET timezone = 'UTC';
\set ts 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
SELECT current_setting('server_version_num') AS num, system_identifier AS sysid,
       setting AS segsize
  FROM pg_control_system(), pg_settings WHERE name = 'wal_segment_size' \gset
\echo major :num
\echo server_version_num :num
\echo system_identifier :sysid
\echo wal_segment_size :segsize

CREATE TABLE t (id int, v text);
ALTER TABLE t ALTER v SET STORAGE EXTERNAL;   -- toasted, uncompressed: 2 kB records
CREATE TABLE drop_me (id int);
CREATE TABLE drop_me_too (id int);
SELECT pg_switch_wal() AS sw \gset
SELECT pg_walfile_name(pg_current_wal_insert_lsn()) AS first_seg \gset
\echo first_segment :first_seg

-- commits and aborts
BEGIN; INSERT INTO t VALUES (1, 'one');
SELECT pg_current_xact_id() AS xid \gset
COMMIT;
SELECT to_char(pg_xact_commit_timestamp(:'xid'::xid), :'ts') AS t \gset
\echo commit :xid :t
BEGIN; INSERT INTO t VALUES (2, 'two');
SELECT pg_current_xact_id() AS xid \gset
COMMIT;
SELECT to_char(pg_xact_commit_timestamp(:'xid'::xid), :'ts') AS t \gset
\echo commit :xid :t
BEGIN; INSERT INTO t VALUES (3, 'rolled back');
SELECT pg_current_xact_id() AS xid, to_char(clock_timestamp(), :'ts') AS t0 \gset
ROLLBACK;
SELECT to_char(clock_timestamp(), :'ts') AS t1 \gset
\echo abort :xid :t0 :t1
-- an abort that drops a new relation (rels and, 15+, dropped stats)
BEGIN; CREATE TABLE gone (id int); INSERT INTO gone VALUES (1);
SELECT pg_current_xact_id() AS xid, to_char(clock_timestamp(), :'ts') AS t0 \gset
ROLLBACK;
SELECT to_char(clock_timestamp(), :'ts') AS t1 \gset
\echo abort :xid :t0 :t1
SELECT pg_switch_wal() AS sw \gset
\echo switch :sw

-- a commit with records across pages
BEGIN;
INSERT INTO t SELECT i, repeat(md5(i::text), 100) FROM generate_series(100, 179) i;
SELECT pg_current_xact_id() AS xid \gset
COMMIT;
SELECT to_char(pg_xact_commit_timestamp(:'xid'::xid), :'ts') AS t \gset
\echo commit :xid :t

-- COMMIT_PREPARED with subxacts, rels, dropped stats and invals before the twophase xid
BEGIN;
INSERT INTO t VALUES (4, 'prepared');
SAVEPOINT s1;
INSERT INTO t VALUES (5, 'in subxact');
DROP TABLE drop_me;
SELECT pg_current_xact_id() AS xid \gset
PREPARE TRANSACTION 'p_commit';
COMMIT PREPARED 'p_commit';
SELECT to_char(pg_xact_commit_timestamp(:'xid'::xid), :'ts') AS t \gset
\echo commit_prepared :xid :t
-- ABORT_PREPARED with subxacts, rels and dropped stats
BEGIN;
CREATE TABLE p_gone (id int);
INSERT INTO t VALUES (6, 'prepared, rolled back');
SAVEPOINT s2;
INSERT INTO t VALUES (7, 'in subxact');
SELECT pg_current_xact_id() AS xid \gset
PREPARE TRANSACTION 'p_abort';
SELECT to_char(clock_timestamp(), :'ts') AS t0 \gset
ROLLBACK PREPARED 'p_abort';
SELECT to_char(clock_timestamp(), :'ts') AS t1 \gset
\echo abort_prepared :xid :t0 :t1

SELECT pg_create_restore_point('rp_one') AS rp \gset
\echo restore_point rp_one :rp
BEGIN; DROP TABLE drop_me_too;
SELECT pg_current_xact_id() AS xid \gset
COMMIT;
SELECT to_char(pg_xact_commit_timestamp(:'xid'::xid), :'ts') AS t \gset
\echo commit :xid :t

CHECKPOINT;
SELECT checkpoint_lsn, redo_lsn, timeline_id FROM pg_control_checkpoint() \gset
\echo checkpoint :checkpoint_lsn :redo_lsn :timeline_id
BEGIN; UPDATE t SET v = 'updated' WHERE id = 1;   -- a full-page image after the checkpoint
SELECT pg_current_xact_id() AS xid \gset
COMMIT;
SELECT to_char(pg_xact_commit_timestamp(:'xid'::xid), :'ts') AS t \gset
\echo commit :xid :t
SELECT pg_switch_wal() AS sw \gset
\echo switch :sw

-- one 1.5 MB record (non-transactional: no xid) spans segments
SELECT pg_logical_emit_message(false, 'pitr', repeat('m', 1500000)) IS NOT NULL AS ok \gset
BEGIN; INSERT INTO t VALUES (1000, 'after the long record');
SELECT pg_current_xact_id() AS xid \gset
COMMIT;
SELECT to_char(pg_xact_commit_timestamp(:'xid'::xid), :'ts') AS t \gset
\echo commit :xid :t
SELECT pg_switch_wal() AS sw \gset
SELECT pg_walfile_name(:'sw') AS last_seg \gset
\echo switch :sw
\echo last_segment :last_seg
EOF
    # "major" was printed as server_version_num; make it the major.
    sed -i "s/^major .*/major $major/" "$oracle"
    local num first last
    num=$(awk '$1 == "server_version_num" { print $2 }' "$oracle")
    [[ $((num / 10000)) == "$major" ]] || { echo "server is $num, not $major" >&2; exit 1; }
    first=$(awk '$1 == "first_segment" { print $2 }' "$oracle")
    last=$(awk '$1 == "last_segment" { print $2 }' "$oracle")
    local i
    for i in $(seq 1 120); do
        [[ -f $archive/$last ]] && break
        sleep 0.5
    done
    [[ -f $archive/$last ]] || { echo "PostgreSQL $major: $last was not archived" >&2; exit 1; }
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    CURRENT=""

    rm -rf "$out"
    mkdir -p "$out"
    {
        echo "# Oracle for testdata/wal/pg$major/: written by testdata/make-major-wal-fixtures.sh"
        echo "# from the server itself (pg_current_xact_id, pg_xact_commit_timestamp,"
        echo "# clock_timestamp around aborts, pg_create_restore_point, pg_control_checkpoint,"
        echo "# pg_switch_wal) on PostgreSQL $major ($("$bin/postgres" --version))."
        grep -v -e '^first_segment ' -e '^last_segment ' "$oracle"
    } >"$out/oracle.txt"
    local f n=0
    for f in $(ls "$archive" | sort); do
        [[ $f =~ ^[0-9A-F]{24}$ ]] || continue
        [[ $f < "$first" || $f > "$last" ]] && continue
        zstd -19 -q -f "$archive/$f" -o "$out/$f.zst"
        echo "segment $f" >>"$out/oracle.txt"
        n=$((n + 1))
    done
    chmod 0644 "$out"/*
    chown --reference="$HERE" "$out" "$out"/*
    echo "$major: $n segments ($first .. $last) in $out ($(du -sh "$out" | cut -f1))"
    rm -rf "$dir"
}

for m in "${MAJORS[@]}"; do
    one_major "$m"
done
