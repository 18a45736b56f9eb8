#!/usr/bin/env bash
# Fuzzes Pier's parsers with cargo-fuzz (libFuzzer), one target after another, each for a
# bounded time. Targets (fuzz/fuzz_targets/*.rs; the entry points live in fuzz-targets/src/,
# which `cargo test` also uses to replay the committed corpora):
#   csv json json_lines         SageMaker content-type decoders
#   v2_json v2_binary           v2 REST infer (JSON; Inference-Header-Content-Length + binary)
#   grpc_model_infer            v2 gRPC ModelInferRequest (protobuf)
#   control                     control-plane AWS JSON bodies (first line: X-Amz-Target)
#
#   scripts/fuzz.sh                                  # every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh v2_json control # some targets, 10 min each
#   FUZZ_ARGS="-fork=1 -ignore_crashes=1" scripts/fuzz.sh   # go on past crashes
#
# Environment:
#   FUZZ_SECONDS      wall-clock seconds per target (default 60)
#   FUZZ_ARGS         extra libFuzzer flags
#   FUZZ_SANITIZER    cargo fuzz --sanitizer (default none: Pier has no unsafe code, and
#                     without ASan the build and the runs are several times faster)
#   PIER_FUZZ_STRICT  1: an HTTP 500 or gRPC INTERNAL/UNKNOWN answer is a failure too
#
# Stable rustc works: the script sets RUSTC_BOOTSTRAP=1 for cargo-fuzz's nightly flags and
# installs cargo-fuzz (cargo install cargo-fuzz --locked) if it is missing. Every run uses
# -rss_limit_mb=2048 -malloc_limit_mb=2048; a client-sized allocation the system refuses
# aborts (a crash to libFuzzer), and with FUZZ_SANITIZER=address any single allocation over
# 2 GB is one too (the malloc limit needs a sanitizer's hooks).
# New interesting inputs land in fuzz/corpus/<target>/ (minimize with
# `RUSTC_BOOTSTRAP=1 cargo fuzz cmin -s none <target>` before committing; keep each corpus
# small); crashes in fuzz/artifacts/<target>/ (not committed; reproduce with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>`).
# fuzz/dict/ holds libFuzzer dictionaries (field names, datatypes, actions, huge sizes) for
# the v2 REST and control targets.
# Prints each target's CPU seconds (user + system) and verdict; exits 1 if any crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-none}
all=(csv json json_lines v2_json v2_binary grpc_model_infer control)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

build=(--sanitizer "$sanitizer" --debug-assertions)
cargo fuzz build "${build[@]}"

logs=fuzz/target/logs
mkdir -p "$logs"
failed=0
for t in "${targets[@]}"; do
    # The server-backed targets keep a data folder in TMPDIR; drop it after the run.
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/pier-fuzz-$t.XXXXXX")
    set +e
    dict=()
    case $t in
        v2_json | v2_binary) dict=(-dict=fuzz/dict/v2.dict) ;;
        control) dict=(-dict=fuzz/dict/control.dict) ;;
    esac
    TMPDIR=$tmp /usr/bin/time -f '%U %S' -o "$logs/$t.time" \
        cargo fuzz run "${build[@]}" "$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
        "${dict[@]}" ${FUZZ_ARGS:-} >"$logs/$t.log" 2>&1
    rc=$?
    set -e
    rm -rf "$tmp"
    cpu=$(awk '{printf "%.0f", $1 + $2}' "$logs/$t.time" 2>/dev/null || echo '?')
    # Runs: the final stats, or (fork mode) the last status line's `#N`.
    execs=$({ grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" |
        grep -o '[0-9]*$' || grep -o '^#[0-9]*' "$logs/$t.log" | tr -d '#'; } | tail -n 1 || true)
    if [ $rc -eq 0 ]; then
        verdict=ok
    else
        verdict="CRASH (exit $rc; see $logs/$t.log and fuzz/artifacts/$t/)"
        failed=1
    fi
    echo "$t: ${cpu}s CPU, ${execs:-?} runs, corpus $(ls "fuzz/corpus/$t" | wc -l) files: $verdict"
done
exit $failed
