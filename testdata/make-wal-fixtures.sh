#!/usr/bin/env bash
# Regenerates testdata/wal/pg15/: a few archived 1 MiB WAL segments from a
# throwaway PostgreSQL 15 cluster (zstd-compressed), each with a
# pg_waldump-derived oracle file that src/pg/wal's tests compare against.
#
# Run as root (initdb refuses root, so every Postgres program runs as the
# `postgres` OS user through runuser). Idempotent: the output directory is
# rebuilt from scratch each run. Needs Debian's postgresql-15 and the zstd CLI
# (installed with apt-get if missing).
#
# Oracle file <segment>.waldump.txt:
#   COUNT <number of records pg_waldump printed>
#   FIRST <pg_waldump line of the first record that begins in the segment>
#   LAST  <pg_waldump line of the last complete record>
#   then every Transaction COMMIT/ABORT/COMMIT_PREPARED/ABORT_PREPARED and
#   XLOG RESTORE_POINT/CHECKPOINT_*/SWITCH line, verbatim.
# A segment that holds only the middle of one long record has COUNT 0 and
# neither FIRST nor LAST. pg_waldump's stderr (it complains when a record runs past the segment)
# is discarded. All times are UTC (TZ, PGTZ and the server's timezone).
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/wal/pg15"

if [ "$(id -u)" -ne 0 ]; then
    echo "make-wal-fixtures.sh: run as root (it runs Postgres as the postgres user)" >&2
    exit 1
fi
for b in initdb pg_ctl psql pg_waldump; do
    [ -x "$PGBIN/$b" ] || { echo "missing $PGBIN/$b: install postgresql-15" >&2; exit 1; }
done
if ! command -v zstd >/dev/null; then
    apt-get install -y -q zstd >/dev/null
fi

export TZ=UTC PGTZ=UTC LC_ALL=C
WORK="$(mktemp -d /tmp/pitr-walfix.XXXXXX)"
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

cat >>"$WORK/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
wal_level = replica
archive_mode = on
archive_command = 'test ! -f $WORK/archive/%f && cp %p $WORK/archive/%f'
max_prepared_transactions = 5
timezone = 'UTC'
log_timezone = 'UTC'
autovacuum = off
fsync = off
EOF

as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null

sql() { as_pg "$PGBIN/psql" -X -q -A -t -h "$WORK" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }

sql >/dev/null <<'EOF'
CREATE TABLE t (id int, v text);
ALTER TABLE t ALTER v SET STORAGE EXTERNAL;   -- toasted, uncompressed: many 2 kB records
CREATE TABLE drop_me (id int);
CREATE TABLE drop_me_too (id int);
SELECT pg_switch_wal();
EOF
FIRST_SEG="$(sql -c 'SELECT pg_walfile_name(pg_current_wal_insert_lsn())')"

sql >/dev/null <<'EOF'
INSERT INTO t VALUES (1, 'one');
INSERT INTO t VALUES (2, 'two');
BEGIN; INSERT INTO t VALUES (3, 'rolled back'); ROLLBACK;
-- abort that drops a new relation: rels + dropped stats before anything else
BEGIN; CREATE TABLE gone (id int); INSERT INTO gone VALUES (1); ROLLBACK;
-- COMMIT_PREPARED with subxacts, rels, dropped stats and invals before the twophase xid
BEGIN;
INSERT INTO t VALUES (4, 'prepared');
SAVEPOINT s1;
INSERT INTO t VALUES (5, 'in subxact');
DROP TABLE drop_me;
PREPARE TRANSACTION 'p_commit';
COMMIT PREPARED 'p_commit';
-- ABORT_PREPARED with subxacts, rels and dropped stats
BEGIN;
CREATE TABLE p_gone (id int);
INSERT INTO t VALUES (6, 'prepared, rolled back');
SAVEPOINT s2;
INSERT INTO t VALUES (7, 'in subxact');
PREPARE TRANSACTION 'p_abort';
ROLLBACK PREPARED 'p_abort';
SELECT pg_create_restore_point('rp_one');
DROP TABLE drop_me_too;
EOF

# A shutdown checkpoint in the middle of the segment.
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m fast -w restart -l "$WORK/server.log" >/dev/null

sql >/dev/null <<'EOF'
-- ~1 MB in one transaction: records cross pages and a segment boundary
BEGIN;
INSERT INTO t SELECT i, repeat(md5(i::text), 100) FROM generate_series(100, 399) i;
COMMIT;
CHECKPOINT;
UPDATE t SET v = 'updated' WHERE id = 1;   -- full-page image after the checkpoint
-- one 2.2 MB record: covers at least one whole segment
SELECT pg_logical_emit_message(false, 'pitr', repeat('m', 2200000)) IS NOT NULL;
INSERT INTO t VALUES (1000, 'after the long record');
SELECT pg_create_restore_point('rp_two');
EOF
LAST_SEG="$(sql -c 'SELECT pg_walfile_name(pg_switch_wal())')"

for _ in $(seq 1 120); do
    [ -f "$WORK/archive/$LAST_SEG" ] && break
    sleep 0.5
done
[ -f "$WORK/archive/$LAST_SEG" ] || { echo "segment $LAST_SEG was not archived" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
count=0
for f in $(ls "$WORK/archive" | sort); do
    [[ "$f" =~ ^[0-9A-F]{24}$ ]] || continue
    [[ "$f" < "$FIRST_SEG" || "$f" > "$LAST_SEG" ]] && continue
    zstd -19 -q -f "$WORK/archive/$f" -o "$OUT/$f.zst"
    dump="$(as_pg "$PGBIN/pg_waldump" -p "$WORK/archive" "$f" 2>/dev/null || true)"
    recs="$(grep '^rmgr: ' <<<"$dump" || true)"
    {
        if [ -n "$recs" ]; then
            echo "COUNT $(wc -l <<<"$recs")"
            echo "FIRST $(head -n1 <<<"$recs")"
            echo "LAST $(tail -n1 <<<"$recs")"
        else
            echo "COUNT 0"
        fi
        grep -E '^rmgr: Transaction .* desc: (COMMIT|ABORT|COMMIT_PREPARED|ABORT_PREPARED) |^rmgr: XLOG .* desc: (RESTORE_POINT|CHECKPOINT_SHUTDOWN|CHECKPOINT_ONLINE|SWITCH)' <<<"$recs" || true
    } >"$OUT/$f.waldump.txt"
    count=$((count + 1))
done
chmod 644 "$OUT"/*
# zstd keeps the archived file's owner (postgres); match the checkout instead.
chown --reference="$HERE" "$OUT" "$OUT"/*
echo "wrote $count segments ($FIRST_SEG .. $LAST_SEG) to $OUT ($(du -sh "$OUT" | cut -f1))"
