#!/usr/bin/env bash
# train_router_ce_cli.sh: `monolith train --router-ce` from the command line. Under
# --route-by-domain every step's metrics line carries router_ce (the router's
# cross-entropy against the forced experts: ln 4 for a fresh 4-expert router, falling as
# the router learns the domains) and the loss is ce + aux_coef aux + z_coef z +
# COEF router_ce; --router-ce 0 leaves the loss without the term (docs/design.md section 5); without --route-by-domain
# router_ce is 0; the value is written to run.ini and --resume keeps it (a run.ini
# from before the option resumes without the term); a negative value is refused before
# any work.
set -euo pipefail
bin=${MONOLITH_BIN:?}
src=${MONOLITH_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "train_router_ce_cli: FAIL: $*" >&2; exit 1; }

"$bin" tokenizer train --vocab-size 300 --input "$src"/engine/*.c -o "$tmp/tok.tiktoken" >/dev/null 2>&1
"$bin" data prepare --tokenizer "$tmp/tok.tiktoken" --domain code --input "$src/engine" -o "$tmp/code.h5" >/dev/null 2>&1
"$bin" data prepare --tokenizer "$tmp/tok.tiktoken" --domain kern --input "$src/kernels" -o "$tmp/kern.h5" >/dev/null 2>&1
base=(--preset tiny --tokenizer "$tmp/tok.tiktoken" --data "code=$tmp/code.h5" --data "kern=$tmp/kern.h5"
      --steps 30 --batch 4 --seq 32 --lr 3e-3 --warmup 3 --eval-every 0 --eval-batches 1 --save-every 0 --threads 1)

set +e
"$bin" train "${base[@]}" --route-by-domain --router-ce -1 --out "$tmp/neg" 2>"$tmp/err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -qF -- "--router-ce must be >= 0" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ] ||
  fail "--router-ce -1: exit $rc: $(cat "$tmp/err")"
[ ! -e "$tmp/neg" ] || fail "a refused --router-ce created the run folder"

"$bin" train "${base[@]}" --route-by-domain --router-ce 0.5 --out "$tmp/ce" 2>"$tmp/log" || fail "$(cat "$tmp/log")"
grep -q "router_ce" "$tmp/log" || fail "the progress lines do not show router_ce"
"$bin" train "${base[@]}" --route-by-domain --router-ce 0 --out "$tmp/off" 2>/dev/null || fail "--router-ce 0"
"$bin" train "${base[@]}" --out "$tmp/normal" 2>/dev/null || fail "normal routing"
grep -qx "router-ce = 0.5" "$tmp/ce/run.ini" || fail "run.ini lacks 'router-ce = 0.5'"

/usr/bin/python3 - "$tmp" <<'PY' || fail "metrics"
import json, math, sys
tmp = sys.argv[1]
def steps(run):
    return [json.loads(l) for l in open(f"{tmp}/{run}/metrics.jsonl") if '"type": "train"' in l]
aux_coef, z_coef = 0.01, 0.001  # the tiny preset's
for run, coef in (("ce", 0.5), ("off", 0.0)):
    s = steps(run)
    assert len(s) == 30, (run, len(s))
    for r in s:
        want = r["ce"] + aux_coef * r["aux"] + z_coef * r["z"] + coef * r["router_ce"]
        assert abs(r["loss"] - want) < 1e-6 * max(1, abs(want)), (run, r["step"], r["loss"], want)
    assert abs(s[0]["router_ce"] - math.log(4)) < 0.05, (run, s[0]["router_ce"])  # a fresh router: p ~ 1/4
ce = steps("ce")
assert ce[-1]["router_ce"] < 0.5 * ce[0]["router_ce"], ("the router did not learn the domains", ce[-1]["router_ce"])
assert all(r["router_ce"] == 0 for r in steps("normal")), "router_ce without forced routing"
PY
# --resume keeps the weight the run started with; a run.ini without the key (written
# before --router-ce existed) resumes without the term, as that run trained.
"$bin" train "${base[@]}" --steps 20 --save-every 10 --route-by-domain --router-ce 0.5 --out "$tmp/res" 2>/dev/null ||
  fail "resume run"
cp -r "$tmp/res" "$tmp/old"
sed -i '/^router-ce = /d' "$tmp/old/run.ini"
for r in res old; do
  rm "$tmp/$r/ckpt-00000020.h5"
  "$bin" train --resume "$tmp/$r" --threads 1 2>/dev/null || fail "--resume $r"
done
/usr/bin/python3 - "$tmp" <<'PY' || fail "resumed metrics"
import json, sys
tmp = sys.argv[1]
for run, coef in (("res", 0.5), ("old", 0.0)):
    s = [json.loads(l) for l in open(f"{tmp}/{run}/metrics.jsonl") if '"type": "train"' in l]
    assert [r["step"] for r in s] == list(range(1, 21)), (run, [r["step"] for r in s])
    for r in s[10:]:
        want = r["ce"] + 0.01 * r["aux"] + 0.001 * r["z"] + coef * r["router_ce"]
        assert r["router_ce"] > 0 and abs(r["loss"] - want) < 1e-6 * max(1, abs(want)), (run, r["step"], r["loss"], want)
PY
echo "train_router_ce_cli: ok"
