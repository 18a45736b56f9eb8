#!/usr/bin/env bash
# The cost of `pier serve --credentials` at c=64 on the demo: the same closed-loop load
# (pier loadtest, SageMaker InvokeEndpoint, one CSV row) against a server without
# credentials, one checking a SigV4 signature on every request, and one checking a bearer
# token. The SigV4 run replays one botocore-made signature (valid for the 15-minute skew):
# every request is verified in full (signed headers, body hash, HMAC) and passes. Rounds
# interleave the modes. Each run reports throughput and the server's CPU time per answered
# request (utime + stime of the server process over the measured 10 s, after a 2 s warm-up),
# which the other work on a shared machine disturbs less than throughput; the last lines are
# the means per mode and their ratios to no credentials.
#
# MODES (default "none sigv4 bearer") may add `unchecked`: the SigV4 run's exact requests
# (same Authorization and X-Amz-Date headers) sent to a server without credentials, which
# ignores them. It separates what the two extra headers cost on the wire and in HTTP parsing
# from what checking them costs.
#
# PIN=1 puts the server on CPU 0 and the load generator on CPU 1 (`taskset`): the server is
# then the bottleneck on a core of its own, so throughput follows its cost a request without
# the two processes' scheduling on shared cores (which spreads rounds by 10-25 % on a 2-core
# VM).
#
# PERF=DIR records the server's measured 10 s with `perf record -e cpu-clock -g` into
# DIR/perf.MODE.ROUND, beside the requests it answered (DIR/requests.MODE.ROUND), and ends by
# printing the server's CPU-µs a request by function for each mode against the first one
# (`benches/perf_by_function.py`). Single rounds of throughput spread by more than a few-µs
# change on a shared VM; the per-function accounting tells where a difference lies. Needs
# `perf` (linux-perf) and permission to record another process.
#
# usage: [MODES=...] [PIN=1] [PERF=DIR] benches/auth_overhead.sh [PIER_BINARY] [ROUNDS]   (default target/release/pier, 2)
# needs: python3 with botocore (the tests' .venv has it; or PYTHON=...).
# Build first: cargo build --release --workspace
set -euo pipefail
cd "$(dirname "$0")/.."
PIER=${1:-target/release/pier}
ROUNDS=${2:-2}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '5.1,3.5,1.4,0.2\n' > "$WORK/body.csv"
printf '[bench]\naws_access_key_id = AKIABENCH\naws_secret_access_key = bench-secret\npier_token = bench-token\n' > "$WORK/credentials"

SERVER_PIN=() LOAD_PIN=()
if [ -n "${PIN:-}" ]; then SERVER_PIN=(taskset -c 0) LOAD_PIN=(taskset -c 1); fi

run() {
    local mode=$1 round=$2 extra=() headers=()
    case $mode in none | unchecked) ;; *) extra=(--credentials "$WORK/credentials") ;; esac
    rm -rf "$WORK/data"
    "${SERVER_PIN[@]}" "$PIER" serve --demo --data-dir "$WORK/data" --http 127.0.0.1:0 --admin 127.0.0.1:0 \
        --grpc 127.0.0.1:0 "${extra[@]}" > "$WORK/serve.out" 2>/dev/null &
    local pid=$!
    for _ in $(seq 1 300); do grep -q "pier: serving" "$WORK/serve.out" && break; sleep 0.2; done
    local http
    http=$(grep -o "http=[^ ]*" "$WORK/serve.out" | head -1 | cut -d= -f2)
    [ -n "$http" ] || { echo "$mode round $round: the server did not start in 60 s" >&2; exit 1; }
    if [ "$mode" = sigv4 ] || [ "$mode" = unchecked ]; then
        mapfile -t signed < <("$PY" - "http://$http/endpoints/demo/invocations" "$WORK/body.csv" <<'PYEOF'
import sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
req = AWSRequest(method="POST", url=sys.argv[1], data=open(sys.argv[2], "rb").read(),
                 headers={"Content-Type": "text/csv"})
SigV4Auth(Credentials("AKIABENCH", "bench-secret"), "sagemaker", "us-west-2").add_auth(req)
print(req.headers["Authorization"])
print(req.headers["X-Amz-Date"])
PYEOF
)
        headers=(-H "Authorization: ${signed[0]}" -H "X-Amz-Date: ${signed[1]}")
    elif [ "$mode" = bearer ]; then
        headers=(-H "Authorization: Bearer bench-token")
    fi
    "${LOAD_PIN[@]}" "$PIER" loadtest --url "http://$http" -m demo --input-file "$WORK/body.csv" \
        --content-type text/csv -c 64 --duration 2 "${headers[@]}" > /dev/null 2>&1 || true
    local cpu0 out cpu1 status=0
    cpu0=$(server_cpu "$pid")
    local perf_pid=
    if [ -n "${PERF:-}" ]; then
        perf record -q -e cpu-clock -F 4000 -g -p "$pid" -o "$PERF/perf.$mode.$round" \
            > /dev/null 2>&1 &
        perf_pid=$!
    fi
    out=$("${LOAD_PIN[@]}" "$PIER" loadtest --url "http://$http" -m demo --input-file "$WORK/body.csv" \
        --content-type text/csv -c 64 --duration 10 "${headers[@]}" 2>"$WORK/loadtest.err") || status=$?
    cpu1=$(server_cpu "$pid")
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
    kill "$pid"; wait "$pid" 2>/dev/null || true
    if [ "$status" != 0 ] || ! grep -q throughput <<<"$out"; then
        echo "$mode round $round: pier loadtest failed ($status): $(tail -3 "$WORK/loadtest.err")" >&2
        return
    fi
    local rps ok
    rps=$(awk '/throughput/ {print $2}' <<<"$out")
    ok=$(awk '/requests/ {gsub(/\(/, "", $3); print $3}' <<<"$out")
    # Server CPU microseconds per answered request (utime + stime, clock ticks).
    local us
    us=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$ok" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
    printf '%-9s round %s: %s req/s, server %s CPU-us/request %s\n' "$mode" "$round" "$rps" "$us" \
        "$(awk '/requests/ {print $3, $4, $5, $6}' <<<"$out")"
    echo "$mode $rps $us" >> "$WORK/rows"
    if [ -n "${PERF:-}" ]; then echo "$ok" > "$PERF/requests.$mode.$round"; fi
}

if [ -n "${PERF:-}" ]; then
    mkdir -p "$PERF"
    command -v perf > /dev/null || { echo "PERF needs perf (linux-perf)" >&2; exit 1; }
fi

server_cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

for round in $(seq 1 "$ROUNDS"); do
    for mode in ${MODES:-none sigv4 bearer}; do run "$mode" "$round"; done
done
awk '{ n[$1]++; rps[$1] += $2; us[$1] += $3 }
     END { for (m in n) { r[m] = rps[m] / n[m]; u[m] = us[m] / n[m] }
           base = ("none" in r) ? "none" : "unchecked"
           if (!(base in r)) exit
           for (i = 1; i <= 4; i++) { m = (i == 1 ? "none" : i == 2 ? "unchecked" : i == 3 ? "sigv4" : "bearer")
             if (!(m in r)) continue
             printf "mean   %-9s %8.0f req/s (%.3fx of %s)   server %6.1f CPU-us/request (%+.1f)\n",
                    m, r[m], r[m] / r[base], base, u[m], u[m] - u[base] } }' "$WORK/rows"
if [ -n "${PERF:-}" ]; then
    python3 benches/perf_by_function.py "$PERF" ${MODES:-none sigv4 bearer}
fi
