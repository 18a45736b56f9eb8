#!/usr/bin/env bash
# The GBT fixture (fixtures/onnx/cancer-gbc100: 100 trees, 30 features) served by Pier
# builds side by side, one command: each build in turn starts `pier serve`, pushes the
# model, deploys it with batching on as the peers comparison does (PIER_MAX_BATCH_SIZE=64,
# PIER_MAX_QUEUE_DELAY_US=0) and takes one-row v2 requests from `pier loadtest` at c = 64
# over gRPC, then REST JSON. Rounds interleave the builds, so whatever else the machine
# does hits them alike. Each cell reports req/s and the server's CPU seconds (utime +
# stime); the last lines are the means per build and protocol and their ratio to the first
# build.
#
# usage: benches/gbt_backends.sh NAME=BINARY[:ENV] ...
#   ENV: extra CreateModel environment entries as JSON members, e.g.
#   'pier-ort=out/pier-ort:"PIER_BACKEND":"ort"' (a binary built with --features pier/ort).
#   ENV naming PIER_MAX_BATCH_SIZE replaces the batching defaults, e.g.
#   'off=target/release/pier:"PIER_MAX_BATCH_SIZE":"0"' serves the model unbatched.
#   GBT_SECONDS=8 per cell (after 1 s of warm-up), GBT_ROUNDS=3, GBT_C=64,
#   GBT_LOADTEST (default: the first binary) drives every server.
#   ORT_DYLIB_PATH: the ONNX Runtime library for ort builds (default: the tests' .venv).
# example:
#   benches/gbt_backends.sh default=target/release/pier 'ort=/tmp/pier-ort:"PIER_BACKEND":"ort"'
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
SECS=${GBT_SECONDS:-8}
ROUNDS=${GBT_ROUNDS:-3}
C=${GBT_C:-64}
MODEL="$PWD/fixtures/onnx/cancer-gbc100/model.onnx"
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    ORT_DYLIB_PATH=$(ls "$PWD"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.* 2>/dev/null | head -n1 || true)
fi
export ORT_DYLIB_PATH
WORK=$(mktemp -d)
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
first=${1#*=}
LOADTEST=${GBT_LOADTEST:-${first%%:*}}
# One row of 30 features, the same for every request.
printf '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,30],"data":[%s]}]}' \
    "$(seq -s, 1.5 0.5 16)" >"$WORK/request.json"

cell() { # NAME BINARY ENV
    local name=$1 bin=$2 extra=$3 dir="$WORK/$1" http admin grpc
    rm -rf "$dir"
    mkdir -p "$dir"
    "$bin" models push gbt "$MODEL" --runtime onnx --data-dir "$dir/data" >"$dir/push.log" 2>&1
    "$bin" serve --data-dir "$dir/data" --http 127.0.0.1:0 --admin 127.0.0.1:0 \
        --grpc 127.0.0.1:0 >"$dir/serve.out" 2>"$dir/serve.err" &
    PID=$!
    for _ in $(seq 1 300); do grep -q "pier: serving" "$dir/serve.out" && break; sleep 0.1; done
    http=$(grep -o "http=[^ ]*" "$dir/serve.out" | head -1 | cut -d= -f2)
    admin=$(grep -o "admin=[^ ]*" "$dir/serve.out" | head -1 | cut -d= -f2)
    grpc=$(grep -o "grpc=[^ ]*" "$dir/serve.out" | head -1 | cut -d= -f2)
    [ -n "$grpc" ] || { echo "$name: the server did not start: $(tail -3 "$dir/serve.err")" >&2; exit 1; }
    local env="\"PIER_MAX_BATCH_SIZE\":\"64\",\"PIER_MAX_QUEUE_DELAY_US\":\"0\"${extra:+,$extra}"
    # A build's own batching settings replace the defaults (e.g. "PIER_MAX_BATCH_SIZE":"0": off).
    case $extra in *PIER_MAX_BATCH_SIZE*) env=$extra ;; esac
    api() {
        curl -sS --fail-with-body "http://$admin/" -H "X-Amz-Target: SageMaker.$1" \
            -H 'Content-Type: application/x-amz-json-1.1' -d "$2" >>"$dir/api.log" ||
            { echo "$name: $1 failed: $(tail -c 300 "$dir/api.log")" >&2; exit 1; }
    }
    api CreateModel "{\"ModelName\":\"gbt\",\"PrimaryContainer\":{\"Image\":\"onnx\",\"ModelDataUrl\":\"pier://gbt/1\",\"Environment\":{$env}}}"
    api CreateEndpointConfig '{"EndpointConfigName":"gbt","ProductionVariants":[{"VariantName":"main","ModelName":"gbt","InitialVariantWeight":1}]}'
    api CreateEndpoint '{"EndpointName":"gbt","EndpointConfigName":"gbt"}'
    for _ in $(seq 1 300); do curl -sf "http://$http/v2/models/gbt/ready" >/dev/null && break; sleep 0.1; done
    local proto url cpu0 cpu1 out rps
    for proto in v2-grpc v2-json; do
        case $proto in v2-grpc) url="http://$grpc" ;; *) url="http://$http" ;; esac
        cpu0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
        out=$("$LOADTEST" loadtest --url "$url" --protocol "$proto" --model gbt \
            --input-file "$WORK/request.json" -c "$C" --duration "$SECS" --warmup 1 2>"$dir/loadtest.err") ||
            { echo "$name $proto: pier loadtest failed: $(tail -3 "$dir/loadtest.err")" >&2; exit 1; }
        cpu1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
        rps=$(awk '/throughput/ {print $2}' <<<"$out")
        printf '%-12s %-8s %9s req/s  server %5.2f CPU-s  %s\n' "$name" "$proto" "$rps" \
            "$(awk -v t=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {print t / hz}')" \
            "$(awk '/requests/ {print $3, $4, $5, $6}' <<<"$out")"
        echo "$name $proto $rps" >>"$WORK/rows"
    done
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
}

echo "GBT, c = $C, $SECS s cells, $ROUNDS rounds (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for round in $(seq 1 "$ROUNDS"); do
    for spec in "$@"; do
        name=${spec%%=*}
        rest=${spec#*=}
        bin=${rest%%:*}
        extra=""
        [ "$rest" != "$bin" ] && extra=${rest#*:}
        cell "$name" "$bin" "$extra"
    done
done
base=${1%%=*}
awk -v base="$base" '{ k = $1 " " $2; n[k]++; s[k] += $3; order[k] = NR; proto[$2] = 1; name[$1] = 1 }
    END { for (k in n) m[k] = s[k] / n[k]
          for (k in n) { split(k, p, " ")
              printf "mean %-12s %-8s %9.0f req/s (%.3fx %s)\n", p[1], p[2], m[k], m[k] / m[base " " p[2]], base } }' \
    "$WORK/rows" | sort -k3,3 -k2,2
