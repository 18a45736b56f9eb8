#!/usr/bin/env bash
# Batch transform figures (benches/RESULTS.md, "Batch transform"): the transform job against
# the Model::predict tight loop, Pier's HTTP endpoint (MultiRecord payloads of MaxPayloadInMB)
# and pandas + onnxruntime, on one generated CSV per model, with peak RSS of the transform.
# Usage: benches/transform_figures.sh [rows] [MaxPayloadInMB] [threads]   (1000000 6 2)
# Run on a quiet machine; wall seconds count only where they are close to the CPU seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}; mb=${2:-6}; threads=${3:-2}
cargo build --release --workspace --example transform_bench
target/release/examples/transform_bench "$rows" "$mb" "$threads"
dir="${TMPDIR:-/tmp}/pier-transform-bench"
for m in mlp:mlp gbc100:cancer-gbc100; do
    echo "${m%%:*}:"
    .venv/bin/python benches/transform_python.py "$dir/${m%%:*}/in/data.csv" "fixtures/onnx/${m##*:}/model.onnx"
done
