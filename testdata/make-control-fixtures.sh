#!/usr/bin/env bash
# Regenerates the PostgreSQL 15 fixtures under testdata/pg15/ from a real
# server: pg_control files (with pg_controldata output as the oracle), a
# backup_label and its .backup history file from pg_basebackup, and timeline
# .history files made by two real point-in-time recoveries.
#
# Run as root on a machine with Debian's postgresql-15 package:
#     sudo testdata/make-control-fixtures.sh
# Idempotent: every run starts from fresh clusters in a new temp dir and
# overwrites the fixtures. System identifiers and times change between runs;
# on 15.x the LSNs have come out identical run to run. The Rust tests
# hard-code the LSNs of the backup and history fixtures (src/pg/backup_label.rs,
# src/pg/history.rs): update them if a rerun moves them. The pg_control tests
# read their expected values from the *.controldata.txt files.
#
# The servers listen on Unix sockets in the temp dir only
# (listen_addresses=''), so no TCP port is ever bound; the port number only
# names the socket file.
set -euo pipefail

BIN=/usr/lib/postgresql/15/bin
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/pg15"

if [[ $(id -u) -ne 0 ]]; then
    echo "run as root (initdb and the servers run as the postgres OS user via runuser)" >&2
    exit 1
fi
if [[ ! -x $BIN/initdb ]]; then
    echo "PostgreSQL 15 binaries not found at $BIN (apt-get install postgresql-15)" >&2
    exit 1
fi

TMP="$(mktemp -d /tmp/pitr-fixtures.XXXXXX)"
chmod 0755 "$TMP"
chown postgres: "$TMP"
SERVERS=(primary r1 r2)

as_pg() {
    # Explicit environment: C locale so pg_controldata's labels are stable,
    # UTC so initdb writes log_timezone/timezone = 'UTC'.
    runuser -u postgres -- env -i PATH="$BIN:/usr/bin:/bin" LC_ALL=C TZ=UTC "$@"
}

cleanup() {
    local s
    for s in "${SERVERS[@]}"; do
        if [[ -f $TMP/$s/postmaster.pid ]]; then
            as_pg pg_ctl -D "$TMP/$s" -m immediate -w stop >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# psql against the server in $TMP/<name> (its socket dir is $TMP/sock-<name>).
sql() {
    local name=$1
    shift
    as_pg psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$TMP/sock-$name" -p 5432 -d postgres -c "$*"
}

# Settings for a server named $1 in data dir $TMP/$1 (appended; later wins).
configure() {
    local name=$1
    as_pg mkdir -p "$TMP/sock-$name"
    as_pg tee -a "$TMP/$name/postgresql.conf" >/dev/null <<EOF
# --- pitr fixture settings ---
listen_addresses = ''
port = 5432
unix_socket_directories = '$TMP/sock-$name'
wal_level = replica
archive_mode = on
archive_command = 'cp %p $TMP/archive/%f'
restore_command = 'cp $TMP/archive/%f %p'
EOF
}

start() {
    as_pg pg_ctl -D "$TMP/$1" -l "$TMP/$1.log" -w -t 60 start >/dev/null
}

stop() {
    as_pg pg_ctl -D "$TMP/$1" -m fast -w -t 60 stop >/dev/null
}

wait_for() {
    # wait_for <what> <command...>: retry for up to 60 s.
    local what=$1
    shift
    local i
    for i in $(seq 1 120); do
        if "$@"; then
            return 0
        fi
        sleep 0.5
    done
    echo "timed out waiting for $what" >&2
    for s in "${SERVERS[@]}"; do
        [[ -f $TMP/$s.log ]] && { echo "--- $s.log" >&2; tail -n 20 "$TMP/$s.log" >&2; }
    done
    exit 1
}

promoted() { [[ $(sql "$1" "select pg_is_in_recovery()") == f ]]; }
archived() { [[ -f $TMP/archive/$1 ]]; }

# Switch to a new segment and wait until the one just finished is archived.
switch_and_archive() {
    local name=$1 seg
    seg=$(sql "$name" "select pg_walfile_name(pg_current_wal_lsn())")
    sql "$name" "select pg_switch_wal()" >/dev/null
    wait_for "archiving of $seg" archived "$seg"
}

controldata() {
    as_pg pg_controldata -D "$1"
}

rm -rf "$OUT"
mkdir -p "$OUT"
as_pg mkdir -p "$TMP/archive"

# 1. pg_control of a fresh initdb with default settings.
as_pg initdb -D "$TMP/primary" -N --auth=trust >/dev/null
cp "$TMP/primary/global/pg_control" "$OUT/pg_control"
controldata "$TMP/primary" >"$OUT/pg_control.controldata.txt"
cp "$TMP/primary/PG_VERSION" "$OUT/PG_VERSION"

# 2. 1 MiB WAL segments and data checksums.
as_pg initdb -D "$TMP/seg1" -N --auth=trust --wal-segsize=1 --data-checksums >/dev/null
cp "$TMP/seg1/global/pg_control" "$OUT/pg_control.walseg1mb"
controldata "$TMP/seg1" >"$OUT/pg_control.walseg1mb.controldata.txt"
rm -rf "$TMP/seg1"

# 3. A base backup of the archiving primary: backup_label and .backup file.
configure primary
start primary
sql primary "create table t(i int); insert into t select generate_series(1, 100)"
as_pg pg_basebackup -h "$TMP/sock-primary" -p 5432 -D "$TMP/base" -Fp -X none -c fast \
    -l "pitr fixture" 2>/dev/null
cp "$TMP/base/backup_label" "$OUT/backup_label"
backup_file=$(cd "$TMP/archive" && ls -- *.backup)
cp "$TMP/archive/$backup_file" "$OUT/$backup_file"

# 4. Timeline 2: PITR of the base backup to a named restore point.
sql primary "insert into t values (101)"
sql primary "select pg_create_restore_point('rp1')" >/dev/null
sql primary "insert into t values (102)"
switch_and_archive primary
stop primary

as_pg cp -a "$TMP/base" "$TMP/r1"
configure r1
as_pg tee -a "$TMP/r1/postgresql.conf" >/dev/null <<EOF
recovery_target_name = 'rp1'
recovery_target_action = 'promote'
EOF
as_pg touch "$TMP/r1/recovery.signal"
start r1
wait_for "r1 to promote" promoted r1
wait_for "00000002.history" archived 00000002.history

# 5. Timeline 3: PITR of the same base backup along timeline 2 to a time.
sql r1 "insert into t values (201)"
sleep 1.1
target=$(sql r1 "select clock_timestamp()")
sleep 1.1
sql r1 "insert into t values (202)"
switch_and_archive r1
stop r1

as_pg cp -a "$TMP/base" "$TMP/r2"
configure r2
as_pg tee -a "$TMP/r2/postgresql.conf" >/dev/null <<EOF
recovery_target_time = '$target'
recovery_target_timeline = 'latest'
recovery_target_action = 'promote'
EOF
as_pg touch "$TMP/r2/recovery.signal"
start r2
wait_for "r2 to promote" promoted r2
wait_for "00000003.history" archived 00000003.history
stop r2
cp "$TMP/r2/global/pg_control" "$OUT/pg_control.promoted"
controldata "$TMP/r2" >"$OUT/pg_control.promoted.controldata.txt"

cp "$TMP/archive/00000002.history" "$TMP/archive/00000003.history" "$OUT/"
chmod 0644 "$OUT"/*

echo "fixtures written to $OUT:"
ls -l "$OUT"
