#!/usr/bin/env bash
# Evaluate throughput and latency over gRPC, measured the way the perfbench yardstick does:
# the server pinned to one core, h2load on the other, pre-framed request bodies, and in the
# same run a no-op tonic unary server (benches/noop: the floor, what tonic itself costs).
#
#   bash benches/grpc.sh [-n REQUESTS] [-r RUNS] [-o OUT_DIR] [-p]
#
# -p: the PostgreSQL store instead (benches/grpc_postgres.sh, sourced at the end): DCR
# through one replica and through two replicas on one throwaway database.
#
# Prints, for DCR and for a cached CIMD client (Claude Code's document, served once by the
# local document server and then from clientgate's cache), at 128 requests in flight
# (-c 16 -m 8) and at one: req/s, p50/p99, server CPU per request, and the ratio to the
# floor of the same run, and the disk's own fdatasync latency (the floor of a durable answer
# at one in flight). clientgate runs on its embedded defaults (starter policies, sled in
# a fresh data directory, every decision recorded durably). Also counts the store's
# fdatasync calls over one run (strace), which must be at least one per group commit.
#
# benches/grpc/bench.sh and summarize.py are the yardstick's scripts (perfbench), copied;
# benches/noop is its floor server. Needs h2load (Debian: nghttp2-client; installed here when missing and run as root),
# python3, taskset, curl. Builds the release binaries first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N=100000 RUNS=3 OUT= POSTGRES=
while getopts "n:r:o:p" o; do
  case $o in
    n) N=$OPTARG ;; r) RUNS=$OPTARG ;; o) OUT=$OPTARG ;; p) POSTGRES=1 ;; *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
OUT=${OUT:-$(mktemp -d -t clientgate-bench-XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)

need() { # command debian-package
  command -v "$1" > /dev/null && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null; then
    apt-get install -y -qq "$2" > /dev/null || { apt-get update -qq && apt-get install -y -qq "$2" > /dev/null; }
  fi
  command -v "$1" > /dev/null || { echo "benches/grpc.sh needs $1 (Debian package $2)" >&2; exit 1; }
}
need h2load nghttp2-client
need strace strace
need taskset util-linux
need curl curl
(( $(nproc) >= 2 )) || { echo "needs two cores: the server on one, h2load on the other" >&2; exit 1; }

echo "building release binaries" >&2
cargo build --release --locked --bin clientgate --example cimd_doc_server >&2
PROTOC=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*protoc-bin-vendored-linux-x86_64*/bin/protoc' | head -1)
[[ -x $PROTOC ]] || { echo "no protoc from protoc-bin-vendored in the cargo registry" >&2; exit 1; }
export PROTOC
CARGO_TARGET_DIR=$ROOT/target/bench-noop cargo build --release --locked \
  --manifest-path benches/noop/Cargo.toml >&2
GATE=$ROOT/target/release/clientgate
NOOP=$ROOT/target/bench-noop/release/noop

# Frames: 5-byte gRPC header + the request encoded by protoc from its text form.
frame() { # txtpb out
  "$PROTOC" --proto_path=proto --encode=clientgate.v1.EvaluateRequest \
    proto/clientgate/v1/clientgate.proto < "$1" > "$OUT/body.pb"
  python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); sys.stdout.buffer.write(struct.pack(">BI",0,len(b))+b)' \
    "$OUT/body.pb" > "$2"
}
frame benches/grpc/dcr.txtpb "$OUT/dcr.bin"
frame benches/grpc/cimd.txtpb "$OUT/cimd.bin"

# The document server (on the load generator's core) and the configuration it writes.
taskset -c 1 "$ROOT/target/release/examples/cimd_doc_server" tests/fixtures/real-cimd "$OUT/docs" \
  > "$OUT/docs.log" 2>&1 &
DOCS=$!
trap 'kill $DOCS 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^serving' "$OUT/docs.log" 2>/dev/null && break; sleep 0.1; done
grep -q '^serving' "$OUT/docs.log" || { cat "$OUT/docs.log" >&2; exit 1; }
CONFIG=$OUT/docs/clientgate.toml

DCR_URL=http://127.0.0.1:50992/clientgate.v1.RegistrationService/Evaluate
CIMD_URL=http://127.0.0.1:50993/clientgate.v1.RegistrationService/Evaluate
serve() { # port -> start command for bench.sh (a fresh data directory per run)
  echo "bash -c 'd=\$(mktemp -d -p $OUT); exec $GATE serve --listen 127.0.0.1:$1 --policies $ROOT/policies --data \$d --config $CONFIG'"
}

# One checked call each: the answer must be gRPC status 0 with a body (h2load counts HTTP
# 200 as success; a gRPC error is trailers-only and carries no DATA).
check_call() { # port frame label
  local data; data=$(mktemp -d -p "$OUT")
  "$GATE" serve --listen "127.0.0.1:$1" --policies "$ROOT/policies" --data "$data" --config "$CONFIG" \
    > "$OUT/check-$3.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && break; sleep 0.1; done
  curl -s --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
    --data-binary "@$2" -D "$OUT/check-$3.headers" -o "$OUT/check-$3.body" \
    "http://127.0.0.1:$1/clientgate.v1.RegistrationService/Evaluate"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  grep -qi '^grpc-status: 0' "$OUT/check-$3.headers" \
    || { echo "$3: the call failed:" >&2; cat "$OUT/check-$3.headers" >&2; exit 1; }
  local bytes; bytes=$(stat -c %s "$OUT/check-$3.body")
  local decision; decision=$(tail -c +6 "$OUT/check-$3.body" \
    | "$PROTOC" --proto_path=proto --decode=clientgate.v1.EvaluateResponse proto/clientgate/v1/clientgate.proto \
    | grep -m1 '^decision:' || true)
  echo "$3: grpc-status 0, $bytes bytes per answer ($decision)"
}
# bench.sh at 128 in flight and at one (a tenth of the requests), the floor first in each.
at_both_loads() { # title out-prefix config...
  local title=$1 prefix=$2; shift 2
  for shape in "16 8" "1 1"; do
    read -r c m <<< "$shape"
    n=$N; (( c == 1 )) && n=$((N / 10))
    echo; echo "== $title$((c * m)) in flight (-c $c -m $m), $n requests per run, $RUNS runs"
    bash benches/grpc/bench.sh -n "$n" -c "$c" -m "$m" -r "$RUNS" -w $((n / 10)) -o "$OUT/$prefix$((c * m))" \
      "floor|$NOOP 127.0.0.1:50991|http://127.0.0.1:50991/skel.v1.Authz/Check|$ROOT/benches/grpc/skel-check.bin" \
      "$@" | sed -n '/^### Per configuration/,$p'
  done
}
if [[ -n $POSTGRES ]]; then
  source benches/grpc_postgres.sh
  exit 0
fi
check_call 50992 "$OUT/dcr.bin" dcr
check_call 50993 "$OUT/cimd.bin" cimd

at_both_loads "" c \
  "dcr|$(serve 50992)|$DCR_URL|$OUT/dcr.bin" \
  "cimd|$(serve 50993)|$CIMD_URL|$OUT/cimd.bin"

# The disk's floor for a durable answer, in the directory the stores of this run use.
echo; echo "== the disk's own sync latency (benches/fsync_probe.py)"
python3 benches/fsync_probe.py "$OUT"

# Durability: the syscalls the store makes to reach the disk during 20,000 DCR decisions;
# the server's own count of group commits comes from its shutdown line.
echo; echo "== syncs during 20000 DCR decisions at 128 in flight (strace -f)"
data=$(mktemp -d -p "$OUT")
taskset -c 0 strace -f -qq -e trace=fsync,fdatasync,sync_file_range -o "$OUT/strace.txt" \
  "$GATE" serve --listen 127.0.0.1:50994 --policies "$ROOT/policies" --data "$data" --config "$CONFIG" \
  > "$OUT/strace-server.log" 2>&1 &
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/50994") 2>/dev/null && break; sleep 0.1; done
taskset -c 1 h2load -t 1 -c 16 -m 8 -n 20000 -d "$OUT/dcr.bin" -H 'content-type: application/grpc' \
  -H 'te: trailers' http://127.0.0.1:50994/clientgate.v1.RegistrationService/Evaluate | grep -E '^(finished|requests)'
pkill -INT -f -- "--listen 127.0.0.1:50994" || true
for _ in $(seq 100); do grep -q 'store flushed' "$OUT/strace-server.log" && break; sleep 0.1; done
sleep 0.5
for call in fdatasync fsync sync_file_range; do
  printf '%-16s %s\n' "$call" "$(grep -c " $call(" "$OUT/strace.txt" || true)"
done
grep -o 'decisions_recorded=[0-9]* decisions_shed=[0-9]* flushes=[0-9]*' "$OUT/strace-server.log" | tail -1 \
  | sed 's/flushes=/group commits=/' || true
echo; echo "raw results: $OUT"
