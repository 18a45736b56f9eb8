#!/usr/bin/env bash
# Instructions per request of Pier's HTTP data plane and of the zero-work limit
# (`benches/src/bin/http_limit.rs`), free of the timing noise of a shared machine: each
# server runs under valgrind's callgrind; per case its counters are zeroed after a warm-up,
# N requests are sent by `pier loadtest -c 4` (running natively, not counted) and the
# counters are dumped. Cases as in `benches/http_limit.sh` (one row to the demo's `mlp`
# variant): sagemaker (CSV), v2-json, v2-binary; and v2-grpc (ModelInfer, the tensor in
# `raw_input_contents` as `pier loadtest` sends it), whose limit is the tonic server
# `benches/src/bin/grpc_limit.rs` answering Pier's own answer (captured by
# `benches/grpc_answer.py`).
#
# usage: benches/http_callgrind.sh [PIER_BINARY] [LIMIT_BINARY] [REQUESTS]
#   (default target/release/pier, target/release/http_limit, 2000)
#   GRPC_LIMIT (default target/release/grpc_limit) for v2-grpc.
# Prints instructions per request per server and case and the ratio Pier / limit; with
# KEEP=DIR the dumps are kept there for `callgrind_annotate --inclusive=yes`.
# PIER_SERVE_ARGS adds flags to `pier serve`. Under valgrind a prediction runs some 50x
# slower than natively, past the default inline budget, so each request hops to the compute
# pool, which it does not do natively; PIER_SERVE_ARGS="--inline-predict-us 100000" keeps
# the native path.
# needs: valgrind, curl; for v2-grpc python3 with tritonclient[grpc] (the tests' .venv has it).
set -euo pipefail
cd "$(dirname "$0")/.."
PIER=${1:-target/release/pier}
LIMIT=${2:-target/release/http_limit}
N=${3:-2000}
GRPC_LIMIT=${GRPC_LIMIT:-target/release/grpc_limit}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
CASES=${HTTP_LIMIT_CASES:-sagemaker v2-json v2-binary}
WORK=$(mktemp -d)
VG=""
cleanup() {
    [ -n "$VG" ] && kill "$VG" 2>/dev/null && wait "$VG" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
printf '5.1,3.5,1.4,0.2\n' >"$WORK/body.csv"
printf '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}' >"$WORK/infer.json"

load() { # URL CASE REQUESTS
    local args
    case $2 in
    sagemaker) args=(--protocol sagemaker -m demo --input-file "$WORK/body.csv" --content-type text/csv
        -H "X-Amzn-SageMaker-Target-Variant: mlp") ;;
    *) args=(--protocol "$2" -m demo --model-version mlp --input-file "$WORK/infer.json") ;;
    esac
    "$PIER" loadtest --url "$1" "${args[@]}" -c 4 -n "$3" --timeout 120 -q 2>/dev/null |
        awk '/requests/ {print $3, $4, $5, $6; exit}'
}

python3 - "$WORK" <<'PYEOF'
import json, struct, sys
work = sys.argv[1]
header = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                                 "parameters": {"binary_data_size": 16}}],
                     "parameters": {"binary_data_output": True}}).encode()
open(f"{work}/infer.bin", "wb").write(header + struct.pack("<4f", 5.1, 3.5, 1.4, 0.2))
open(f"{work}/infer.bin.len", "w").write(str(len(header)))
PYEOF

# answer_size ADDR CASE: bytes of Pier's answer (the limit answers as many).
answer_size() {
    case $2 in
    sagemaker) curl -sf "http://$1/endpoints/demo/invocations" -H 'Content-Type: text/csv' \
        -H 'X-Amzn-SageMaker-Target-Variant: mlp' --data-binary @"$WORK/body.csv" ;;
    v2-json) curl -sf "http://$1/v2/models/demo/versions/mlp/infer" \
        -H 'Content-Type: application/json' --data-binary @"$WORK/infer.json" ;;
    v2-binary) curl -sf "http://$1/v2/models/demo/versions/mlp/infer" \
        -H 'Content-Type: application/octet-stream' \
        -H "Inference-Header-Content-Length: $(cat "$WORK/infer.bin.len")" --data-binary @"$WORK/infer.bin" ;;
    v2-grpc) "$PY" benches/grpc_answer.py "$1" demo mlp "$WORK/infer.json" "$WORK/answer.pb"
        cat "$WORK/answer.pb" ;;
    esac | wc -c
}

# measure SERVER CASE ADDR: zero, N requests, dump; sets IR[SERVER.CASE].
declare -A IR
measure() {
    local server=$1 case=$2 addr=$3 warm measured dump total
    warm=$(load "http://$addr" "$case" 200)
    callgrind_control -z "$VG" >/dev/null
    measured=$(load "http://$addr" "$case" "$N")
    callgrind_control -d "$VG" >/dev/null
    sleep 1
    dump=$(ls -t "$WORK/callgrind.$server"* | head -1)
    total=$(grep -hE '^(totals|summary):' "$dump" | head -1 | awk '{print $2}')
    IR[$server.$case]=$((total / N))
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$dump" "$KEEP/callgrind.$server.$case"; fi
    printf '%-5s %-9s %s requests (warm-up %s; measured %s): %s instructions/request\n' \
        "$server" "$case" "$N" "$warm" "$measured" "${IR[$server.$case]}"
}

valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.pier" \
    "$PIER" serve --demo --data-dir "$WORK/data" --http 127.0.0.1:0 --admin 127.0.0.1:0 \
    --grpc 127.0.0.1:0 --compute-threads 1 ${PIER_SERVE_ARGS:-} >"$WORK/serve.out" 2>"$WORK/valgrind.err" &
VG=$!
for _ in $(seq 1 600); do grep -q "pier: serving" "$WORK/serve.out" && break; sleep 0.5; done
addr=$(grep -o "http=[^ ]*" "$WORK/serve.out" | head -1 | cut -d= -f2)
grpc=$(grep -o "grpc=[^ ]*" "$WORK/serve.out" | head -1 | cut -d= -f2)
[ -n "$addr" ] || { echo "pier did not start under valgrind" >&2; cat "$WORK/valgrind.err" >&2; exit 1; }
for case in $CASES; do
    to=$addr
    [ "$case" = v2-grpc ] && to=$grpc
    answer_size "$to" "$case" >"$WORK/size.$case"
    measure pier "$case" "$to"
done
kill "$VG"; wait "$VG" 2>/dev/null || true; VG=""

for case in $CASES; do
    ctype=text/csv
    [ "$case" = sagemaker ] || ctype=application/json
    limit=("$LIMIT" 127.0.0.1:0 "$(cat "$WORK/size.$case")" "$ctype")
    [ "$case" = v2-grpc ] && limit=("$GRPC_LIMIT" 127.0.0.1:0 "$WORK/answer.pb")
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.limit.$case" \
        "${limit[@]}" >"$WORK/limit.$case.out" 2>"$WORK/valgrind.err" &
    VG=$!
    for _ in $(seq 1 600); do grep -q "listening" "$WORK/limit.$case.out" && break; sleep 0.5; done
    addr=$(awk '/listening on/ {print $3}' "$WORK/limit.$case.out")
    [ -n "$addr" ] || { echo "the limit did not start under valgrind" >&2; cat "$WORK/valgrind.err" >&2; exit 1; }
    measure limit "$case" "$addr"
    kill "$VG"; wait "$VG" 2>/dev/null || true; VG=""
done
for case in $CASES; do
    awk -v c="$case" -v p="${IR[pier.$case]}" -v l="${IR[limit.$case]}" \
        'BEGIN { printf "%-9s Pier %d, limit %d instructions/request: Pier costs %.2fx the limit (limit/Pier %.2f)\n", c, p, l, p / l, l / p }'
done
