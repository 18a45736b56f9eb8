#!/usr/bin/env bash
# The cost of `pier serve --credentials` in instructions per request, free of the timing
# noise of a shared machine: the server runs under valgrind's callgrind; after a warm-up its
# counters are zeroed, N InvokeEndpoint requests (one CSV row, the demo) are sent by
# `pier loadtest` (running natively, not counted), and the counters are dumped. Modes: no
# credentials, a SigV4 signature checked per request (one botocore signature replayed, as in
# auth_overhead.sh: verified in full every time) and a bearer token.
#
# MODES (default "none sigv4 bearer") may add `unchecked`: the SigV4 run's exact headers sent
# to a server without credentials, so that what checking costs is told apart from what the
# two extra headers cost in HTTP parsing (as in auth_overhead.sh).
#
# usage: [MODES=...] benches/auth_callgrind.sh [PIER_BINARY] [REQUESTS]   (default target/release/pier, 2000)
# Prints instructions per request per mode and the ratio to no credentials; the dumps stay in
# $KEEP (default: a temporary folder, removed) for `callgrind_annotate --inclusive=yes`.
# needs: valgrind, python3 with botocore (the tests' .venv has it).
set -euo pipefail
cd "$(dirname "$0")/.."
PIER=${1:-target/release/pier}
N=${2:-2000}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '5.1,3.5,1.4,0.2\n' > "$WORK/body.csv"
printf '[bench]\naws_access_key_id = AKIABENCH\naws_secret_access_key = bench-secret\npier_token = bench-token\n' > "$WORK/credentials"

load() { # url requests headers...
    local url=$1 n=$2
    shift 2
    "$PIER" loadtest --url "$url" -m demo --input-file "$WORK/body.csv" --content-type text/csv \
        -c 4 -n "$n" --timeout 60 "$@" 2>/dev/null | awk '/requests/ {print $3, $4, $5, $6}'
}

MODES=${MODES:-none sigv4 bearer}
declare -A IR
for mode in $MODES; do
    extra=() headers=()
    case $mode in none | unchecked) ;; *) extra=(--credentials "$WORK/credentials") ;; esac
    rm -rf "$WORK/data"
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.$mode" \
        "$PIER" serve --demo --data-dir "$WORK/data" --http 127.0.0.1:0 --admin 127.0.0.1:0 \
        --grpc 127.0.0.1:0 --compute-threads 1 "${extra[@]}" > "$WORK/serve.out" 2>"$WORK/valgrind.err" &
    pid=$!
    for _ in $(seq 1 600); do grep -q "pier: serving" "$WORK/serve.out" && break; sleep 0.5; done
    http=$(grep -o "http=[^ ]*" "$WORK/serve.out" | head -1 | cut -d= -f2)
    [ -n "$http" ] || { echo "$mode: the server did not start under valgrind" >&2; exit 1; }
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
    warm=$(load "http://$http" 200 "${headers[@]}")
    callgrind_control -z "$pid" > /dev/null
    measured=$(load "http://$http" "$N" "${headers[@]}")
    callgrind_control -d "$pid" > /dev/null
    dump=$(ls -t "$WORK"/callgrind."$mode"* | head -1)
    cp "$dump" "$WORK/dump.$mode"
    dump=$WORK/dump.$mode
    kill "$pid"; wait "$pid" 2>/dev/null || true
    total=$(grep -hE '^(totals|summary):' "$dump" | head -1 | awk '{print $2}')
    IR[$mode]=$((total / N))
    printf '%-6s %s requests (warm-up: %s; measured: %s): %s instructions/request\n' \
        "$mode" "$N" "$warm" "$measured" "${IR[$mode]}"
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$dump" "$KEEP/callgrind.$mode"; fi
done
# Ratios to no credentials, or to the same bytes unchecked when no-credentials was not run
# (as in auth_overhead.sh).
base=
for candidate in none unchecked; do
    if [ -n "${IR[$candidate]:-}" ]; then base=$candidate; break; fi
done
for mode in $MODES; do
    [ -z "$base" ] || [ "$mode" = "$base" ] && continue
    awk -v m="$mode" -v a="${IR[$mode]}" -v b="${IR[$base]}" -v base="$base" \
        'BEGIN { printf "%-9s %+d instructions/request over %s: %.3fx\n", m, a - b, base, a / b }'
done
