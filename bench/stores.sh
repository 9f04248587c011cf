#!/usr/bin/env bash
# pitr benchmark, one command: wal-push throughput (segments/s), backup and
# restore throughput (MB/s of data directory), on the local filesystem
# store and on S3 (s3s-fs on loopback), on the same data in the same run,
# alternating stores, RUNS times each; prints a markdown table of medians
# and the S3/local ratio, and writes the same as JSON to bench/results/.
#
#   bench/stores.sh              # defaults: SCALE=20 (~300 MB), SEGMENTS=32, RUNS=3
#   SCALE=70 RUNS=5 bench/stores.sh
#
# (pitr against pgBackRest is bench/run.)
#
# Run as root on Debian (scripts/setup.sh installs what is missing).
# Timings only: nothing here is asserted; the test suite has no timing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SCALE=${SCALE:-20}
SEGMENTS=${SEGMENTS:-32}
RUNS=${RUNS:-3}

# shellcheck source=bench/lib.sh
. bench/lib.sh
prepare_work
S3PID=
cleanup() {
    [ -f "$WORK/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" stop -D "$WORK/data" -m immediate >/dev/null 2>&1 || true
    for d in "$WORK"/restore-*; do [ -f "$d/postmaster.pid" ] && as_pg "$BIN/pg_ctl" stop -D "$d" -m immediate >/dev/null 2>&1 || true; done
    [ -n "$S3PID" ] && kill "$S3PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# S3 server and bucket.
S3PORT=$(free_port)
export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1 \
       AWS_ENDPOINT_URL=http://127.0.0.1:$S3PORT PITR_S3_PATH_STYLE=1 AWS_EC2_METADATA_DISABLED=true
mkdir -p "$WORK/s3"
"${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" --host 127.0.0.1 --port "$S3PORT" \
    --access-key benchaccess --secret-key benchsecret "$WORK/s3" >/dev/null 2>&1 &
S3PID=$!
for _ in $(seq 1 100); do python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$S3PORT" 2>/dev/null && break; sleep 0.1; done
python3 - "$S3PORT" <<'PY'
import boto3, sys
c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                 aws_access_key_id="benchaccess", aws_secret_access_key="benchsecret")
c.create_bucket(Bucket="bench")
PY

# One cluster archiving into both repositories.
PORT=$(free_port)
PSQL=("$BIN/psql" -X -q -At -h "$WORK" -p "$PORT" -U postgres -d postgres)
as_pg "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
timezone = 'UTC'
max_wal_size = 4GB
archive_mode = on
archive_command = '$PITR wal-push --repo $WORK/repo-fs %p && $PITR wal-push --repo s3://bench/arch %p'
CONF
for r in "$WORK/repo-fs" s3://bench/arch; do "$PITR" init --repo "$r" --pgdata "$WORK/data" >/dev/null; done
as_pg env "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY" \
    "AWS_REGION=$AWS_REGION" "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" PITR_S3_PATH_STYLE=1 AWS_EC2_METADATA_DISABLED=true \
    "$BIN/pg_ctl" start -w -D "$WORK/data" -l "$WORK/server.log" >/dev/null
load_pgbench
copy_segments "$WORK/repo-fs"

declare -A RES
push_run() { # store-spec -> seconds for all segments, into a fresh repo
    local repo=$1 t0 t1
    "$PITR" init --repo "$repo" --pgdata "$WORK/data" >/dev/null
    t0=$(now)
    for f in "$WORK"/segs/*; do "$PITR" wal-push --repo "$repo" "$f"; done
    t1=$(now); calc "$t1 - $t0"
}
backup_run() { # repo -> seconds
    local repo=$1 t0 t1
    t0=$(now); "$PITR" backup --repo "$repo" --pgdata "$WORK/data" --json >"$WORK/last-backup.json"; t1=$(now)
    calc "$t1 - $t0"
}
restore_run() { # repo target -> seconds (materialize + configure, no start)
    local repo=$1 target=$2 dest t0 t1
    dest="$WORK/restore-$RANDOM$RANDOM"
    t0=$(now); "$PITR" restore --repo "$repo" --to "$target" --pgdata "$dest" --no-start --json >/dev/null; t1=$(now)
    rm -rf "$dest"; calc "$t1 - $t0"
}

for run in $(seq 1 "$RUNS"); do
    echo "bench: run $run/$RUNS" >&2
    for store in fs s3; do
        if [ $store = fs ]; then repo="$WORK/push-fs-$run"; else repo="s3://bench/push-$run"; fi
        RES[push_$store]+="$(push_run "$repo") "
    done
    for store in fs s3; do
        if [ $store = fs ]; then repo="$WORK/repo-fs"; else repo="s3://bench/arch"; fi
        RES[backup_$store]+="$(backup_run "$repo") "
    done
done
# A target after the last backup, with its WAL archived.
"${PSQL[@]}" -c "create table bench_marker(t timestamptz default clock_timestamp()); insert into bench_marker default values" >/dev/null
TARGET=$("${PSQL[@]}" -c "select clock_timestamp()")
"${PSQL[@]}" -c "insert into bench_marker default values" >/dev/null
SEG=$("${PSQL[@]}" -c "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 600); do [ -f "$WORK/repo-fs/wal/${SEG:0:8}/$SEG.json" ] && break; sleep 0.1; done
sleep 1 # the S3 push follows the local one in the same archive_command
for run in $(seq 1 "$RUNS"); do
    for store in fs s3; do
        if [ $store = fs ]; then repo="$WORK/repo-fs"; else repo="s3://bench/arch"; fi
        RES[restore_$store]+="$(restore_run "$repo" "$TARGET") "
    done
done

med() { tr ' ' '\n' <<<"${RES[$1]}" | grep -v '^$' | median; }
row() { # label unit fs s3 -> markdown row with ratio
    printf '| %s | %.2f %s | %.2f %s | %.2f |\n' "$1" "$3" "$2" "$4" "$2" "$(calc "$4 / $3")"
}
PF=$(calc "$NSEG / $(med push_fs)"); PS=$(calc "$NSEG / $(med push_s3)")
BF=$(calc "$DATA_MB / $(med backup_fs)"); BS=$(calc "$DATA_MB / $(med backup_s3)")
RF=$(calc "$DATA_MB / $(med restore_fs)"); RS=$(calc "$DATA_MB / $(med restore_s3)")
{
    echo "pitr $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), pgbench scale $SCALE (${DATA_MB} MB), $NSEG WAL segments of 16 MiB, medians of $RUNS runs"
    echo
    echo "| operation | local fs | S3 (s3s-fs, loopback) | S3 / fs |"
    echo "|---|---:|---:|---:|"
    row "wal-push (sequential, as archive_command)" "seg/s" "$PF" "$PS"
    row "backup (full)" "MB/s" "$BF" "$BS"
    row "restore (materialize, --no-start)" "MB/s" "$RF" "$RS"
} | tee "$WORK/table.md"
# The planner at scale, and the WAL scanner on the same segments as
# pg_waldump (both decode every record; pg_waldump prints only statistics).
echo
PITR_BENCH_WAL_DIR="$WORK/segs" cargo bench --quiet --bench planner 2>/dev/null | tee "$WORK/planner.md"
FIRST=$(ls "$WORK/segs" | head -1); LAST=$(ls "$WORK/segs" | tail -1)
WD_RUNS=""
for _ in 1 2 3; do
    t0=$(now); "$BIN/pg_waldump" --stats=record -p "$WORK/segs" "$FIRST" "$LAST" >/dev/null 2>&1 || true; t1=$(now)
    WD_RUNS+="$(calc "$t1 - $t0") "
done
WD=$(tr ' ' '\n' <<<"$WD_RUNS" | grep -v '^$' | median)
WD_MBS=$(calc "$NSEG * 16.777216 / $WD")
printf '| pg_waldump --stats=record, same segments | %.0f MB/s (%.2f ms per segment) |\n' "$WD_MBS" "$(calc "$WD * 1000 / $NSEG")" | tee -a "$WORK/planner.md"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
python3 - "$STAMP" "$SCALE" "$DATA_MB" "$NSEG" "$RUNS" "$PF" "$PS" "$BF" "$BS" "$RF" "$RS" \
    "${RES[push_fs]}" "${RES[push_s3]}" "${RES[backup_fs]}" "${RES[backup_s3]}" "${RES[restore_fs]}" "${RES[restore_s3]}" \
    >"bench/results/store-$STAMP.json" <<'PY'
import json, os, platform, subprocess, sys
a = sys.argv[1:]
secs = lambda s: [float(x) for x in s.split()]
print(json.dumps({
    "when": a[0], "machine": {"cores": os.cpu_count(), "arch": platform.machine(), "kernel": platform.release()},
    "postgres": subprocess.run(["/usr/lib/postgresql/15/bin/postgres", "--version"], capture_output=True, text=True).stdout.strip(),
    "pgbench_scale": int(a[1]), "data_mb": int(a[2]), "segments": int(a[3]), "runs": int(a[4]),
    "median": {"wal_push_seg_per_s": {"fs": float(a[5]), "s3": float(a[6])},
               "backup_mb_per_s": {"fs": float(a[7]), "s3": float(a[8])},
               "restore_mb_per_s": {"fs": float(a[9]), "s3": float(a[10])}},
    "seconds": {"wal_push": {"fs": secs(a[11]), "s3": secs(a[12])},
                "backup": {"fs": secs(a[13]), "s3": secs(a[14])},
                "restore": {"fs": secs(a[15]), "s3": secs(a[16])}},
    "commands": ["pitr wal-push --repo R SEG (each segment)", "pitr backup --repo R --pgdata D",
                 "pitr restore --repo R --to T --pgdata NEW --no-start"],
}, indent=2))
PY
echo "wrote bench/results/store-$STAMP.json" >&2
