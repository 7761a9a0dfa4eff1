#!/usr/bin/env bash
# Copied from the perfbench yardstick (scripts/bench.sh), unchanged: benches/grpc.sh runs it.
# Alternating h2load benchmark of unary gRPC endpoints (A B C A B C ...).
#
#   bench.sh [-n N] [-c C] [-m M] [-r RUNS] [-w WARMUP_N] [-s SERVER_CPU] [-k CLIENT_CPU] -o OUTDIR CONFIG...
#
#   CONFIG = "label|start command|url|framed body file"
#     start command : run as `taskset -c SERVER_CPU bash -c "exec <cmd>"`, stopped by its PID
#                     (SIGTERM, then SIGKILL after 10 s) after each run; "-" = already running,
#                     not started/stopped/CPU-accounted here.
#     url           : http://HOST:PORT/package.Service/Method   (h2c, prior knowledge)
#     body          : file from make-frame.py (5-byte gRPC header + protobuf)
#
# Per run: start server, wait for the port, warm-up h2load (-n WARMUP_N, discarded), measured
# h2load with --log-file (per-request times -> p50/p90/p99), server CPU time from /proc/PID/stat,
# stop server. The server log is cut to its first 40 and last 10 lines (per-request access logs
# can be ~100 MB per run). Results: OUTDIR/runs.tsv, OUTDIR/*.h2load.txt, OUTDIR/summary.md.
#
# h2load counts HTTP 200 as success and does not read grpc-status: check the "DATA B/resp"
# column against the response size that verify-grpc.py prints (+5 bytes of frame header);
# a gRPC error reply is trailers-only and carries no DATA.
set -euo pipefail

N=200000 C=16 M=8 RUNS=3 WARM=20000 SCPU=0 KCPU=1 OUT=
while getopts "n:c:m:r:w:s:k:o:" o; do
  case $o in
    n) N=$OPTARG ;; c) C=$OPTARG ;; m) M=$OPTARG ;; r) RUNS=$OPTARG ;; w) WARM=$OPTARG ;;
    s) SCPU=$OPTARG ;; k) KCPU=$OPTARG ;; o) OUT=$OPTARG ;; *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ -n $OUT && $# -gt 0 ]] || { sed -n '2,20p' "$0"; exit 2; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
HZ=$(getconf CLK_TCK)
RUNS_TSV=$OUT/runs.tsv
echo -e "#label\trun\th2load_out\tlog_file\tserver_cpu_ticks\thz" > "$RUNS_TSV"
{
  echo "date: $(date -Is)"; echo "host: $(uname -srm), $(nproc) CPUs"; echo "h2load: $(h2load --version | head -1)"
  echo "params: -n $N -c $C -m $M -t 1, warm-up $WARM, runs $RUNS, server CPU $SCPU, client CPU $KCPU"
  for cfg in "$@"; do echo "config: $cfg"; done
} > "$OUT/params.txt"

SERVER_PID=
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT

wait_port() { # host port
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1:$2 did not open" >&2; return 1
}

cpu_ticks() { # pid -> utime+stime (all threads) in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo -1
}

for run in $(seq "$RUNS"); do
  for cfg in "$@"; do
    IFS='|' read -r label start url body <<< "$cfg"
    hostport=${url#http://}; hostport=${hostport%%/*}; host=${hostport%:*}; port=${hostport##*:}
    base=$OUT/$label.r$run
    if [[ $start != "-" ]]; then
      taskset -c "$SCPU" bash -c "exec $start" > "$base.server.log" 2>&1 &
      SERVER_PID=$!
    fi
    wait_port "$host" "$port"
    sleep 0.5
    H2=(h2load -t 1 -c "$C" -m "$M" -d "$body" -H 'content-type: application/grpc' -H 'te: trailers')
    taskset -c "$KCPU" "${H2[@]}" -n "$WARM" "$url" > "$base.warmup.txt" 2>&1
    t0=-1; [[ -n $SERVER_PID ]] && t0=$(cpu_ticks "$SERVER_PID")
    taskset -c "$KCPU" "${H2[@]}" -n "$N" --log-file="$base.reqlog.tsv" "$url" > "$base.h2load.txt" 2>&1
    t1=-1; [[ -n $SERVER_PID ]] && t1=$(cpu_ticks "$SERVER_PID")
    ticks=-1; [[ $t0 != -1 && $t1 != -1 ]] && ticks=$((t1 - t0))
    stop_server
    if [[ -f $base.server.log ]]; then
      lines=$(wc -l < "$base.server.log")
      if (( lines > 50 )); then
        { head -40 "$base.server.log"; echo "... [$((lines - 50)) lines cut by bench.sh] ..."; tail -10 "$base.server.log"; } > "$base.server.log.cut"
        mv "$base.server.log.cut" "$base.server.log"
      fi
    fi
    echo -e "$label\t$run\t$base.h2load.txt\t$base.reqlog.tsv\t$ticks\t$HZ" >> "$RUNS_TSV"
    printf '%-28s run %s: %s\n' "$label" "$run" "$(grep -E '^finished' "$base.h2load.txt" || tail -2 "$base.h2load.txt")"
  done
done
python3 "$HERE/summarize.py" "$OUT" > "$OUT/summary.md"
# per-request logs are large (about 30 bytes x N per run): compress them
gzip -f "$OUT"/*.reqlog.tsv 2>/dev/null || true
sed -i 's/\.reqlog\.tsv/.reqlog.tsv.gz/' "$RUNS_TSV"
cat "$OUT/summary.md"
