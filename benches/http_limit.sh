#!/usr/bin/env bash
# Pier's HTTP data plane against the zero-work limit, one command. The limit is
# `benches/src/bin/http_limit.rs`: a hyper-util server with Pier's listener settings that
# answers a fixed body of the size of Pier's answer and does nothing else. Both are driven
# by the same load generator (`pier loadtest`, closed loop, c connections), in interleaved
# rounds (round 1: Pier then the limit for each case; round 2: the limit then Pier; ...), so
# a change in what else the machine runs hits both alike.
#
# Cases (one-row requests to the demo's `mlp` variant, `pier serve --demo`):
#   sagemaker  POST /endpoints/demo/invocations, text/csv in and out
#   v2-json    POST /v2/models/demo/versions/mlp/infer, JSON tensors
#   v2-binary  the same with the binary tensor extension (inputs and outputs binary)
#   v2-grpc    ModelInfer over gRPC (the tensor in raw_input_contents, as `pier loadtest`
#              sends it); its limit is `benches/src/bin/grpc_limit.rs` (tonic with Pier's
#              gRPC listener settings) answering Pier's own ModelInferResponse, captured
#              by benches/grpc_answer.py (python3 with tritonclient[grpc]: the tests'
#              .venv has it)
# Triton is not run here (see benches/peers/run.sh for peers).
#
# usage: benches/http_limit.sh [PIER_BINARY] [LIMIT_BINARY]
#   (default target/release/pier and target/release/http_limit; build both with
#   `cargo build --release --workspace`)
#   HTTP_LIMIT_SECONDS=5 per cell, HTTP_LIMIT_ROUNDS=3, HTTP_LIMIT_C=64,
#   HTTP_LIMIT_CASES="sagemaker v2-json v2-binary" (add v2-grpc for gRPC),
#   GRPC_LIMIT=target/release/grpc_limit
# Prints one line per cell (req/s, p50, p99, CPU seconds of the server and of the load
# generator, wall seconds) and, per case, the medians over rounds and the ratios Pier/limit.
set -euo pipefail
cd "$(dirname "$0")/.."
PIER=${1:-target/release/pier}
LIMIT=${2:-target/release/http_limit}
SECS=${HTTP_LIMIT_SECONDS:-5}
ROUNDS=${HTTP_LIMIT_ROUNDS:-3}
C=${HTTP_LIMIT_C:-64}
CASES=${HTTP_LIMIT_CASES:-sagemaker v2-json v2-binary}
GRPC_LIMIT=${GRPC_LIMIT:-target/release/grpc_limit}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------------ requests
printf '5.1,3.5,1.4,0.2\n' >"$WORK/body.csv"
printf '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}' >"$WORK/infer.json"
# The binary request as `pier loadtest --protocol v2-binary` sends it (for the answer's size).
python3 - "$WORK" <<'PYEOF'
import json, struct, sys
work = sys.argv[1]
header = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                                 "parameters": {"binary_data_size": 16}}],
                     "parameters": {"binary_data_output": True}}).encode()
open(f"{work}/infer.bin", "wb").write(header + struct.pack("<4f", 5.1, 3.5, 1.4, 0.2))
open(f"{work}/infer.bin.len", "w").write(str(len(header)))
PYEOF

# ------------------------------------------------------------------ servers
# pid_cpu PID: user + system CPU seconds of a process so far.
pid_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

"$PIER" serve --demo --data-dir "$WORK/data" --http 127.0.0.1:0 --admin 127.0.0.1:0 \
    --grpc 127.0.0.1:0 >"$WORK/pier.out" 2>"$WORK/pier.err" &
PIER_PID=$!
PIDS+=("$PIER_PID")
for _ in $(seq 1 600); do grep -q "pier: serving" "$WORK/pier.out" && break; sleep 0.2; done
PIER_HTTP=$(grep -o "http=[^ ]*" "$WORK/pier.out" | head -1 | cut -d= -f2)
PIER_GRPC=$(grep -o "grpc=[^ ]*" "$WORK/pier.out" | head -1 | cut -d= -f2)
[ -n "$PIER_HTTP" ] || { echo "pier did not start; see its log:" >&2; cat "$WORK/pier.err" >&2; exit 1; }

# answer_size CASE: bytes of Pier's answer to the case's request.
answer_size() {
    local url="http://$PIER_HTTP"
    case $1 in
    sagemaker) curl -sf "$url/endpoints/demo/invocations" -H 'Content-Type: text/csv' \
        -H 'X-Amzn-SageMaker-Target-Variant: mlp' --data-binary @"$WORK/body.csv" ;;
    v2-json) curl -sf "$url/v2/models/demo/versions/mlp/infer" -H 'Content-Type: application/json' \
        --data-binary @"$WORK/infer.json" ;;
    v2-binary) curl -sf "$url/v2/models/demo/versions/mlp/infer" \
        -H 'Content-Type: application/octet-stream' \
        -H "Inference-Header-Content-Length: $(cat "$WORK/infer.bin.len")" \
        --data-binary @"$WORK/infer.bin" ;;
    v2-grpc) "$PY" benches/grpc_answer.py "$PIER_GRPC" demo mlp "$WORK/infer.json" "$WORK/answer.pb"
        cat "$WORK/answer.pb" ;;
    esac | wc -c
}

declare -A LIMIT_URL
for case in $CASES; do
    size=$(answer_size "$case")
    [ "$size" -gt 0 ] || { echo "$case: Pier gave no answer" >&2; exit 1; }
    ctype=text/csv
    [ "$case" = sagemaker ] || ctype=application/json
    if [ "$case" = v2-grpc ]; then
        "$GRPC_LIMIT" 127.0.0.1:0 "$WORK/answer.pb" >"$WORK/limit-$case.out" 2>&1 &
    else
        "$LIMIT" 127.0.0.1:0 "$size" "$ctype" >"$WORK/limit-$case.out" 2>&1 &
    fi
    PIDS+=("$!")
    for _ in $(seq 1 100); do grep -q listening "$WORK/limit-$case.out" && break; sleep 0.1; done
    LIMIT_URL[$case]=$(awk '/listening on/ {print $3}' "$WORK/limit-$case.out")
    eval "LIMIT_PID_${case//-/_}=$!"
    echo "$case: Pier answers $size bytes; the limit at ${LIMIT_URL[$case]} answers the same size" >&2
done

# ------------------------------------------------------------------ cells
# cell SERVER CASE ROUND: one closed-loop run; appends a line to $WORK/cells.
cell() {
    local server=$1 case=$2 round=$3 url pid args=() f="$WORK/$1-$2-$3.json"
    if [ "$server" = pier ]; then
        url="http://$PIER_HTTP" pid=$PIER_PID
        [ "$case" = v2-grpc ] && url="http://$PIER_GRPC"
    else
        url="http://${LIMIT_URL[$case]}"
        pid_var="LIMIT_PID_${case//-/_}"
        pid=${!pid_var}
    fi
    case $case in
    sagemaker) args=(--protocol sagemaker -m demo --input-file "$WORK/body.csv" --content-type text/csv
        -H "X-Amzn-SageMaker-Target-Variant: mlp") ;;
    v2-json | v2-binary | v2-grpc) args=(--protocol "$case" -m demo --model-version mlp --input-file "$WORK/infer.json") ;;
    esac
    local before after t
    before=$(pid_cpu "$pid")
    TIMEFORMAT='%R %U %S'
    t=$({ time "$PIER" loadtest --url "$url" "${args[@]}" -c "$C" --warmup 1 --duration "$SECS" \
        --json "$f" -q >/dev/null 2>"$f.log"; } 2>&1) || { echo "loadtest failed: $(tail -n2 "$f.log")" >&2; exit 1; }
    after=$(pid_cpu "$pid")
    python3 - "$f" "$server" "$case" "$round" "$before" "$after" $t >>"$WORK/cells" <<'PYEOF'
import json, sys
f, server, case, rnd, before, after, wall, user, sys_ = sys.argv[1:10]
r = json.load(open(f))
errors = sum(r["errors"].values())
print(f"{server}\t{case}\t{rnd}\t{r['throughput_rps']:.0f}\t{r['latency_us']['p50']}\t"
      f"{r['latency_us']['p99']}\t{float(after) - float(before):.2f}\t{float(user) + float(sys_):.2f}\t{wall}\t{errors}")
PYEOF
    tail -n1 "$WORK/cells" | awk -F'\t' '{printf "round %s %-9s %-5s %8s req/s  p50 %5s us  p99 %6s us  server %5s CPU-s  loadgen %5s CPU-s  wall %5s s  errors %s\n", $3, $2, $1, $4, $5, $6, $7, $8, $9, $10}'
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; c=$C, ${SECS} s cells after 1 s warm-up, $ROUNDS rounds" >&2
for round in $(seq 1 "$ROUNDS"); do
    for case in $CASES; do
        if [ $((round % 2)) = 1 ]; then order="pier limit"; else order="limit pier"; fi
        for server in $order; do cell "$server" "$case" "$round"; done
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$WORK/cells" <<'PYEOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print()
print("| case | Pier req/s | limit req/s | ratio | Pier p99 µs | limit p99 µs | p99 ratio | Pier server CPU-µs/req | limit server CPU-µs/req |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for case in dict.fromkeys(r[1] for r in rows):
    def med(server, i):
        return statistics.median(float(r[i]) for r in rows if r[0] == server and r[1] == case)
    def cpu_per_req(server):
        xs = [float(r[6]) / (float(r[3]) * float(r[8]) or 1) * 1e6 for r in rows if r[0] == server and r[1] == case]
        return statistics.median(xs)
    p, l = med("pier", 3), med("limit", 3)
    pp, lp = med("pier", 5), med("limit", 5)
    print(f"| {case} | {p:,.0f} | {l:,.0f} | {p / l:.2f} | {pp:,.0f} | {lp:,.0f} | {pp / lp:.2f} | {cpu_per_req('pier'):.1f} | {cpu_per_req('limit'):.1f} |")
print("\n(medians over rounds; CPU-µs/req ≈ server CPU seconds over the cell's wall time × req/s, warm-up included)")
PYEOF
