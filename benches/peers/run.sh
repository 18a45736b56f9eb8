#!/usr/bin/env bash
# Peer comparison, one command: Pier against Triton (Python backend + onnxruntime), Seldon
# MLServer (mlserver-sklearn) and a hand-written FastAPI + uvicorn + onnxruntime server, all
# on 127.0.0.1, all serving the same model (scikit-learn MLPClassifier on iris: the ONNX
# export for Pier, Triton and FastAPI, the joblib estimator for MLServer) with the same
# one-row v2 request, driven by the same load generators at concurrency 1, 8 and 64:
#   - perf_analyzer (tritonclient 2.51.0): v2 REST with JSON tensors, and v2 gRPC;
#   - wrk (Debian): v2 REST JSON, closed loop over keep-alive connections (v2_infer.lua);
#   - `pier loadtest`, only if `pier loadtest --help` works in the Pier built here.
# Servers run one at a time, each alone on the machine with its load generator.
#
# Usage: benches/peers/run.sh
#   PEERS_SECONDS=3 (per wrk / pier loadtest cell), PEERS_CONCURRENCY="1 8 64",
#   PEERS_SERVERS="pier triton mlserver fastapi", PIER_BIN=path (skip the cargo build),
#   PIER_LOADTEST_BIN=path (the `pier` whose `loadtest` drives the servers; default PIER).
# Writes benches/peers/results-<date>.md and prints it. Work files: benches/peers/out/.
# Needs python3 (3.11 verified), cargo, curl, and apt-get (as root or with sudo) for wrk and
# libb64-0d if they are missing. Every server it started is stopped on exit, error or Ctrl-C.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SECS="${PEERS_SECONDS:-3}"
CONCURRENCY="${PEERS_CONCURRENCY:-1 8 64}"
SERVERS="${PEERS_SERVERS:-pier triton mlserver fastapi}"
PA_WINDOW_MS="${PEERS_PA_WINDOW_MS:-1500}" # perf_analyzer: 3 windows of this per cell
OUT="$HERE/out"
VENV="$HERE/.venv"
CVENV="$HERE/.venv-client"
MODEL=iris

log() { printf '\n== %s\n' "$*" >&2; }

# ---------------------------------------------------------------- cleanup
# Each server runs in its own session (setsid), so stopping its process group also stops
# its workers (MLServer's inference pool, uvicorn's workers, Triton's Python stubs).
GROUPS_STARTED=()
stop_group() {
    local pid=$1
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${GROUPS_STARTED[@]+"${GROUPS_STARTED[@]}"}"; do stop_group "$pid"; done
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# start NAME CMD...: runs CMD in a new session, logging to $OUT/NAME.log; sets SERVER_PID.
start() {
    local name=$1
    shift
    setsid "$@" >"$OUT/$name.log" 2>&1 &
    SERVER_PID=$!
    GROUPS_STARTED+=("$SERVER_PID")
}
stop_server() {
    stop_group "$SERVER_PID"
    local kept=()
    local pid
    for pid in "${GROUPS_STARTED[@]}"; do [ "$pid" = "$SERVER_PID" ] || kept+=("$pid"); done
    GROUPS_STARTED=("${kept[@]+"${kept[@]}"}")
}

# wait_http URL SECONDS: polls until URL answers 200; false on timeout or if the server died.
wait_http() {
    local url=$1 limit=$2 t=0
    while [ "$t" -lt $((limit * 5)) ]; do
        if curl -sf -o /dev/null --max-time 2 "$url"; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.2
        t=$((t + 1))
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- setup
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$OUT"
rm -rf "${OUT:?}"/*

log "system packages (wrk, libb64-0d for perf_analyzer)"
need=()
command -v wrk >/dev/null || need+=(wrk)
ldconfig -p | grep -q 'libb64\.so\.0d' || need+=(libb64-0d)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y -q "${need[@]}" || { $sudo apt-get update -q && $sudo apt-get install -y -q "${need[@]}"; }
fi

log "Python venvs ($VENV for the servers, $CVENV for perf_analyzer)"
install_venv() {
    local venv=$1 requirements=$2
    local stamp="$venv/.installed-$(sha256sum "$requirements" | cut -c1-16)"
    [ -f "$stamp" ] && return 0
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    touch "$stamp"
}
install_venv "$VENV" "$HERE/requirements-servers.txt"
install_venv "$CVENV" "$HERE/requirements-client.txt"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
CSITE="$("$CVENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PERF_ANALYZER="$CVENV/bin/perf_analyzer"
PA_LIBS="$CSITE/nvidia/cuda_runtime/lib"

log "model: MLPClassifier on iris -> $OUT/model/{model.onnx,model.joblib}"
"$VENV/bin/python" "$HERE/make_model.py" "$OUT/model"

if [ -n "${PIER_BIN:-}" ]; then
    PIER="$PIER_BIN" # a Pier built elsewhere (release, please)
else
    log "Pier: cargo build --release -p pier"
    (cd "$ROOT" && cargo build --release -p pier)
    # Copied at once: a shared CARGO_TARGET_DIR's release/pier is replaced by whoever
    # builds next, and the server measured must be this tree's.
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/pier" "$OUT/pier"
    PIER="$OUT/pier"
fi
[ -x "$PIER" ] || { echo "no Pier binary at $PIER" >&2; exit 1; }
# The load generator `pier loadtest` comes from the same build unless PIER_LOADTEST_BIN names
# another (e.g. a build of the loadtest branch before it is merged).
LOADTEST_BIN="${PIER_LOADTEST_BIN:-$PIER}"
if "$LOADTEST_BIN" loadtest --help >/dev/null 2>&1; then
    LOADTEST=1
else
    LOADTEST=0
    echo "NOTE: \`pier loadtest --help\` fails in this build: the pier loadtest cells are skipped." >&2
fi

CELLS="$OUT/cells.tsv"
: >"$CELLS"
# cell SERVER GENERATOR PROTOCOL C SOURCE [REASON]
cell() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >>"$CELLS"; }

# ---------------------------------------------------------------- load generators
# perf_analyzer SERVER http|grpc PORT
run_perf_analyzer() {
    local server=$1 proto=$2 port=$3 c label format=()
    if [ "$proto" = http ]; then
        label="v2 REST JSON"
        format=(--input-tensor-format json --output-tensor-format json)
    else
        label="v2 gRPC"
    fi
    for c in $CONCURRENCY; do
        local f="$OUT/pa-$server-$proto-$c.csv"
        echo "perf_analyzer $server $label c=$c" >&2
        if LD_LIBRARY_PATH="$PA_LIBS" timeout $((PA_WINDOW_MS * 10 / 1000 + 30)) "$PERF_ANALYZER" \
            -m "$MODEL" -u "127.0.0.1:$port" -i "$proto" "${format[@]}" --shape X:4 -b 1 \
            --concurrency-range "$c" -p "$PA_WINDOW_MS" --max-trials 3 --stability-percentage 999 \
            -f "$f" >"$f.log" 2>&1; then
            cell "$server" perf_analyzer "$label" "$c" "$f"
        else
            cell "$server" perf_analyzer "$label" "$c" - "perf_analyzer failed: $(grep -m1 -i error "$f.log" | tr '\t' ' ' | cut -c1-120)"
        fi
    done
}

# run_wrk SERVER HTTP_PORT
run_wrk() {
    local server=$1 port=$2 c url="http://127.0.0.1:$2/v2/models/$MODEL/infer"
    wrk -t1 -c8 -d1s -s "$HERE/v2_infer.lua" "$url" >/dev/null 2>&1 || true # warm-up
    for c in $CONCURRENCY; do
        local f="$OUT/wrk-$server-$c.txt"
        echo "wrk $server c=$c" >&2
        if timeout $((SECS + 30)) wrk -t1 -c"$c" -d"${SECS}s" --timeout 10s -s "$HERE/v2_infer.lua" "$url" >"$f" 2>&1; then
            cell "$server" wrk "v2 REST JSON" "$c" "$f"
        else
            cell "$server" wrk "v2 REST JSON" "$c" - "wrk failed"
        fi
    done
}

# run_loadtest SERVER PROTOCOL(v2-json|v2-grpc) PORT
run_loadtest() {
    local server=$1 proto=$2 port=$3 c label
    case $proto in v2-json) label="v2 REST JSON" ;; *) label="v2 gRPC" ;; esac
    [ "$LOADTEST" = 1 ] || return 0 # said once, in the report's header
    for c in $CONCURRENCY; do
        local f="$OUT/loadtest-$server-$proto-$c.json"
        echo "pier loadtest $server $proto c=$c" >&2
        if timeout $((SECS + 60)) "$LOADTEST_BIN" loadtest --url "http://127.0.0.1:$port" --protocol "$proto" \
            --model "$MODEL" --concurrency "$c" --duration "$SECS" --warmup 1 --json "$f" >"$f.log" 2>&1; then
            cell "$server" "pier loadtest" "$label" "$c" "$f"
        else
            cell "$server" "pier loadtest" "$label" "$c" - "pier loadtest failed: $(tail -n1 "$f.log" | tr '\t' ' ' | cut -c1-120)"
        fi
    done
}

not_ready() { # SERVER: records every cell of a server that did not come up
    local server=$1 c
    echo "$server did not become ready; see $OUT/$server.log" >&2
    for c in $CONCURRENCY; do cell "$server" - - "$c" - "server did not become ready (see out/$server.log)"; done
}

# ---------------------------------------------------------------- servers
bench_pier() {
    local http admin grpc data="$OUT/pier-data"
    http=$(free_port) admin=$(free_port) grpc=$(free_port)
    "$PIER" models push "$MODEL" "$OUT/model/model.onnx" --runtime onnx --data-dir "$data" >&2
    start pier "$PIER" serve --data-dir "$data" --http "127.0.0.1:$http" --admin "127.0.0.1:$admin" --grpc "127.0.0.1:$grpc"
    wait_http "http://127.0.0.1:$http/v2/health/live" 30 || { not_ready pier; stop_server; return; }
    api() {
        curl -sf "http://127.0.0.1:$admin/" -H "X-Amz-Target: SageMaker.$1" \
            -H 'Content-Type: application/x-amz-json-1.1' -d "$2"
    }
    api CreateModel "{\"ModelName\":\"$MODEL\",\"PrimaryContainer\":{\"Image\":\"onnx\",\"ModelDataUrl\":\"pier://$MODEL/1\"}}" >/dev/null
    api CreateEndpointConfig "{\"EndpointConfigName\":\"$MODEL\",\"ProductionVariants\":[{\"VariantName\":\"main\",\"ModelName\":\"$MODEL\",\"InitialVariantWeight\":1}]}" >/dev/null
    api CreateEndpoint "{\"EndpointName\":\"$MODEL\",\"EndpointConfigName\":\"$MODEL\"}" >/dev/null
    wait_http "http://127.0.0.1:$http/v2/models/$MODEL/ready" 60 || { not_ready pier; stop_server; return; }
    run_perf_analyzer Pier http "$http"
    run_perf_analyzer Pier grpc "$grpc"
    run_wrk Pier "$http"
    run_loadtest Pier v2-json "$http"
    run_loadtest Pier v2-grpc "$grpc"
    stop_server
}

bench_triton() {
    local http grpc metrics dist="$SITE/pytriton/tritonserver" server="$OUT/tritonserver" repo="$OUT/triton-repo"
    http=$(free_port) grpc=$(free_port) metrics=$(free_port)
    # pytriton's wheel ships the server, the Python backend and one stub per Python version;
    # lay them out as Triton expects (pytriton does the same at start).
    mkdir -p "$server"
    cp -r "$dist/bin" "$dist/backends" "$dist/caches" "$server/"
    local pyver
    pyver="$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    cp "$dist/python_backend_stubs/$pyver/triton_python_backend_stub" "$server/backends/python/"
    mkdir -p "$repo/$MODEL/1"
    cp "$HERE/triton/iris/config.pbtxt" "$OUT/model/model.onnx" "$repo/$MODEL/"
    cp "$HERE/triton/iris/1/model.py" "$repo/$MODEL/1/"
    # The stub finds numpy and onnxruntime through the venv's python3 first on PATH.
    start triton env PATH="$VENV/bin:$PATH" LD_LIBRARY_PATH="$SITE/nvidia_pytriton.libs" \
        "$server/bin/tritonserver" --model-repository "$repo" --backend-directory "$server/backends" \
        --http-address 127.0.0.1 --grpc-address 127.0.0.1 --http-port "$http" --grpc-port "$grpc" \
        --metrics-port "$metrics" --allow-gpu-metrics false
    wait_http "http://127.0.0.1:$http/v2/models/$MODEL/ready" 120 || { not_ready triton; stop_server; return; }
    TRITON_VERSION="$(curl -s "http://127.0.0.1:$http/v2" | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["version"])')"
    run_perf_analyzer Triton http "$http"
    run_perf_analyzer Triton grpc "$grpc"
    run_wrk Triton "$http"
    run_loadtest Triton v2-json "$http"
    run_loadtest Triton v2-grpc "$grpc"
    stop_server
}

bench_mlserver() {
    local http grpc metrics dir="$OUT/mlserver" c
    http=$(free_port) grpc=$(free_port) metrics=$(free_port)
    mkdir -p "$dir/$MODEL"
    cp "$HERE/mlserver/model-settings.json" "$OUT/model/model.joblib" "$dir/$MODEL/"
    # Two inference workers: as many as Pier's compute threads on this 2-core machine.
    # debug=false: no access log line per request (Pier writes none); metrics stay on, as
    # Pier's and Triton's do, with their files under out/ (MLServer writes to its cwd).
    printf '{"host": "127.0.0.1", "http_port": %s, "grpc_port": %s, "metrics_port": %s, "parallel_workers": 2, "debug": false, "metrics_dir": "%s"}\n' \
        "$http" "$grpc" "$metrics" "$dir/metrics" >"$dir/settings.json"
    start mlserver env -C "$dir" "$VENV/bin/mlserver" start "$dir"
    wait_http "http://127.0.0.1:$http/v2/models/$MODEL/ready" 120 || { not_ready mlserver; stop_server; return; }
    # perf_analyzer reads the model's Triton config (GET /v2/models/{m}/config, gRPC
    # ModelConfig), which MLServer does not serve: it stops with "failed to get model config".
    for c in $CONCURRENCY; do
        cell MLServer perf_analyzer "v2 REST JSON" "$c" - "cannot run: MLServer has no /v2/models/{m}/config (perf_analyzer: failed to get model config)"
        cell MLServer perf_analyzer "v2 gRPC" "$c" - "cannot run: MLServer has no ModelConfig RPC (perf_analyzer: failed to get model config)"
    done
    run_wrk MLServer "$http"
    run_loadtest MLServer v2-json "$http"
    run_loadtest MLServer v2-grpc "$grpc"
    stop_server
}

bench_fastapi() {
    local http
    http=$(free_port)
    start fastapi env PEER_MODEL="$OUT/model/model.onnx" PEER_MODEL_NAME="$MODEL" \
        "$VENV/bin/uvicorn" fastapi_server:app --app-dir "$HERE" --host 127.0.0.1 --port "$http" \
        --workers 2 --no-access-log --log-level warning
    wait_http "http://127.0.0.1:$http/v2/health/ready" 60 || { not_ready fastapi; stop_server; return; }
    run_perf_analyzer FastAPI http "$http"
    run_wrk FastAPI "$http"
    run_loadtest FastAPI v2-json "$http"
    stop_server
}

TRITON_VERSION="not run"
for s in $SERVERS; do
    log "server: $s"
    "bench_$s"
done

# ---------------------------------------------------------------- report
DATE="$(date -u +%F)"
RESULT="$HERE/results-$DATE.md"
{
    echo "# Peer comparison, $DATE"
    echo
    echo "\`benches/peers/run.sh\` (PEERS_SECONDS=$SECS per wrk / pier loadtest cell, perf_analyzer 3 x ${PA_WINDOW_MS} ms windows)."
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average (1, 5, 15 min) before the run $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "The load generator runs on the same cores as the server it drives."
    echo "Pier at $(git -C "$ROOT" rev-parse --short HEAD) ($PIER; release build, tract backend, batching off, compute threads = cores);"
    echo "Triton $TRITON_VERSION (nvidia-pytriton 0.7.0 wheel, Python backend + onnxruntime, 2 instances, no dynamic batching);"
    echo "MLServer with mlserver-sklearn, 2 parallel workers; FastAPI under uvicorn, 2 workers;"
    echo "$("$VENV/bin/pip" list --disable-pip-version-check 2>/dev/null | awk '$1 ~ /^(mlserver|mlserver-sklearn|fastapi|uvicorn|onnxruntime|scikit-learn|nvidia-pytriton)$/ {printf "%s %s; ", $1, $2}')"
    if [ "$LOADTEST" = 1 ]; then
        echo "pier loadtest: $LOADTEST_BIN loadtest (closed loop, --warmup 1, --duration $SECS)."
    else
        echo "**pier loadtest: skipped** (\`pier loadtest --help\` fails in the Pier built here; the cells appear once it is merged)."
    fi
    echo "perf_analyzer from tritonclient $("$CVENV/bin/pip" show tritonclient 2>/dev/null | awk '/^Version/ {print $2}'); $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2)."
    echo
    "$VENV/bin/python" "$HERE/report.py" "$CELLS"
} >"$RESULT"
cat "$RESULT"
echo
echo "written: $RESULT" >&2
