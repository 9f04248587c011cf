# Helpers the bench scripts share (sourced from the repository's root).

# What every bench run needs first: the set-up, a release build, and a
# work directory that the postgres user can use, holding a copy of the
# binary; sets BIN, WORK, PITR.
prepare_work() {
    scripts/setup.sh
    cargo build --release --quiet
    BIN=/usr/lib/postgresql/15/bin
    WORK=$(mktemp -d /tmp/pitr-bench-XXXXXX)
    chmod 0777 "$WORK"
    mkdir -p "$WORK/bin" && cp target/release/pitr "$WORK/bin/" && chmod -R a+rX "$WORK/bin"
    PITR="$WORK/bin/pitr"
}
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# pgbench -i at $SCALE into the cluster at $WORK/data (port $PORT), then a
# checkpoint; sets DATA_MB, the data directory's size without pg_wal.
load_pgbench() {
    echo "bench: pgbench -i -s $SCALE" >&2
    as_pg "$BIN/pgbench" -i -q -s "$SCALE" -h "$WORK" -p "$PORT" -U postgres postgres >/dev/null 2>&1
    "${PSQL[@]}" -c "checkpoint" >/dev/null
    DATA_MB=$(du -sm --exclude=pg_wal "$WORK/data" | cut -f1)
}

# The same WAL segments for every wal-push run: copies into $WORK/segs of
# up to $SEGMENTS segments archived in the local repository $1 (waited
# for, at most two minutes); sets NSEG.
copy_segments() {
    local repo=$1 n name
    mkdir -p "$WORK/segs"
    "${PSQL[@]}" -c "select pg_switch_wal()" >/dev/null
    for _ in $(seq 1 600); do
        n=$(ls "$repo/wal/00000001/" 2>/dev/null | grep -c '\.json$' || true)
        [ "$n" -ge "$SEGMENTS" ] && break; sleep 0.2
    done
    for name in $(ls "$repo/wal/00000001/" | grep '\.json$' | head -n "$SEGMENTS" | sed 's/\.json$//'); do
        "$PITR" wal-fetch --repo "$repo" "$name" "$WORK/segs/$name"
    done
    NSEG=$(ls "$WORK/segs" | wc -l)
}
