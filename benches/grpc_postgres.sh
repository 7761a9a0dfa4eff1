# Sourced by `benches/grpc.sh -p`: Evaluate (DCR, starter policies) on the PostgreSQL store.
# A throwaway PostgreSQL 15+ cluster (initdb, durable defaults: fsync and synchronous_commit
# on) runs on the load generator's core, as a database on another machine would; the
# replicas run on the server core. Prints the yardstick's table for the floor and one
# replica at 128 and at 1 in flight, then two replicas on the same core and the same
# database, loaded by two h2load processes of 64 in flight each (their req/s summed).
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x $PGBIN/initdb ]] || { echo "needs the PostgreSQL server binaries: apt-get install postgresql" >&2; exit 1; }
PGDIR=$(mktemp -d -p "$OUT" pg-XXXXXX)
as_pg=()
if [[ $(id -u) == 0 ]]; then chown -R postgres "$PGDIR"; as_pg=(runuser -u postgres --); fi
"${as_pg[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres -E UTF8 > "$OUT/initdb.log"
"${as_pg[@]}" taskset -c 1 "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" \
  -o "-p 55432 -c listen_addresses=127.0.0.1 -k $PGDIR -c max_connections=200" -w start > /dev/null
trap 'kill $DOCS 2>/dev/null || true; "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop > /dev/null || true' EXIT
export CLIENTGATE_STORE_BACKEND=postgres
export CLIENTGATE_STORE_POSTGRES_URL=postgres://postgres@127.0.0.1:55432/postgres

serve_pg() { # port -> start command for bench.sh
  echo "bash -c 'd=\$(mktemp -d -p $OUT); exec $GATE serve --listen 127.0.0.1:$1 --policies $ROOT/policies --data \$d'"
}
check_call 50995 "$OUT/dcr.bin" dcr-postgres

at_both_loads "PostgreSQL, one replica, " pg-c \
  "dcr-postgres|$(serve_pg 50995)|http://127.0.0.1:50995/clientgate.v1.RegistrationService/Evaluate|$OUT/dcr.bin"

echo; echo "== PostgreSQL, two replicas on the server core, 2 x 64 in flight, $N requests each run"
for port in 50996 50997; do
  d=$(mktemp -d -p "$OUT")
  taskset -c 0 "$GATE" serve --listen "127.0.0.1:$port" --policies "$ROOT/policies" --data "$d" \
    > "$OUT/replica-$port.log" 2>&1 &
done
for port in 50996 50997; do
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done
for run in $(seq "$RUNS"); do
  loads=()
  for port in 50996 50997; do
    taskset -c 1 h2load -t 1 -c 8 -m 8 -n $((N / 2)) -d "$OUT/dcr.bin" -H 'content-type: application/grpc' \
      -H 'te: trailers' "http://127.0.0.1:$port/clientgate.v1.RegistrationService/Evaluate" \
      > "$OUT/two-$run-$port.txt" 2>&1 &
    loads+=($!)
  done
  wait "${loads[@]}"
  total=0
  for port in 50996 50997; do
    rps=$(grep -oP 'finished in [^,]+, \K[0-9.]+(?= req/s)' "$OUT/two-$run-$port.txt")
    ok=$(grep -oP 'requests: .* \K[0-9]+(?= succeeded)' "$OUT/two-$run-$port.txt")
    echo "run $run: replica :$port $rps req/s ($ok succeeded)"
    total=$(python3 -c "print(round($total + $rps))")
  done
  echo "run $run: two replicas together $total req/s"
done
pkill -TERM -f -- "--listen 127.0.0.1:5099[67]" || true
echo; echo "raw results: $OUT"
