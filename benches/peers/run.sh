#!/usr/bin/env bash
# Peer comparison, one command: Pier against Triton (Python backend + onnxruntime), Seldon
# MLServer (mlserver-sklearn), a hand-written FastAPI + uvicorn + onnxruntime server, and the
# zero-work limits (a hyper-util HTTP server and a tonic gRPC server with Pier's listener
# settings that answer Pier's own response to the request without doing anything), all on
# 127.0.0.1, driven by the same load generators with one-row v2 requests.
#
# Models (PEERS_MODELS):
#   mlp  scikit-learn MLPClassifier on iris (make_model.py: the ONNX export, and the joblib
#        estimator for MLServer), X FP32 [1, 4];
#   gbt  fixtures/onnx/cancer-gbc100: scikit-learn GradientBoostingClassifier, 100 trees of
#        depth 3, 30 features, exported without ZipMap, X FP32 [1, 30].
# Servers (PEERS_SERVERS; each runs alone with its load generator, one after another):
#   pier        Pier, default build (tract, ONNX tree ensembles on the native kernel);
#   pier-ort    Pier built with `--features pier/ort`, PIER_BACKEND=ort (onnxruntime from the
#               peers venv's wheel);
#               both with batching on: PIER_MAX_BATCH_SIZE=$PEERS_PIER_BATCH (64),
#               PIER_MAX_QUEUE_DELAY_US=0 (Triton's default delay);
#   triton      Triton 2.51 from the nvidia-pytriton 0.7.0 wheel, Python backend running
#               onnxruntime (triton/model.py), 2 instances, dynamic batching (delay 0);
#   mlserver    MLServer + mlserver-sklearn, 2 workers (mlp only: it runs the estimator);
#   fastapi     FastAPI + uvicorn + onnxruntime, 2 workers (HTTP only);
#   limit-http  benches/src/bin/http_limit.rs answering Pier's v2 JSON answer, byte for byte;
#   limit-grpc  benches/src/bin/grpc_limit.rs answering Pier's ModelInferResponse.
# Load generators (PEERS_GENERATORS), at each concurrency of PEERS_CONCURRENCY:
#   loadtest       `pier loadtest` (closed loop): v2 REST JSON and v2 gRPC, the request from a
#                  file (the same row for every server); the summary tables use it;
#   wrk            wrk (Debian): v2 REST JSON, one thread, c keep-alive connections;
#   perf_analyzer  tritonclient 2.51's: v2 REST JSON and gRPC, random rows (it reads the
#                  model's Triton config first: MLServer and the limits cannot serve it).
#
# Usage: benches/peers/run.sh
#   PEERS_SECONDS=3 (per wrk / pier loadtest cell, after 1 s of warm-up),
#   PEERS_CONCURRENCY="1 8 64", PEERS_MODELS="mlp gbt",
#   PEERS_SERVERS="pier pier-ort triton mlserver fastapi limit-http limit-grpc",
#   PEERS_GENERATORS="loadtest wrk perf_analyzer", PEERS_PIER_BATCH=64 (0: batching off),
#   PEERS_PA_WINDOW_MS=1500 (perf_analyzer: 3 windows of this per cell).
#   Binaries (each skips its build): PIER_BIN (default build), PIER_ORT_BIN (built with
#   `--features pier/ort`), HTTP_LIMIT_BIN, GRPC_LIMIT_BIN, PIER_LOADTEST_BIN (the `pier`
#   whose `loadtest` drives the servers; default PIER_BIN's). Without them the script runs
#   `cargo build --release --workspace --bin pier --bin http_limit --bin grpc_limit` (and, for
#   pier-ort, `cargo build --release --workspace --bin pier --features pier/ort`) and copies
#   what it needs to out/bin at once.
#   ORT_DYLIB_PATH: the ONNX Runtime library for pier-ort (default: the peers venv's wheel).
# Writes benches/peers/results-<date>.md and prints it. Work files: benches/peers/out/.
# Every cell records the server's CPU seconds (all processes of its session) and the load
# generator's beside the wall seconds: on a shared machine, CPU well under cores x wall means
# the cell was starved by something else.
# Needs python3 (3.11 verified), cargo, curl, and apt-get (as root or with sudo) for wrk and
# libb64-0d if they are missing. Every server it started is stopped on exit, error or Ctrl-C.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SECS="${PEERS_SECONDS:-3}"
CONCURRENCY="${PEERS_CONCURRENCY:-1 8 64}"
MODELS="${PEERS_MODELS:-mlp gbt}"
SERVERS="${PEERS_SERVERS:-pier pier-ort triton mlserver fastapi limit-http limit-grpc}"
GENERATORS="${PEERS_GENERATORS:-loadtest wrk perf_analyzer}"
PIER_BATCH="${PEERS_PIER_BATCH:-64}"
PA_WINDOW_MS="${PEERS_PA_WINDOW_MS:-1500}"
OUT="$HERE/out"
VENV="$HERE/.venv"
CVENV="$HERE/.venv-client"

log() { printf '\n== %s\n' "$*" >&2; }
die() {
    echo "run.sh: $*" >&2
    exit 1
}
has() { # has WORD LIST
    case " $2 " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

for m in $MODELS; do case $m in mlp | gbt) ;; *) die "unknown model '$m' in PEERS_MODELS (mlp, gbt)" ;; esac; done
for s in $SERVERS; do
    case $s in pier | pier-ort | triton | mlserver | fastapi | limit-http | limit-grpc) ;;
    *) die "unknown server '$s' in PEERS_SERVERS (pier pier-ort triton mlserver fastapi limit-http limit-grpc)" ;;
    esac
done
for g in $GENERATORS; do case $g in loadtest | wrk | perf_analyzer) ;; *) die "unknown generator '$g' in PEERS_GENERATORS (loadtest wrk perf_analyzer)" ;; esac; done

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

# wait_line FILE TEXT SECONDS: polls until FILE has TEXT; false on timeout or a dead server.
wait_line() {
    local file=$1 text=$2 limit=$3 t=0
    while [ "$t" -lt $((limit * 10)) ]; do
        grep -q "$text" "$file" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
        t=$((t + 1))
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# session_cpu SID: user + system CPU seconds of every live process of a session, with the
# CPU of its waited-for children (a server's workers).
session_cpu() {
    local sid=$1 hz
    hz=$(getconf CLK_TCK)
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v sid="$sid" -v hz="$hz" '{
        sub(/^.*\) /, "");              # fields after the command: state ppid pgrp session ...
        if ($4 == sid) cpu += $12 + $13 + $14 + $15
    } END { printf "%.2f", cpu / hz }'
}

# ---------------------------------------------------------------- setup
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED_AT="$(date -u '+%F %H:%M UTC')"
mkdir -p "$OUT"
rm -rf "${OUT:?}"/*
mkdir -p "$OUT/bin"

log "system packages (wrk, libb64-0d for perf_analyzer)"
need=()
has wrk "$GENERATORS" && ! command -v wrk >/dev/null && need+=(wrk)
has perf_analyzer "$GENERATORS" && ! ldconfig -p | grep -q 'libb64\.so\.0d' && need+=(libb64-0d)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y -q "${need[@]}" || { $sudo apt-get update -q && $sudo apt-get install -y -q "${need[@]}"; } ||
        die "cannot install ${need[*]} (apt-get failed); install them or drop the generator from PEERS_GENERATORS"
fi

log "Python venvs ($VENV for the servers, $CVENV for perf_analyzer and the gRPC capture)"
install_venv() {
    local venv=$1 requirements=$2
    local stamp="$venv/.installed-$(sha256sum "$requirements" | cut -c1-16)"
    [ -f "$stamp" ] && return 0
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" ||
        die "pip install -r $requirements into $venv failed (see above)"
    touch "$stamp"
}
install_venv "$VENV" "$HERE/requirements-servers.txt"
install_venv "$CVENV" "$HERE/requirements-client.txt"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
CSITE="$("$CVENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PERF_ANALYZER="$CVENV/bin/perf_analyzer"
PA_LIBS="$CSITE/nvidia/cuda_runtime/lib"

# ---------------------------------------------------------------- models and requests
# out/<model>/: model.onnx, request.json (one v2 JSON row: pier loadtest's --input-file and
# wrk's body), features (perf_analyzer's --shape); mlp also model.joblib (MLServer).
for m in $MODELS; do
    mkdir -p "$OUT/$m"
    case $m in
    mlp)
        log "model mlp: MLPClassifier on iris -> $OUT/mlp"
        "$VENV/bin/python" "$HERE/make_model.py" "$OUT/mlp"
        ;;
    gbt)
        log "model gbt: fixtures/onnx/cancer-gbc100 -> $OUT/gbt"
        cp "$ROOT/fixtures/onnx/cancer-gbc100/model.onnx" "$OUT/gbt/model.onnx"
        ;;
    esac
    # The request: the first row of the fixture's case (gbt) or iris' first row (mlp).
    "$VENV/bin/python" - "$m" "$ROOT" "$OUT/$m" <<'PYEOF'
import json, sys
m, root, out = sys.argv[1:4]
if m == "gbt":
    case = json.load(open(f"{root}/fixtures/onnx/cancer-gbc100/case.json"))
    x = case["inputs"]["X"]
    row = x["data"][: x["shape"][1]]
else:
    row = [5.1, 3.5, 1.4, 0.2]
request = {"inputs": [{"name": "X", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
open(f"{out}/request.json", "w").write(json.dumps(request, separators=(",", ":")))
open(f"{out}/features", "w").write(str(len(row)))
PYEOF
done

# ---------------------------------------------------------------- binaries
# Copied at once: a shared CARGO_TARGET_DIR's release/ is replaced by whoever builds next,
# and the binaries measured must be this tree's.
RELEASE="${CARGO_TARGET_DIR:-$ROOT/target}/release"
PIER="${PIER_BIN:-}"
PIER_ORT="${PIER_ORT_BIN:-}"
HTTP_LIMIT="${HTTP_LIMIT_BIN:-}"
GRPC_LIMIT="${GRPC_LIMIT_BIN:-}"
need_default=0
[ -n "$PIER" ] || need_default=1
{ has limit-http "$SERVERS" && [ -z "$HTTP_LIMIT" ]; } && need_default=1
{ has limit-grpc "$SERVERS" && [ -z "$GRPC_LIMIT" ]; } && need_default=1
if [ "$need_default" = 1 ]; then
    log "build: cargo build --release --workspace --bin pier --bin http_limit --bin grpc_limit"
    (cd "$ROOT" && cargo build --release --workspace --bin pier --bin http_limit --bin grpc_limit) || die "the release build failed"
    [ -n "$PIER" ] || { cp "$RELEASE/pier" "$OUT/bin/pier" && PIER="$OUT/bin/pier"; }
    [ -n "$HTTP_LIMIT" ] || { cp "$RELEASE/http_limit" "$OUT/bin/http_limit" && HTTP_LIMIT="$OUT/bin/http_limit"; }
    [ -n "$GRPC_LIMIT" ] || { cp "$RELEASE/grpc_limit" "$OUT/bin/grpc_limit" && GRPC_LIMIT="$OUT/bin/grpc_limit"; }
fi
if has pier-ort "$SERVERS" && [ -z "$PIER_ORT" ]; then
    log "build: cargo build --release --workspace --bin pier --features pier/ort"
    (cd "$ROOT" && cargo build --release --workspace --bin pier --features pier/ort) || die "the ort release build failed"
    cp "$RELEASE/pier" "$OUT/bin/pier-ort"
    PIER_ORT="$OUT/bin/pier-ort"
fi
[ -x "$PIER" ] || die "no Pier binary at '$PIER' (PIER_BIN)"
if has pier-ort "$SERVERS"; then
    [ -x "$PIER_ORT" ] || die "no ort-enabled Pier binary at '$PIER_ORT' (PIER_ORT_BIN)"
    if [ -z "${ORT_DYLIB_PATH:-}" ]; then
        ORT_DYLIB_PATH="$(ls "$SITE"/onnxruntime/capi/libonnxruntime.so.1.* 2>/dev/null | head -n1)"
    fi
    [ -f "$ORT_DYLIB_PATH" ] || die "no ONNX Runtime library for pier-ort (ORT_DYLIB_PATH='$ORT_DYLIB_PATH')"
    export ORT_DYLIB_PATH
fi
if has limit-http "$SERVERS"; then [ -x "$HTTP_LIMIT" ] || die "no http_limit binary at '$HTTP_LIMIT' (HTTP_LIMIT_BIN)"; fi
if has limit-grpc "$SERVERS"; then [ -x "$GRPC_LIMIT" ] || die "no grpc_limit binary at '$GRPC_LIMIT' (GRPC_LIMIT_BIN)"; fi
# The load generator `pier loadtest` comes from the same build unless PIER_LOADTEST_BIN names
# another.
LOADTEST_BIN="${PIER_LOADTEST_BIN:-$PIER}"
if has loadtest "$GENERATORS" && ! "$LOADTEST_BIN" loadtest --help >/dev/null 2>&1; then
    die "\`$LOADTEST_BIN loadtest --help\` fails: set PIER_LOADTEST_BIN or drop loadtest from PEERS_GENERATORS"
fi

CELLS="$OUT/cells.tsv"
: >"$CELLS"
# cell SERVER MODEL GENERATOR PROTOCOL C SOURCE [REASON [WALL SERVER_CPU GENERATOR_CPU]]
cell() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" "${8:-}" "${9:-}" "${10:-}" >>"$CELLS"
}

# ---------------------------------------------------------------- load generators
# measure CMD...: runs CMD, sets MEASURED="WALL SERVER_CPU GENERATOR_CPU" (seconds; the
# server's session CPU over the run, the generator's user + system); returns CMD's status.
measure() {
    local before after t rc=0
    before=$(session_cpu "$SERVER_PID")
    TIMEFORMAT='%R %U %S'
    t=$({ time "$@" >/dev/null 2>&1; } 2>&1) || rc=$?
    after=$(session_cpu "$SERVER_PID")
    MEASURED=$(echo "$t $before $after" | awk '{printf "%s %.2f %.2f", $1, $5 - $4, $2 + $3}')
    return $rc
}

# run_perf_analyzer SERVER MODEL http|grpc PORT
run_perf_analyzer() {
    local server=$1 model=$2 proto=$3 port=$4 c label format=()
    has perf_analyzer "$GENERATORS" || return 0
    if [ "$proto" = http ]; then
        label="v2 REST JSON"
        format=(--input-tensor-format json --output-tensor-format json)
    else
        label="v2 gRPC"
    fi
    for c in $CONCURRENCY; do
        local f="$OUT/pa-$server-$model-$proto-$c.csv"
        echo "perf_analyzer $server $model $label c=$c" >&2
        if measure sh -c '"$@" >"$0" 2>&1' "$f.log" env LD_LIBRARY_PATH="$PA_LIBS" timeout $((PA_WINDOW_MS * 10 / 1000 + 30)) "$PERF_ANALYZER" \
            -m "$model" -u "127.0.0.1:$port" -i "$proto" "${format[@]}" --shape "X:$(cat "$OUT/$model/features")" -b 1 \
            --concurrency-range "$c" -p "$PA_WINDOW_MS" --max-trials 3 --stability-percentage 999 -f "$f"; then
            cell "$server" "$model" perf_analyzer "$label" "$c" "$f" "" $MEASURED
        else
            cell "$server" "$model" perf_analyzer "$label" "$c" - "perf_analyzer failed: $(grep -m1 -i error "$f.log" | tr '\t' ' ' | cut -c1-120)"
        fi
    done
}

# run_wrk SERVER MODEL HTTP_PORT
run_wrk() {
    local server=$1 model=$2 port=$3 c url="http://127.0.0.1:$3/v2/models/$2/infer"
    has wrk "$GENERATORS" || return 0
    PEERS_BODY="$OUT/$model/request.json" wrk -t1 -c8 -d1s -s "$HERE/v2_infer.lua" "$url" >/dev/null 2>&1 || true # warm-up
    for c in $CONCURRENCY; do
        local f="$OUT/wrk-$server-$model-$c.txt"
        echo "wrk $server $model c=$c" >&2
        if measure sh -c 'PEERS_BODY="$1" timeout "$2" wrk -t1 -c"$3" -d"$4s" --timeout 10s -s "$5" "$6" >"$7" 2>&1' \
            wrk "$OUT/$model/request.json" $((SECS + 30)) "$c" "$SECS" "$HERE/v2_infer.lua" "$url" "$f"; then
            cell "$server" "$model" wrk "v2 REST JSON" "$c" "$f" "" $MEASURED
        else
            cell "$server" "$model" wrk "v2 REST JSON" "$c" - "wrk failed: $(tail -n1 "$f" | tr '\t' ' ' | cut -c1-120)"
        fi
    done
}

# run_loadtest SERVER MODEL v2-json|v2-grpc PORT
run_loadtest() {
    local server=$1 model=$2 proto=$3 port=$4 c label
    has loadtest "$GENERATORS" || return 0
    case $proto in v2-json) label="v2 REST JSON" ;; *) label="v2 gRPC" ;; esac
    for c in $CONCURRENCY; do
        local f="$OUT/loadtest-$server-$model-$proto-$c.json"
        echo "pier loadtest $server $model $proto c=$c" >&2
        if measure sh -c '"$@" 2>"$0"' "$f.log" timeout $((SECS + 60)) "$LOADTEST_BIN" loadtest \
            --url "http://127.0.0.1:$port" --protocol "$proto" --model "$model" \
            --input-file "$OUT/$model/request.json" --concurrency "$c" --duration "$SECS" --warmup 1 \
            --json "$f" -q; then
            cell "$server" "$model" "pier loadtest" "$label" "$c" "$f" "" $MEASURED
        else
            cell "$server" "$model" "pier loadtest" "$label" "$c" - "pier loadtest failed: $(tail -n1 "$f.log" | tr '\t' ' ' | cut -c1-120)"
        fi
    done
}

# skip SERVER MODEL REASON: records one line for a server that cannot run a model.
skip() {
    echo "$1 $2: $3" >&2
    cell "$1" "$2" - - - - "$3"
}

# ---------------------------------------------------------------- servers
# pier_up NAME BINARY MODEL [ENV_JSON_EXTRA]: starts `pier serve` with MODEL deployed (batching
# as PIER_BATCH), sets PIER_HTTP / PIER_GRPC; false if it did not become ready.
pier_up() {
    local name=$1 bin=$2 model=$3 extra=${4:-} http admin grpc data="$OUT/$1-$3-data" env
    http=$(free_port) admin=$(free_port) grpc=$(free_port)
    "$bin" models push "$model" "$OUT/$model/model.onnx" --runtime onnx --data-dir "$data" >"$OUT/$name-$model-push.log" 2>&1 ||
        { echo "pier models push failed: $(tail -n1 "$OUT/$name-$model-push.log")" >&2; return 1; }
    start "$name-$model" "$bin" serve --data-dir "$data" --http "127.0.0.1:$http" --admin "127.0.0.1:$admin" --grpc "127.0.0.1:$grpc"
    wait_http "http://127.0.0.1:$http/v2/health/live" 30 || return 1
    env="\"PIER_MAX_BATCH_SIZE\":\"$PIER_BATCH\",\"PIER_MAX_QUEUE_DELAY_US\":\"0\"$extra"
    api() {
        curl -sS --fail-with-body "http://127.0.0.1:$admin/" -H "X-Amz-Target: SageMaker.$1" \
            -H 'Content-Type: application/x-amz-json-1.1' -d "$2" >>"$OUT/$name-$model-api.log" 2>&1 ||
            { echo "$name $1 failed: $(tail -c 300 "$OUT/$name-$model-api.log")" >&2; return 1; }
    }
    api CreateModel "{\"ModelName\":\"$model\",\"PrimaryContainer\":{\"Image\":\"onnx\",\"ModelDataUrl\":\"pier://$model/1\",\"Environment\":{$env}}}" || return 1
    api CreateEndpointConfig "{\"EndpointConfigName\":\"$model\",\"ProductionVariants\":[{\"VariantName\":\"main\",\"ModelName\":\"$model\",\"InitialVariantWeight\":1}]}" || return 1
    api CreateEndpoint "{\"EndpointName\":\"$model\",\"EndpointConfigName\":\"$model\"}" || return 1
    wait_http "http://127.0.0.1:$http/v2/models/$model/ready" 60 || return 1
    PIER_HTTP=$http PIER_GRPC=$grpc
}

# capture_answers MODEL: Pier's answers to the model's request (the v2 JSON body and the gRPC
# ModelInferResponse), which the limits send back. Needs a running Pier (PIER_HTTP/PIER_GRPC).
capture_answers() {
    local model=$1
    curl -sS --fail-with-body "http://127.0.0.1:$PIER_HTTP/v2/models/$model/infer" -H 'Content-Type: application/json' \
        --data-binary @"$OUT/$model/request.json" -o "$OUT/$model/answer.json" || return 1
    # The request as pier loadtest sends it over gRPC (raw_input_contents), Pier's answer saved.
    "$CVENV/bin/python" "$ROOT/benches/grpc_answer.py" "127.0.0.1:$PIER_GRPC" "$model" "" \
        "$OUT/$model/request.json" "$OUT/$model/answer.pb" || return 1
    echo "Pier's answers for $model: $(wc -c <"$OUT/$model/answer.json") bytes v2 JSON, $(wc -c <"$OUT/$model/answer.pb") bytes ModelInferResponse" >&2
}

# bench_pier / bench_pier-ort MODEL
bench_pier_as() {
    local server=$1 label=$2 bin=$3 model=$4 extra=${5:-}
    if ! pier_up "$server" "$bin" "$model" "$extra"; then
        skip "$label" "$model" "server did not become ready (see out/$server-$model.log)"
        stop_server
        return
    fi
    # The limits answer what the default build answers (both builds answer the same bytes).
    if [ "$server" = pier ] && [ ! -f "$OUT/$model/answer.pb" ]; then capture_answers "$model" || echo "capturing Pier's answers failed" >&2; fi
    run_loadtest "$label" "$model" v2-json "$PIER_HTTP"
    run_loadtest "$label" "$model" v2-grpc "$PIER_GRPC"
    run_wrk "$label" "$model" "$PIER_HTTP"
    run_perf_analyzer "$label" "$model" http "$PIER_HTTP"
    run_perf_analyzer "$label" "$model" grpc "$PIER_GRPC"
    stop_server
}
bench_pier() { bench_pier_as pier Pier "$PIER" "$1"; }
bench_pier-ort() { bench_pier_as pier-ort "Pier ort" "$PIER_ORT" "$1" ',"PIER_BACKEND":"ort"'; }

TRITON_VERSION="not run"
bench_triton() {
    local model=$1 http grpc metrics dist="$SITE/pytriton/tritonserver" server="$OUT/tritonserver" repo="$OUT/triton-repo-$1"
    http=$(free_port) grpc=$(free_port) metrics=$(free_port)
    # pytriton's wheel ships the server, the Python backend and one stub per Python version;
    # lay them out as Triton expects (pytriton does the same at start).
    if [ ! -d "$server" ]; then
        mkdir -p "$server"
        cp -r "$dist/bin" "$dist/backends" "$dist/caches" "$server/"
        local pyver
        pyver="$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        cp "$dist/python_backend_stubs/$pyver/triton_python_backend_stub" "$server/backends/python/"
    fi
    mkdir -p "$repo/$model/1"
    cp "$HERE/triton/$model/config.pbtxt" "$OUT/$model/model.onnx" "$repo/$model/"
    cp "$HERE/triton/model.py" "$repo/$model/1/"
    # The stub finds numpy and onnxruntime through the venv's python3 first on PATH.
    start "triton-$model" env PATH="$VENV/bin:$PATH" LD_LIBRARY_PATH="$SITE/nvidia_pytriton.libs" \
        "$server/bin/tritonserver" --model-repository "$repo" --backend-directory "$server/backends" \
        --http-address 127.0.0.1 --grpc-address 127.0.0.1 --http-port "$http" --grpc-port "$grpc" \
        --metrics-port "$metrics" --allow-gpu-metrics false
    if ! wait_http "http://127.0.0.1:$http/v2/models/$model/ready" 120; then
        skip Triton "$model" "server did not become ready (see out/triton-$model.log)"
        stop_server
        return
    fi
    TRITON_VERSION="$(curl -s "http://127.0.0.1:$http/v2" | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["version"])')"
    run_loadtest Triton "$model" v2-json "$http"
    run_loadtest Triton "$model" v2-grpc "$grpc"
    run_wrk Triton "$model" "$http"
    run_perf_analyzer Triton "$model" http "$http"
    run_perf_analyzer Triton "$model" grpc "$grpc"
    stop_server
}

bench_mlserver() {
    local model=$1 http grpc metrics dir="$OUT/mlserver-$1" c
    if [ "$model" != mlp ]; then
        skip MLServer "$model" "not run: MLServer serves the scikit-learn estimator (mlserver-sklearn); only mlp has one here"
        return
    fi
    http=$(free_port) grpc=$(free_port) metrics=$(free_port)
    mkdir -p "$dir/$model"
    cp "$HERE/mlserver/model-settings.json" "$OUT/$model/model.joblib" "$dir/$model/"
    # Two inference workers: as many as Pier's compute threads on this 2-core machine.
    # debug=false: no access log line per request (Pier writes none); metrics stay on, as
    # Pier's and Triton's do, with their files under out/ (MLServer writes to its cwd).
    printf '{"host": "127.0.0.1", "http_port": %s, "grpc_port": %s, "metrics_port": %s, "parallel_workers": 2, "debug": false, "metrics_dir": "%s"}\n' \
        "$http" "$grpc" "$metrics" "$dir/metrics" >"$dir/settings.json"
    start "mlserver-$model" env -C "$dir" "$VENV/bin/mlserver" start "$dir"
    if ! wait_http "http://127.0.0.1:$http/v2/models/$model/ready" 120; then
        skip MLServer "$model" "server did not become ready (see out/mlserver-$model.log)"
        stop_server
        return
    fi
    run_loadtest MLServer "$model" v2-json "$http"
    run_loadtest MLServer "$model" v2-grpc "$grpc"
    run_wrk MLServer "$model" "$http"
    # perf_analyzer reads the model's Triton config (GET /v2/models/{m}/config, gRPC
    # ModelConfig), which MLServer does not serve: it stops with "failed to get model config".
    if has perf_analyzer "$GENERATORS"; then
        for c in $CONCURRENCY; do
            cell MLServer "$model" perf_analyzer "v2 REST JSON" "$c" - "cannot run: MLServer has no /v2/models/{m}/config"
            cell MLServer "$model" perf_analyzer "v2 gRPC" "$c" - "cannot run: MLServer has no ModelConfig RPC"
        done
    fi
    stop_server
}

bench_fastapi() {
    local model=$1 http
    http=$(free_port)
    start "fastapi-$model" env PEER_MODEL="$OUT/$model/model.onnx" PEER_MODEL_NAME="$model" \
        "$VENV/bin/uvicorn" fastapi_server:app --app-dir "$HERE" --host 127.0.0.1 --port "$http" \
        --workers 2 --no-access-log --log-level warning
    if ! wait_http "http://127.0.0.1:$http/v2/health/ready" 60; then
        skip FastAPI "$model" "server did not become ready (see out/fastapi-$model.log)"
        stop_server
        return
    fi
    run_loadtest FastAPI "$model" v2-json "$http"
    run_wrk FastAPI "$model" "$http"
    run_perf_analyzer FastAPI "$model" http "$http"
    stop_server
}

# The limits answer Pier's own answer to the request; it is captured while Pier runs (or
# here, with a Pier started for it, when the pier server is not in PEERS_SERVERS).
ensure_answers() {
    local model=$1
    [ -f "$OUT/$model/answer.pb" ] && return 0
    pier_up pier-capture "$PIER" "$model" || { stop_server; return 1; }
    capture_answers "$model" || { stop_server; return 1; }
    stop_server
}

bench_limit-http() {
    local model=$1 port
    ensure_answers "$model" || { skip "limit (hyper)" "$model" "no answer of Pier's to send back (Pier did not start)"; return; }
    port=$(free_port)
    start "limit-http-$model" "$HTTP_LIMIT" "127.0.0.1:$port" "@$OUT/$model/answer.json" application/json
    if ! wait_line "$OUT/limit-http-$model.log" "listening on" 10; then
        skip "limit (hyper)" "$model" "http_limit did not start (see out/limit-http-$model.log)"
        stop_server
        return
    fi
    run_loadtest "limit (hyper)" "$model" v2-json "$port"
    run_wrk "limit (hyper)" "$model" "$port"
    stop_server
}

bench_limit-grpc() {
    local model=$1 port
    ensure_answers "$model" || { skip "limit (tonic)" "$model" "no answer of Pier's to send back (Pier did not start)"; return; }
    port=$(free_port)
    start "limit-grpc-$model" "$GRPC_LIMIT" "127.0.0.1:$port" "$OUT/$model/answer.pb"
    if ! wait_line "$OUT/limit-grpc-$model.log" "listening on" 10; then
        skip "limit (tonic)" "$model" "grpc_limit did not start (see out/limit-grpc-$model.log)"
        stop_server
        return
    fi
    run_loadtest "limit (tonic)" "$model" v2-grpc "$port"
    stop_server
}

for m in $MODELS; do
    for s in $SERVERS; do
        log "model $m, server $s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
        "bench_$s" "$m"
    done
done

# ---------------------------------------------------------------- report
DATE="$(date -u +%F)"
RESULT="$HERE/results-$DATE.md"
{
    echo "# Peer comparison, $STARTED_AT"
    echo
    echo "\`benches/peers/run.sh\`: PEERS_MODELS=\"$MODELS\" PEERS_SERVERS=\"$SERVERS\" PEERS_GENERATORS=\"$GENERATORS\" PEERS_CONCURRENCY=\"$CONCURRENCY\" PEERS_SECONDS=$SECS (per wrk / pier loadtest cell, after 1 s of warm-up; perf_analyzer 3 x ${PA_WINDOW_MS} ms windows)."
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average (1, 5, 15 min) before the run $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg); finished $(date -u '+%H:%M UTC')."
    echo "The load generator runs on the same cores as the server it drives."
    if [ -n "$PIER_ORT" ] && cmp -s "$PIER" "$PIER_ORT"; then
        same=" (one binary, built with the ort feature: the \"Pier\" rows run it with PIER_BACKEND unset, i.e. the default build's tract + native-tree path)"
    else
        same=""
    fi
    echo "Pier at $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)'): default build $PIER; ort build ${PIER_ORT:-not run} (ONNX Runtime $(basename "${ORT_DYLIB_PATH:-none}"))$same; batching PIER_MAX_BATCH_SIZE=$PIER_BATCH, PIER_MAX_QUEUE_DELAY_US=0; compute threads = cores."
    echo "Triton $TRITON_VERSION (nvidia-pytriton 0.7.0 wheel, Python backend + onnxruntime, 2 instances, dynamic batching, delay 0);"
    echo "MLServer with mlserver-sklearn, 2 parallel workers; FastAPI under uvicorn, 2 workers; limits: http_limit (hyper-util) and grpc_limit (tonic) answering Pier's captured answers."
    echo "$("$VENV/bin/pip" list --disable-pip-version-check 2>/dev/null | awk '$1 ~ /^(mlserver|mlserver-sklearn|fastapi|uvicorn|onnxruntime|scikit-learn|nvidia-pytriton)$/ {printf "%s %s; ", $1, $2}')"
    echo "Load generators: pier loadtest ($LOADTEST_BIN; closed loop, --warmup 1, --duration $SECS, request from --input-file; gRPC 8 clients a channel); perf_analyzer from tritonclient $("$CVENV/bin/pip" show tritonclient 2>/dev/null | awk '/^Version/ {print $2}'); $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2)."
    echo
    "$VENV/bin/python" "$HERE/report.py" "$CELLS"
} >"$RESULT"
cat "$RESULT"
echo
echo "written: $RESULT" >&2
