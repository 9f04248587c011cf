#!/usr/bin/env bash
# Regenerates testdata/wal/pg15-crossing/: archived 1 MiB WAL segments from a
# throwaway PostgreSQL 15 cluster (zstd-compressed) in which chosen records
# start a chosen number of bytes before the end of a segment N and so cross
# into segment N+1, with a pg_waldump-derived oracle (crossing.txt).
#
# Run as root (initdb refuses root, so every Postgres program runs as the
# `postgres` OS user through runuser). Idempotent: the output directory is
# rebuilt from scratch each run. Needs Debian's postgresql-15 and the zstd CLI
# (installed with apt-get if missing).
#
# Placement uses pitr_place_at_segment_end(gap, transactional) from
# sql/place-at-segment-end.sql: it pads WAL with logical messages until the
# insert position is segment end - gap. Each case runs right after a segment
# switch (so it fills a fresh segment N, and N, N+1 are its own), and ends
# with a switch right after the crossing record (so N+1 is archived at once).
# Cases, in this order:
#   commit_32           COMMIT at end - 32 (record header whole in N, time cut)
#   commit_16           COMMIT at end - 16 (record header cut)
#   commit_8            COMMIT at end - 8
#   abort_24            ABORT (ROLLBACK of a transaction with an xid) at end - 24
#   commit_prepared_32  COMMIT PREPARED at end - 32 (placed by a separate,
#                       non-transactional statement after PREPARE TRANSACTION)
#   restore_point_56    pg_create_restore_point('crossing-rp') at end - 56
#   big_commit_40       COMMIT with two subtransaction xids at end - 40 (its
#                       time is whole in N, the subxact list crosses)
# Another process may insert a record (bgwriter's RUNNING_XACTS, a checkpoint)
# between the placement and the record; every case is therefore checked with
# pg_waldump over the archive (the record at segment end - gap must be the
# expected one, and longer than gap) and retried a few times if it is not.
#
# Output, in wal/pg15-crossing/:
#   <segment>.zst   segments N and N+1 of every case, and no others
#   crossing.txt    one line per case, in the order above:
#     <case> <N segment name> <N+1 segment name> <pg_waldump line>
#   where the line is the crossing record's, verbatim, as printed by
#   `pg_waldump -p <archive> <N> <N+1>`. pg_waldump's stderr is discarded.
# All times are UTC (TZ, PGTZ and the server's timezone).
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/wal/pg15-crossing"
PLACE_SQL="$HERE/sql/place-at-segment-end.sql"
ATTEMPTS=5

if [ "$(id -u)" -ne 0 ]; then
    echo "make-crossing-wal-fixtures.sh: run as root (it runs Postgres as the postgres user)" >&2
    exit 1
fi
for b in initdb pg_ctl psql pg_waldump; do
    [ -x "$PGBIN/$b" ] || { echo "missing $PGBIN/$b: install postgresql-15" >&2; exit 1; }
done
[ -f "$PLACE_SQL" ] || { echo "missing $PLACE_SQL" >&2; exit 1; }
if ! command -v zstd >/dev/null; then
    apt-get install -y -q zstd >/dev/null
fi

export TZ=UTC PGTZ=UTC LC_ALL=C
WORK="$(mktemp -d /tmp/pitr-crossfix.XXXXXX)"
chmod 755 "$WORK"
mkdir "$WORK/archive"
chown -R postgres:postgres "$WORK"
cd "$WORK"   # the postgres user cannot necessarily read the caller's cwd

as_pg() { runuser -u postgres -- env TZ=UTC PGTZ=UTC LC_ALL=C "$@"; }

cleanup() {
    if [ -f "$WORK/data/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Unix socket only (listen_addresses = ''), so the port only names the socket
# file in our private directory; still pick one nobody is listening on.
PORT=""
for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { echo "no free port found" >&2; exit 1; }

as_pg "$PGBIN/initdb" -D "$WORK/data" --wal-segsize=1 -U postgres --auth=trust \
    -E UTF8 --locale=C --no-sync >"$WORK/initdb.log"

# Quiet: no autovacuum, no timed or size-triggered checkpoints during the run,
# a bgwriter that writes no buffers and wakes rarely (it still logs
# RUNNING_XACTS about every 15 s while WAL grows: the retries handle those).
cat >>"$WORK/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
wal_level = replica
archive_mode = on
archive_command = 'test ! -f $WORK/archive/%f && cp %p $WORK/archive/%f'
archive_timeout = 0
max_prepared_transactions = 5
track_commit_timestamp = off
timezone = 'UTC'
log_timezone = 'UTC'
autovacuum = off
fsync = off
checkpoint_timeout = 1d
max_wal_size = 4GB
bgwriter_delay = 10s
bgwriter_lru_maxpages = 0
EOF

as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null

sql() { as_pg "$PGBIN/psql" -X -q -A -t -h "$WORK" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }

sql <"$PLACE_SQL" >/dev/null

# pg_lsn text (0/1FFFFE0) -> pg_waldump's form (0/01FFFFE0).
waldump_lsn() { printf '%X/%08X' "0x${1%/*}" "0x${1#*/}"; }

wait_archived() {
    for _ in $(seq 1 120); do
        [ -f "$WORK/archive/$1" ] && return 0
        sleep 0.5
    done
    echo "segment $1 was not archived" >&2
    exit 1
}

# The SQL of one case, between the switch before it and the switch after it.
# It must \gset lsn to pitr_place_at_segment_end()'s result and then write the
# crossing record.
case_sql() {
    case "$1" in
    commit_32 | commit_16 | commit_8)
        cat <<EOF
BEGIN;
SELECT pitr_place_at_segment_end(${1#commit_}, true) AS lsn \gset
COMMIT;
EOF
        ;;
    abort_24)
        cat <<'EOF'
BEGIN;
SELECT pitr_place_at_segment_end(24, true) AS lsn \gset
ROLLBACK;
EOF
        ;;
    commit_prepared_32)
        cat <<'EOF'
BEGIN;
SELECT pg_logical_emit_message(true, 'pitr', 'prepared') AS m \gset
PREPARE TRANSACTION 'crossing_cp';
SELECT pitr_place_at_segment_end(32, false) AS lsn \gset
COMMIT PREPARED 'crossing_cp';
EOF
        ;;
    restore_point_56)
        cat <<'EOF'
SELECT pitr_place_at_segment_end(56, false) AS lsn \gset
SELECT pg_create_restore_point('crossing-rp') AS rp \gset
EOF
        ;;
    big_commit_40)
        cat <<'EOF'
BEGIN;
SAVEPOINT s1;
SELECT pg_logical_emit_message(true, 'pitr', 'subxact one') AS m \gset
RELEASE SAVEPOINT s1;
SAVEPOINT s2;
SELECT pg_logical_emit_message(true, 'pitr', 'subxact two') AS m \gset
RELEASE SAVEPOINT s2;
SELECT pitr_place_at_segment_end(40, true) AS lsn \gset
COMMIT;
EOF
        ;;
    *)
        echo "unknown case $1" >&2
        exit 1
        ;;
    esac
}

# What the crossing record's pg_waldump line must look like.
case_pattern() {
    local ts='[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)? UTC'
    case "$1" in
    commit_prepared_*) echo "^rmgr: Transaction .* desc: COMMIT_PREPARED [0-9]+: $ts\$" ;;
    commit_*) echo "^rmgr: Transaction .* desc: COMMIT $ts\$" ;;
    abort_*) echo "^rmgr: Transaction .* desc: ABORT $ts\$" ;;
    restore_point_*) echo "^rmgr: XLOG .* desc: RESTORE_POINT crossing-rp\$" ;;
    big_commit_*) echo "^rmgr: Transaction .* desc: COMMIT $ts; subxacts: [0-9]+ [0-9]+\$" ;;
    esac
}

# Switch away from the setup's segment, so every case starts a fresh one.
sql -c 'SELECT pg_switch_wal()' >/dev/null

CASES=(commit_32 commit_16 commit_8 abort_24 commit_prepared_32 restore_point_56 big_commit_40)
declare -a LINES=() KEEP=()
for c in "${CASES[@]}"; do
    gap="${c##*_}"
    line=""
    for attempt in $(seq 1 "$ATTEMPTS"); do
        res="$({
            case_sql "$c"
            cat <<'EOF'
SELECT pg_walfile_name(:'lsn'::pg_lsn) AS n,
       pg_walfile_name(:'lsn'::pg_lsn + :gap + 1) AS n1,
       (pg_walfile_name_offset(:'lsn'::pg_lsn)).file_offset AS off,
       pg_size_bytes(current_setting('wal_segment_size')) AS segsize \gset
SELECT pg_switch_wal() AS sw \gset
\echo :lsn :n :n1 :off :segsize
EOF
        } | sql -v gap="$gap")"
        read -r lsn n n1 off segsize <<<"$res"
        if [ $((segsize - off)) -ne "$gap" ]; then
            echo "$c: pitr_place_at_segment_end returned $lsn, not $gap bytes before a segment end" >&2
            exit 1
        fi
        wait_archived "$n1"
        want="$(waldump_lsn "$lsn")"
        got="$(as_pg "$PGBIN/pg_waldump" -p "$WORK/archive" "$n" "$n1" 2>/dev/null |
            grep -F "lsn: $want," || true)"
        tot="$(sed -nE 's/^.*len \(rec\/tot\): *[0-9]+\/ *([0-9]+),.*$/\1/p' <<<"$got")"
        if [ -n "$got" ] && grep -qE "$(case_pattern "$c")" <<<"$got" && [ "${tot:-0}" -gt "$gap" ]; then
            line="$got"
            break
        fi
        echo "$c: attempt $attempt spoiled; record at $want is: ${got:-none}" >&2
    done
    [ -n "$line" ] || { echo "$c: could not place the record after $ATTEMPTS attempts" >&2; exit 1; }
    LINES+=("$c $n $n1 $line")
    KEEP+=("$n" "$n1")
done

rm -rf "$OUT"
mkdir -p "$OUT"
for f in "${KEEP[@]}"; do
    zstd -19 -q -f "$WORK/archive/$f" -o "$OUT/$f.zst"
done
printf '%s\n' "${LINES[@]}" >"$OUT/crossing.txt"
chmod 644 "$OUT"/*
# zstd keeps the archived file's owner (postgres); match the checkout instead.
chown --reference="$HERE" "$OUT" "$OUT"/*
echo "wrote ${#CASES[@]} cases, ${#KEEP[@]} segments to $OUT ($(du -sh "$OUT" | cut -f1))"
