#!/usr/bin/env bash
# Agreement check: Triton's perf_analyzer and `pier loadtest`, back to back on the same
# `pier serve`, same protocol, concurrency 8, random FP32 inputs.
#
# MODEL=gbc (default): endpoint `gbc` over fixtures/onnx/cancer-gbc100 on tract, one row a
#   request. The server needs ~0.7 ms of CPU per request, far more than either client, so
#   both tools measure the server and should agree.
# MODEL=demo: `serve --demo` (a 4-feature MLP, a few µs a request). Here the clients' own
#   CPU (perf_analyzer ~58 µs a request, pier loadtest ~16 µs) is the larger cost and each
#   tool mostly measures itself; use BATCH=64 to shift the work to the server.
#   -i http  <->  --protocol v2-binary (perf_analyzer's HTTP default: binary tensor extension,
#                                        binary outputs)
#   -i grpc  <->  --protocol v2-grpc   (raw_input_contents)
# Prints throughput, p50 and p99 of each and the ratio pier/perf_analyzer. Bounded: about
# 1-2 minutes after the build.
#
# Needs perf_analyzer (pip install 'tritonclient[all]==2.51.0' nvidia-cuda-runtime-cu12, and
# Debian's libb64-0d). PIER_VENV names the venv holding it (default .venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${PIER_VENV:-.venv}
PY="$VENV/bin/python"
PA="$VENV/bin/perf_analyzer"
[ -x "$PA" ] || { echo "perf_analyzer not found in $VENV (set PIER_VENV)" >&2; exit 1; }
CONCURRENCY=${CONCURRENCY:-8}
MODEL=${MODEL:-gbc}
# Rows per request (perf_analyzer -b, pier loadtest --rows).
BATCH=${BATCH:-1}
# Client and server on separate cores (PIN=0 to share them all): perf_analyzer spends about
# 3-4x the CPU per request that `pier loadtest` does, and on a shared machine a heavier client
# takes CPU from the server, so unpinned runs measure the clients' cost, not the server.
PIN=${PIN:-1}
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  last=$(( $(nproc) - 1 ))
  SERVER_CPUS=(taskset -c 0)
  CLIENT_CPUS=(taskset -c "1-$last")
  echo "pinned: server on CPU 0, load generators on CPUs 1-$last"
else
  SERVER_CPUS=()
  CLIENT_CPUS=()
fi

cargo build --release -p pier
PIER="${CARGO_TARGET_DIR:-target}/release/pier"

tmp=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

serve_args=()
case "$MODEL" in
  demo) serve_args=(--demo) ;;
  gbc) "$PIER" models push gbc fixtures/onnx/cancer-gbc100/model.onnx --runtime onnx \
         --data-dir "$tmp/data" --log warn >/dev/null ;;
  *) echo "MODEL must be gbc or demo" >&2; exit 2 ;;
esac
"${SERVER_CPUS[@]}" "$PIER" serve "${serve_args[@]}" --data-dir "$tmp/data" --http 127.0.0.1:0 \
  --admin 127.0.0.1:0 --grpc 127.0.0.1:0 --log warn >"$tmp/serve.out" 2>"$tmp/serve.err" &
server=$!
for _ in $(seq 300); do grep -q '^pier: serving' "$tmp/serve.out" && break; sleep 0.1; done
line=$(grep '^pier: serving' "$tmp/serve.out") || { cat "$tmp/serve.err" >&2; exit 1; }
http=$(sed -E 's/.*http=([^ ]+).*/\1/' <<<"$line")
grpc=$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$line")
echo "server: $line"
if [ "$MODEL" = gbc ]; then
  admin=$(sed -E 's/.*admin=([^ ]+).*/\1/' <<<"$line")
  api() {
    curl -sf -X POST "http://$admin/" -H "X-Amz-Target: SageMaker.$1" \
      -H 'Content-Type: application/x-amz-json-1.1' -d "$2"
  }
  api CreateModel '{"ModelName":"gbc","PrimaryContainer":{"Image":"onnx","ModelDataUrl":"pier://gbc/1"}}' >/dev/null
  api CreateEndpointConfig '{"EndpointConfigName":"gbc","ProductionVariants":[{"VariantName":"main","ModelName":"gbc"}]}' >/dev/null
  api CreateEndpoint '{"EndpointName":"gbc","EndpointConfigName":"gbc"}' >/dev/null
  for _ in $(seq 300); do
    api DescribeEndpoint '{"EndpointName":"gbc"}' | grep -q '"InService"' && break
    sleep 0.1
  done
fi

CUDART=$("$PY" -c 'import nvidia.cuda_runtime as c; print(list(c.__path__)[0])')/lib
export LD_LIBRARY_PATH="$CUDART${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

results=()
for proto in http grpc; do
  if [ $proto = http ]; then addr=$http; ours=v2-binary; else addr=$grpc; ours=v2-grpc; fi
  pa_cmd=("${CLIENT_CPUS[@]}" "$PA" -m "$MODEL" -u "$addr" -i $proto -b "$BATCH" --concurrency-range "$CONCURRENCY"
          --measurement-interval 3000 --max-trials 6 --stability-percentage 20)
  echo "+ ${pa_cmd[*]}"
  timeout 90 "${pa_cmd[@]}" >"$tmp/pa-$proto.txt" 2>&1 || { cat "$tmp/pa-$proto.txt" >&2; exit 1; }
  pa_rps=$(grep -oE 'Throughput: [0-9.]+ infer/sec' "$tmp/pa-$proto.txt" | tail -1 | grep -oE '[0-9.]+')
  # perf_analyzer counts inferences (rows); requests = inferences / batch.
  pa_rps=$("$PY" -c 'import sys; print(float(sys.argv[1]) / int(sys.argv[2]))' "$pa_rps" "$BATCH")
  pa_p50=$(grep -oE 'p50 latency: [0-9]+' "$tmp/pa-$proto.txt" | tail -1 | grep -oE '[0-9]+$')
  pa_p99=$(grep -oE 'p99 latency: [0-9]+' "$tmp/pa-$proto.txt" | tail -1 | grep -oE '[0-9]+$')

  ours_cmd=("${CLIENT_CPUS[@]}" "$PIER" loadtest --url "http://$addr" --protocol $ours -m "$MODEL" -c "$CONCURRENCY" --rows "$BATCH"
            --warmup 2 --duration 6 --json "$tmp/pier-$proto.json" --quiet --log warn)
  echo "+ ${ours_cmd[*]}"
  timeout 60 "${ours_cmd[@]}" >"$tmp/pier-$proto.txt"
  read -r p_rps p_p50 p_p99 p_err < <("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["throughput_rps"], r["latency_us"]["p50"], r["latency_us"]["p99"], sum(r["errors"].values()))
' "$tmp/pier-$proto.json")
  results+=("$proto $pa_rps $pa_p50 $pa_p99 $p_rps $p_p50 $p_p99 $p_err")
done

echo
printf '%-5s | %-32s | %-32s | %s\n' protocol "perf_analyzer req/s  p50 us  p99 us" "pier loadtest req/s  p50 us  p99 us" "ratio req/s, p50, p99 (pier/pa)"
for r in "${results[@]}"; do
  read -r proto pa_rps pa_p50 pa_p99 p_rps p_p50 p_p99 p_err <<<"$r"
  "$PY" -c '
import sys
proto, a, a50, a99, b, b50, b99, err = sys.argv[1:]
a, a50, a99, b, b50, b99 = map(float, (a, a50, a99, b, b50, b99))
print(f"{proto:<8} | {a:12.1f} {a50:8.0f} {a99:8.0f}      | {b:12.1f} {b50:8.0f} {b99:8.0f}      | {b/a:.3f}, {b50/a50:.3f}, {b99/a99:.3f}  (pier errors: {err})")
' "$proto" "$pa_rps" "$pa_p50" "$pa_p99" "$p_rps" "$p_p50" "$p_p99" "$p_err"
done
