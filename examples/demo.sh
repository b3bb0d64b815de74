#!/usr/bin/env bash
# The demo: gate a good and a bad digits classifier against the shipped default policy.
# The good model passes (exit 0); the bad one keeps ~90% accuracy but misses most
# "eight"s, and gate blocks it (exit 1) naming the class and its recall.
set -uo pipefail
cd "$(dirname "$0")/.."
GATE=${GATE:-.venv/bin/gate}
DIGITS=examples/digits

run() {
    local model=$1 expected=$2
    echo
    echo "=== gate eval --model $DIGITS/$model.onnx (expect exit $expected) ==="
    "$GATE" eval --model "$DIGITS/$model.onnx" --dataset "$DIGITS/heldout.yaml" --policy policies/default.yaml
    local code=$?
    echo "--- exit code $code"
    if [ "$code" != "$expected" ]; then
        echo "demo: expected exit $expected for $model.onnx, got $code" >&2
        exit 1
    fi
}

run good 0
run bad 1
echo
echo "demo: the good model passed and the bad model was blocked, as expected."
