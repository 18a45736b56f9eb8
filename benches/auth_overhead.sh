#!/usr/bin/env bash
# The cost of `pier serve --credentials` at c=64 on the demo: the same closed-loop load
# (pier loadtest, SageMaker InvokeEndpoint, one CSV row) against a server without
# credentials, one checking a SigV4 signature on every request, and one checking a bearer
# token. The SigV4 run replays one botocore-made signature (valid for the 15-minute skew):
# every request is verified in full (signed headers, body hash, HMAC) and passes.
#
# usage: benches/auth_overhead.sh [PIER_BINARY] [ROUNDS]   (default target/release/pier, 2)
# needs: python3 with botocore (the tests' .venv has it). Build first: cargo build --release -p pier
set -euo pipefail
cd "$(dirname "$0")/.."
PIER=${1:-target/release/pier}
ROUNDS=${2:-2}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '5.1,3.5,1.4,0.2\n' > "$WORK/body.csv"
printf '[bench]\naws_access_key_id = AKIABENCH\naws_secret_access_key = bench-secret\npier_token = bench-token\n' > "$WORK/credentials"

run() {
    local mode=$1 round=$2 extra=() headers=()
    [ "$mode" != none ] && extra=(--credentials "$WORK/credentials")
    rm -rf "$WORK/data"
    "$PIER" serve --demo --data-dir "$WORK/data" --http 127.0.0.1:0 --admin 127.0.0.1:0 \
        --grpc 127.0.0.1:0 "${extra[@]}" > "$WORK/serve.out" 2>/dev/null &
    local pid=$!
    for _ in $(seq 1 150); do grep -q "pier: serving" "$WORK/serve.out" && break; sleep 0.2; done
    local http
    http=$(grep -o "http=[^ ]*" "$WORK/serve.out" | head -1 | cut -d= -f2)
    if [ "$mode" = sigv4 ]; then
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
    local out
    out=$("$PIER" loadtest --url "http://$http" -m demo --input-file "$WORK/body.csv" \
        --content-type text/csv -c 64 --warmup 2 --duration 10 "${headers[@]}" 2>/dev/null)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    printf '%-6s round %s: %s req/s %s\n' "$mode" "$round" \
        "$(awk '/throughput/ {print $2}' <<<"$out")" "$(awk '/requests/ {print $3, $4, $5, $6}' <<<"$out")"
}

for round in $(seq 1 "$ROUNDS"); do
    for mode in none sigv4 bearer; do run "$mode" "$round"; done
done
