#!/usr/bin/env bash
# What encryption at rest costs: wal-push throughput (segments/s), backup
# and restore throughput (MB/s of data directory), into a local repository
# in the clear and into an encrypted one (AES-256-GCM, `init --encrypt`),
# on the same data in the same run, alternating, RUNS times each; prints a
# markdown table of medians and the encrypted/clear ratio, and writes the
# same as JSON to bench/results/.
#
#   bench/encryption.sh            # defaults: SCALE=20 (~300 MB), SEGMENTS=32, RUNS=3
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
cleanup() {
    [ -f "$WORK/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" stop -D "$WORK/data" -m immediate >/dev/null 2>&1 || true
    for d in "$WORK"/restore-*; do [ -f "$d/postmaster.pid" ] && as_pg "$BIN/pg_ctl" stop -D "$d" -m immediate >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

KEY="$WORK/repo.key"
head -c 32 /dev/urandom | base64 >"$KEY"
chmod 0644 "$KEY"

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
archive_command = '$PITR wal-push --repo $WORK/repo-clear %p && $PITR wal-push --repo $WORK/repo-enc --key-file $KEY %p'
CONF
"$PITR" init --repo "$WORK/repo-clear" --pgdata "$WORK/data" >/dev/null
"$PITR" init --repo "$WORK/repo-enc" --pgdata "$WORK/data" --encrypt --key-file "$KEY" >/dev/null
as_pg "$BIN/pg_ctl" start -w -D "$WORK/data" -l "$WORK/server.log" >/dev/null
load_pgbench
copy_segments "$WORK/repo-clear"

declare -A RES
keys() { if [ "$1" = enc ]; then echo "--key-file $KEY"; fi; }
push_run() { # kind run -> seconds for all segments, into a fresh repo
    local kind=$1 repo="$WORK/push-$1-$2" t0 t1 enc=""
    [ "$kind" = enc ] && enc="--encrypt"
    # shellcheck disable=SC2046
    "$PITR" init --repo "$repo" --pgdata "$WORK/data" $enc $(keys "$kind") >/dev/null
    t0=$(now)
    # shellcheck disable=SC2046
    for f in "$WORK"/segs/*; do "$PITR" wal-push --repo "$repo" $(keys "$kind") "$f"; done
    t1=$(now); calc "$t1 - $t0"
}
backup_run() { # kind -> seconds
    local t0 t1
    t0=$(now)
    # shellcheck disable=SC2046
    "$PITR" backup --repo "$WORK/repo-$1" $(keys "$1") --pgdata "$WORK/data" --json >/dev/null
    t1=$(now); calc "$t1 - $t0"
}
restore_run() { # kind target -> seconds (materialize + configure, no start)
    local dest t0 t1
    dest="$WORK/restore-$RANDOM$RANDOM"
    t0=$(now)
    # shellcheck disable=SC2046
    "$PITR" restore --repo "$WORK/repo-$1" $(keys "$1") --to "$2" --pgdata "$dest" --no-start --json >/dev/null
    t1=$(now); rm -rf "$dest"; calc "$t1 - $t0"
}

for run in $(seq 1 "$RUNS"); do
    echo "bench: run $run/$RUNS" >&2
    for kind in clear enc; do RES[push_$kind]+="$(push_run $kind "$run") "; done
    for kind in clear enc; do RES[backup_$kind]+="$(backup_run $kind) "; done
done
"${PSQL[@]}" -c "create table bench_marker(t timestamptz default clock_timestamp()); insert into bench_marker default values" >/dev/null
TARGET=$("${PSQL[@]}" -c "select clock_timestamp()")
"${PSQL[@]}" -c "insert into bench_marker default values" >/dev/null
SEG=$("${PSQL[@]}" -c "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 600); do [ -f "$WORK/repo-enc/wal/${SEG:0:8}/$SEG.json" ] && break; sleep 0.1; done
for run in $(seq 1 "$RUNS"); do
    for kind in clear enc; do RES[restore_$kind]+="$(restore_run $kind "$TARGET") "; done
done

med() { tr ' ' '\n' <<<"${RES[$1]}" | grep -v '^$' | median; }
row() { # label unit clear enc -> markdown row with ratio
    printf '| %s | %.2f %s | %.2f %s | %.2f |\n' "$1" "$3" "$2" "$4" "$2" "$(calc "$4 / $3")"
}
PC=$(calc "$NSEG / $(med push_clear)"); PE=$(calc "$NSEG / $(med push_enc)")
BC=$(calc "$DATA_MB / $(med backup_clear)"); BE=$(calc "$DATA_MB / $(med backup_enc)")
RC=$(calc "$DATA_MB / $(med restore_clear)"); RE=$(calc "$DATA_MB / $(med restore_enc)")
{
    echo "pitr $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), pgbench scale $SCALE (${DATA_MB} MB), $NSEG WAL segments of 16 MiB, local repositories, medians of $RUNS runs"
    echo
    echo "| operation | in the clear | encrypted (AES-256-GCM) | encrypted / clear |"
    echo "|---|---:|---:|---:|"
    row "wal-push (sequential, as archive_command)" "seg/s" "$PC" "$PE"
    row "backup (full)" "MB/s" "$BC" "$BE"
    row "restore (materialize, --no-start)" "MB/s" "$RC" "$RE"
}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
python3 - "$STAMP" "$SCALE" "$DATA_MB" "$NSEG" "$RUNS" "$PC" "$PE" "$BC" "$BE" "$RC" "$RE" \
    "${RES[push_clear]}" "${RES[push_enc]}" "${RES[backup_clear]}" "${RES[backup_enc]}" "${RES[restore_clear]}" "${RES[restore_enc]}" \
    >"bench/results/encryption-$STAMP.json" <<'PY'
import json, os, platform, sys
a = sys.argv[1:]
secs = lambda s: [float(x) for x in s.split()]
print(json.dumps({
    "when": a[0], "machine": {"cores": os.cpu_count(), "arch": platform.machine(), "kernel": platform.release()},
    "pgbench_scale": int(a[1]), "data_mb": int(a[2]), "segments": int(a[3]), "runs": int(a[4]),
    "median": {"wal_push_seg_per_s": {"clear": float(a[5]), "encrypted": float(a[6])},
               "backup_mb_per_s": {"clear": float(a[7]), "encrypted": float(a[8])},
               "restore_mb_per_s": {"clear": float(a[9]), "encrypted": float(a[10])}},
    "seconds": {"wal_push": {"clear": secs(a[11]), "encrypted": secs(a[12])},
                "backup": {"clear": secs(a[13]), "encrypted": secs(a[14])},
                "restore": {"clear": secs(a[15]), "encrypted": secs(a[16])}},
}, indent=2))
PY
echo "wrote bench/results/encryption-$STAMP.json" >&2
