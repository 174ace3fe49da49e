#!/usr/bin/env bash
# infer_bf16_cli.sh: --precision of `monolith bench infer` and `monolith generate`: the
# JSON carries it; a bad value, or bf16 on a CPU without AVX512_BF16 (oneDNN limited to
# AVX-512 without it by ONEDNN_MAX_CPU_ISA), is one line of error and a non-zero exit.
set -euo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One line of error naming what to fix, non-zero exit; $1 = the text it must contain.
refused() {
    local want=$1
    shift
    if "$@" >"$tmp/out" 2>"$tmp/err"; then
        echo "FAIL: accepted: $*" >&2
        exit 1
    fi
    grep -q -- "$want" "$tmp/err" || { echo "FAIL: '$want' not in: $(cat "$tmp/err")" >&2; exit 1; }
    [ "$(grep -c '^monolith: ' "$tmp/err")" = 1 ] || { echo "FAIL: not one error line: $(cat "$tmp/err")" >&2; exit 1; }
}

refused "use fp32 or bf16" "$bin" bench infer --preset tiny --precision fp16
refused "use fp32 or bf16" "$bin" generate --checkpoint "$tmp/none.h5" --precision fp16
ONEDNN_MAX_CPU_ISA=AVX512_CORE DNNL_MAX_CPU_ISA=AVX512_CORE \
    refused "AVX512_BF16" "$bin" bench infer --preset tiny --threads 1 --precision bf16

"$bin" bench infer --preset tiny --threads 1 --json >"$tmp/fp32.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["precision"] == "fp32", d' "$tmp/fp32.json"
if grep -q avx512_bf16 /proc/cpuinfo; then
    "$bin" bench infer --preset tiny --threads 1 --precision=bf16 --json >"$tmp/bf16.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["precision"] == "bf16" and d["prefill_tok_s"] > 0, d' \
        "$tmp/bf16.json"
fi
echo "infer_bf16_cli: ok"
