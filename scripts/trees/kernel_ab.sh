#!/usr/bin/env bash
# The tree-kernel comparison of benches/RESULTS.md in one command: builds the `tree_bench`
# example at BEFORE_REV (default 435b2eb, the kernel before the regrouping and walk changes)
# into a copy, rebuilds it at the work tree's state, and runs scripts/trees/bench_vs_xgboost.py
# on the model (100 trees, depth 6, 50 features) for 100k and 64 rows, dense and with
# 10 % NaN, XGBoost / current / before timed alternately in each round.
#
# Usage (repository root, work tree clean in algorithms/):
#   scripts/trees/kernel_ab.sh [BEFORE_REV] [ROUNDS]
# Needs python3 with numpy and xgboost (3.2 measured), or PYTHON=... pointing at one.
set -euo pipefail
before_rev=${1:-435b2eb}
rounds=${2:-4}
python=${PYTHON:-python3}
target=${CARGO_TARGET_DIR:-target}
# The "before" build checks out algorithms/ at BEFORE_REV and back: refuse to run over edits.
if ! git diff --quiet HEAD -- algorithms; then
    echo "kernel_ab.sh: algorithms/ has uncommitted changes; commit or stash them first" >&2
    exit 2
fi
before_bin=$(mktemp /tmp/tree_bench_before.XXXXXX)
trap 'git checkout -q HEAD -- algorithms; rm -f "$before_bin"' EXIT
git checkout -q "$before_rev" -- algorithms
cargo build --quiet --release --workspace --example tree_bench
cp "$target/release/examples/tree_bench" "$before_bin"
chmod 755 "$before_bin"
git checkout -q HEAD -- algorithms
for args in "--rows 100000 --runs 5" "--rows 100000 --runs 5 --missing 0.1" \
    "--rows 64 --runs 3000" "--rows 64 --runs 3000 --missing 0.1"; do
    echo "== $args --rounds $rounds (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    # shellcheck disable=SC2086
    "$python" scripts/trees/bench_vs_xgboost.py $args --rounds "$rounds" --pier-bin "$before_bin" | tail -4
done
