#!/usr/bin/env bash
# The rollback demo: a throwaway PostgreSQL 15 cluster archives into a local
# pitr repository, takes a backup, writes rows for a few seconds, drops the
# table by accident, then `pitr rollback` brings up a new server as it was
# just before the drop and shows the rows are back. Run as root (Postgres
# runs as the postgres OS user) or as the postgres user. Idempotent: each
# run uses a new temporary directory and stops every server it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PITR_SKIP_S3=1 PITR_SKIP_MAJORS=1 scripts/setup.sh   # the demo needs only PostgreSQL 15
cargo build --quiet
BIN=/usr/lib/postgresql/15/bin

WORK=$(mktemp -d /tmp/pitr-demo-XXXXXX)
chmod 0777 "$WORK"
# archive_command runs as postgres, which may not enter this checkout
# (e.g. under /root): run pitr from the work directory.
mkdir -p "$WORK/bin"
cp target/debug/pitr "$WORK/bin/pitr"
chmod -R a+rX "$WORK/bin"
PITR="$WORK/bin/pitr"
# From the work directory: postgres may not enter this checkout, and
# initdb and pg_ctl warn when they cannot return to where they started.
as_pg() { if [ "$(id -u)" -eq 0 ]; then (cd "$WORK" && runuser -u postgres -- "$@"); else "$@"; fi; }
cleanup() {
    for d in "$WORK/primary" "$WORK/rolled-back"; do
        [ -f "$d/postmaster.pid" ] && as_pg "$BIN/pg_ctl" stop -D "$d" -m fast >/dev/null 2>&1 || true
    done
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORT=$(free_port)
PSQL=("$BIN/psql" -X -q -At -h "$WORK" -p "$PORT" -U postgres -d postgres)
REPO="$WORK/repo"

say "initdb a throwaway cluster in $WORK/primary"
as_pg "$BIN/initdb" -D "$WORK/primary" -A trust -U postgres >/dev/null
cat >>"$WORK/primary/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
timezone = 'UTC'
wal_level = replica
archive_mode = on
archive_command = '$PITR wal-push --repo $REPO %p'
CONF

say "pitr init --repo $REPO"
"$PITR" init --repo "$REPO" --pgdata "$WORK/primary"
as_pg "$BIN/pg_ctl" start -w -D "$WORK/primary" -l "$WORK/primary.log" >/dev/null

"${PSQL[@]}" -c "create table orders(id int primary key, item text, ts timestamptz default clock_timestamp())"
say "pitr backup"
"$PITR" backup --repo "$REPO" --pgdata "$WORK/primary"

say "writing orders for a few seconds"
for i in $(seq 1 10); do
    "${PSQL[@]}" -c "select pg_sleep(0.3); insert into orders(id, item) values ($i, 'order #$i')"
done
"${PSQL[@]}" -c "select id, item, ts from orders order by id" | sed 's/^/  /'
BEFORE=$("${PSQL[@]}" -c "select clock_timestamp()")
"${PSQL[@]}" -c "select pg_sleep(0.3)" >/dev/null

say "oops: DROP TABLE orders at $("${PSQL[@]}" -c "select clock_timestamp()")"
"${PSQL[@]}" -c "drop table orders"
SEG=$("${PSQL[@]}" -c "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 300); do [ -f "$REPO/wal/${SEG:0:8}/$SEG.json" ] && break; sleep 0.1; done

say "pitr info"
"$PITR" info --repo "$REPO"

say "pitr plan --to '$BEFORE'"
"$PITR" plan --repo "$REPO" --to "$BEFORE"

say "pitr rollback --to '$BEFORE'"
"$PITR" rollback --repo "$REPO" --to "$BEFORE" --pgdata "$WORK/rolled-back" --socket-dir "$WORK" --json >"$WORK/rollback.json"
cat "$WORK/rollback.json"
NEWPORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$WORK/rollback.json")

say "the orders are back (new server on port $NEWPORT)"
"$BIN/psql" -X -h "$WORK" -p "$NEWPORT" -U postgres -d postgres -c "select id, item, ts from orders order by id"
N=$("$BIN/psql" -X -At -h "$WORK" -p "$NEWPORT" -U postgres -d postgres -c "select count(*) from orders")
if [ "$N" = 10 ]; then
    say "demo OK: 10 of 10 orders restored"
else
    echo "demo FAILED: expected 10 orders, found $N" >&2
    exit 1
fi
