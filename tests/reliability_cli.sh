#!/usr/bin/env bash
# reliability_cli.sh: the smaller promises of docs/reliability.md, one check each.
#
#  - output that cannot be written (stdout on /dev/full) fails with one line, exit != 0
#  - HDF5 soft and external links, external storage, and chunks declared larger than
#    their dataset are refused by name (an external link to a FIFO does not hang)
#  - Adam state (negative or non-finite v, non-finite m) and all-zero RNG states are
#    refused on --resume and by expert insert
#  - finite but huge weights: eval stops naming the checkpoint (generate checks its logits too)
#  - expert names with control characters are printed escaped
#  - data prepare refuses empty, overlong and odd --domain names; -o equal to an input is
#    refused and the input kept; a tokenizer that is a device or FIFO is refused at once
#  - a float flag out of float range is reported as typed (--repetition-penalty 1e-300)
#  - domain weights whose sum overflows still train
#  - a virtual dataset, a float64/float16/int32 tensor, and a FIFO or folder as checkpoint
#    are refused by name; a 300 MB (sparse) file as tokenizer hits the 256 MB cap; logits
#    that overflow stop generate naming the checkpoint; a 10 MB INI line is one message
#  - usage errors are one line; bench --threads is capped like the other commands; train's
#    progress and expert list (checkpoint and module) show control characters escaped
#  - a full disk at the first byte (ulimit -f 0) leaves no zero-byte NAME.tmp; an output
#    that is a FIFO or a folder is refused before any work (a device would be replaced)
set -euo pipefail
bin=${MONOLITH_BIN:?}
src=${MONOLITH_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "reliability_cli: FAIL: $*" >&2; exit 1; }
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
$py -c 'import h5py, numpy' || fail "needs python3-h5py (scripts/setup.sh)"
if ldd "$bin" 2>/dev/null | grep libasan >/dev/null; then
  export ASAN_OPTIONS=fast_unwind_on_malloc=0 LSAN_OPTIONS=suppressions=$src/tests/sanitizers/lsan.supp:print_suppressions=0
fi

# refused LABEL NEEDLE CMD...: exit 1 or 2 within 30 s, one line on stderr holding NEEDLE.
refused() {
  local label=$1 needle=$2 rc
  shift 2
  set +e
  timeout 30 "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  set -e
  [ $rc -eq 1 ] || [ $rc -eq 2 ] || fail "$label: exit $rc, expected a refusal: $(head -c 400 "$tmp/err")"
  # (generate's statistics line is not an error)
  [ "$(grep -vc '^note: \|^monolith: prompt ' "$tmp/err")" -eq 1 ] || fail "$label: not one line: $(head -c 600 "$tmp/err")"
  grep -qF -- "$needle" "$tmp/err" || fail "$label: message lacks '$needle': $(cat "$tmp/err")"
}

tok=$src/tests/fuzz/vocab.tiktoken
"$bin" data prepare --tokenizer "$tok" --domain code --val-fraction 0.2 --input "$src/engine" \
  -o "$tmp/code.h5" >/dev/null 2>&1 || fail "data prepare"
"$bin" train --preset tiny --tokenizer "$tok" --data "code=$tmp/code.h5" --batch 2 --seq 16 --warmup 1 \
  --eval-every 0 --eval-batches 1 --threads 1 --steps 2 --save-every 1 --out "$tmp/run" >/dev/null 2>&1 || fail "train"
ck=$tmp/run/ckpt-00000002.h5

# ---------------------------------------------------------------- output errors
refused "inspect > /dev/full" "cannot write the output" sh -c "exec '$bin' inspect '$ck' >/dev/full"
refused "expert list > /dev/full" "cannot write the output" sh -c "exec '$bin' expert list '$ck' >/dev/full"
refused "eval --json > /dev/full" "cannot write the output" sh -c \
  "exec '$bin' eval --checkpoint '$ck' --data code='$tmp/code.h5' --batches 1 --batch 2 --seq 16 --json >/dev/full"
refused "generate > /dev/full" "cannot write the output" sh -c \
  "exec '$bin' generate --checkpoint '$ck' --prompt int --max-tokens 3 >/dev/full"
echo "output errors: reported, exit 1"

# ---------------------------------------------------------------- HDF5 links and layouts
mkfifo "$tmp/fifo"
for kind in soft external external_fifo storage chunk virtual f64 f16 i32; do
  cp "$ck" "$tmp/$kind.h5"
  $py - "$tmp/$kind.h5" "$kind" "$tmp" <<'PY'
import sys, h5py, numpy as np
path, kind, tmp = sys.argv[1:]
with h5py.File(path, "r+") as f:
    if kind == "soft":
        f["model/extra"] = h5py.SoftLink("/model/norm")
    elif kind == "external":
        f["model/extra"] = h5py.ExternalLink(tmp + "/code.h5", "/")
    elif kind == "external_fifo":
        f["model/extra"] = h5py.ExternalLink(tmp + "/fifo", "/x")
    elif kind == "storage":
        x = f["model/norm"][()]
        del f["model/norm"]
        open(tmp + "/raw.bin", "wb").write(x.tobytes())
        f.create_dataset("model/norm", shape=x.shape, dtype=x.dtype, external=[(tmp + "/raw.bin", 0, x.nbytes)])
    elif kind == "virtual":
        x = f["model/norm"][()]
        del f["model/norm"]
        with h5py.File(tmp + "/vsrc.h5", "w") as s:
            s["x"] = x
        lay = h5py.VirtualLayout(shape=x.shape, dtype=x.dtype)
        lay[:] = h5py.VirtualSource(tmp + "/vsrc.h5", "x", shape=x.shape)
        f.create_virtual_dataset("model/norm", lay)
    elif kind in ("f64", "f16", "i32"):
        x = f["model/norm"][()]
        del f["model/norm"]
        f.create_dataset("model/norm", data=x.astype({"f64": "f8", "f16": "f2", "i32": "i4"}[kind]))
    else:  # a 64 MB chunk declared for a few hundred bytes
        x = f["model/norm"][()]
        del f["model/norm"]
        f.create_dataset("model/norm", data=x, maxshape=(None,), chunks=(1 << 24,), fletcher32=True)
PY
done
refused "soft link" "/model/extra is a soft link" "$bin" inspect "$tmp/soft.h5"
refused "external link" "/model/extra is an external link" "$bin" inspect "$tmp/external.h5"
refused "external link to a FIFO" "/model/extra is an external link" "$bin" inspect "$tmp/external_fifo.h5"
refused "external storage" "model/norm keeps its data in 1 external file" "$bin" inspect "$tmp/storage.h5"
refused "chunk larger than its data" "declares chunks of" "$bin" inspect "$tmp/chunk.h5"
refused "soft link in a token set" "is a soft link" "$bin" eval --checkpoint "$ck" --data "code=$tmp/soft.h5"
refused "virtual dataset" "model/norm is virtual" "$bin" inspect "$tmp/virtual.h5"
refused "float64 tensor" "model/norm is stored as floats of 8 bytes, not float32" "$bin" inspect "$tmp/f64.h5"
refused "float16 tensor" "model/norm is stored as floats of 2 bytes, not float32" "$bin" eval --checkpoint "$tmp/f16.h5" \
  --data "code=$tmp/code.h5"
refused "int32 tensor" "model/norm is stored as integers of 4 bytes" "$bin" generate --checkpoint "$tmp/i32.h5" --prompt x
refused "FIFO as checkpoint" "not a regular file (a FIFO)" "$bin" inspect "$tmp/fifo"
refused "folder as checkpoint" "not a regular file (a directory)" "$bin" expert list "$tmp"
echo "HDF5: soft, external, external-to-FIFO links, external storage, virtual datasets, oversized chunks, tensors"
echo "      not float32, FIFOs and folders refused by name"

# ---------------------------------------------------------------- optimizer and RNG state
"$bin" expert extract "$ck" --expert 0 -o "$tmp/mod.h5" >/dev/null 2>&1 || fail "expert extract"
for what in negv nanm zerorng zeroloader; do
  rm -rf "$tmp/r_$what" && cp -r "$tmp/run" "$tmp/r_$what"
  $py - "$tmp/r_$what/ckpt-00000002.h5" "$what" <<'PY'
import sys, h5py, numpy as np
path, what = sys.argv[1:]
with h5py.File(path, "r+") as f:
    if what == "negv":
        d = f["optim/v/norm"]; x = d[()]; x[0] = -1.0; d[...] = x
    elif what == "nanm":
        d = f["optim/m/norm"]; x = d[()]; x[0] = np.nan; d[...] = x
    elif what == "zerorng":
        f["train"].attrs.modify("rng_state", np.zeros(4, dtype=f["train"].attrs["rng_state"].dtype))
    else:
        a = f["train"].attrs["loader_state"].copy(); a[:4] = 0
        f["train"].attrs.modify("loader_state", a)
PY
done
rm -f "$tmp"/r_*/ckpt-00000001.h5  # resume takes the newest; keep only the damaged one
refused "resume, v < 0" "/optim/v is -1 at element" "$bin" train --resume "$tmp/r_negv"
refused "resume, m NaN" "/optim/m/norm holds NaN" "$bin" train --resume "$tmp/r_nanm"
refused "resume, rng all zero" "rng_state is all zeros" "$bin" train --resume "$tmp/r_zerorng"
refused "resume, loader rng all zero" "loader_state is all zeros" "$bin" train --resume "$tmp/r_zeroloader"
$py - "$tmp/mod.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    names = []
    f["optim/v"].visit(lambda n: names.append(n) if isinstance(f["optim/v"][n], h5py.Dataset) else None)
    d = f["optim/v"][names[0]]; x = d[()]; x.flat[0] = -2.0; d[...] = x
PY
refused "expert insert, module v < 0" "/optim/v is -2" "$bin" expert insert "$ck" "$tmp/mod.h5" --slot 0 -o "$tmp/ins.h5"
[ ! -e "$tmp/ins.h5" ] || fail "expert insert wrote its output after refusing"
echo "optimizer and RNG state: negative v, NaN m, all-zero RNG states refused (resume, expert insert)"

# ---------------------------------------------------------------- non-finite activations
cp "$ck" "$tmp/huge.h5"
$py - "$tmp/huge.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    d = f["model/output"]; d[...] = (np.random.default_rng(0).standard_normal(d.shape) * 1e37).astype(np.float32)
PY
refused "eval, huge weights" "huge.h5: the validation loss on code is" "$bin" eval --checkpoint "$tmp/huge.h5" \
  --data "code=$tmp/code.h5" --batches 1 --batch 2 --seq 16
cp "$ck" "$tmp/overflow.h5"
$py - "$tmp/overflow.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:  # finite weights whose logits overflow float
    f["model/output"][...] = np.float32(3e38)
    f["model/norm"][...] = np.float32(1e4)
PY
refused "generate, logits overflow" "overflow.h5: the logit of token" "$bin" generate --checkpoint "$tmp/overflow.h5" \
  --prompt int --max-tokens 3 --threads 1
grep -qF "cannot generate" "$tmp/err" || fail "generate's message lacks what it means: $(cat "$tmp/err")"
echo "huge weights: eval and generate stop naming the checkpoint"

# ---------------------------------------------------------------- names, domains, -o, streams, numbers
"$bin" expert add "$ck" --init random --router-init random --name $'\e]0;pwned\a\e[31mred' -o "$tmp/named.h5" >/dev/null 2>&1 ||
  fail "expert add --name"
"$bin" expert list "$tmp/named.h5" >"$tmp/out" 2>&1 || fail "expert list: $(cat "$tmp/out")"
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$tmp/out" && fail "expert list printed a control character"
grep -qF '\x1b]0;pwned\x07\x1b[31mred' "$tmp/out" || fail "expert list did not show the name escaped: $(cat "$tmp/out")"
"$bin" inspect "$tmp/named.h5" >"$tmp/out" 2>&1 || fail "inspect"
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$tmp/out" && fail "inspect printed a control character"

for d in "" "$(printf 'x%.0s' $(seq 200))" "a b" $'a\nb' "ä"; do
  refused "data prepare --domain '$d'" "domain name" "$bin" data prepare --tokenizer "$tok" --domain "$d" \
    --input "$src/engine/moe.c" -o "$tmp/d.h5"
done
cp "$src/engine/moe.c" "$tmp/in.txt"
refused "data prepare -o = --input" "is also an input" "$bin" data prepare --tokenizer "$tok" --domain x \
  --input "$tmp/in.txt" -o "$tmp/in.txt"
cmp -s "$src/engine/moe.c" "$tmp/in.txt" || fail "data prepare changed its input"
refused "tokenizer train -o = --input" "is also an input" "$bin" tokenizer train --vocab-size 300 \
  --input "$tmp/in.txt" -o "$tmp/in.txt"
cp "$ck" "$tmp/keep.h5"
refused "expert insert -o = CKPT" "is also an input" "$bin" expert insert "$tmp/keep.h5" "$tmp/mod.h5" --slot 0 \
  -o "$tmp/keep.h5"
cmp -s "$ck" "$tmp/keep.h5" || fail "expert insert changed its input"
refused "tokenizer /dev/zero" "not a regular file" "$bin" data prepare --tokenizer /dev/zero --domain x \
  --input "$tmp/in.txt" -o "$tmp/z.h5"
refused "tokenizer FIFO" "not a regular file" "$bin" train --preset tiny --tokenizer "$tmp/fifo" \
  --data "code=$tmp/code.h5" --steps 1 --out "$tmp/fifo_run"
refused "--repetition-penalty 1e-300" "'1e-300': out of range" "$bin" generate --checkpoint "$ck" --prompt x \
  --repetition-penalty 1e-300
cp "$tmp/code.h5" "$tmp/code2.h5"
"$bin" train --preset tiny --tokenizer "$tok" --data "a=$tmp/code.h5:1e308" --data "b=$tmp/code2.h5:1e308" \
  --batch 2 --seq 16 --warmup 1 --eval-every 0 --eval-batches 1 --threads 1 --steps 1 --out "$tmp/w" \
  >/dev/null 2>"$tmp/err" || fail "weights of 1e308: $(cat "$tmp/err")"
echo "names escaped; bad --domain, -o = input, device tokenizers and out-of-range floats refused"

# ---------------------------------------------------------------- caps, usage, escapes, full disk
truncate -s 300M "$tmp/big.tiktoken"
refused "300 MB tokenizer" "more than 256 MB; not a tokenizer file" "$bin" data prepare --tokenizer "$tmp/big.tiktoken" \
  --domain x --input "$tmp/in.txt" -o "$tmp/big.h5"
rm -f "$tmp/big.tiktoken"
head -c $((10 << 20)) /dev/zero | tr '\0' a | { printf 'steps = 3\nout = '; cat; printf '\n'; } >"$tmp/long.ini"
refused "10 MB INI line" "long.ini:2: line longer than 199 bytes" "$bin" train --config "$tmp/long.ini" --preset tiny \
  --tokenizer "$tok" --data "code=$tmp/code.h5"
for cmd in "inspect" "expert" "expert list --zz" "data prepare --domain" "compose --top-k" "init --seed" "dump -z" \
  "eval --batch" "tokenizer frob" "export" "pipeline btx --zz" "bench frob" "bench machine --threads x" "frob"; do
  # shellcheck disable=SC2086
  refused "usage error: monolith $cmd" "monolith" "$bin" $cmd
done
set +e
"$bin" bench machine --threads 1024 --json >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
[ $rc -eq 0 ] || fail "bench machine --threads 1024: exit $rc: $(cat "$tmp/err")"
grep -q "note: --threads 1024 is more than" "$tmp/err" || fail "bench did not cap --threads 1024: $(cat "$tmp/err")"
grep -q "\"threads\": 1024" "$tmp/out" && fail "bench ran 1024 threads"
"$bin" expert extract "$tmp/named.h5" --expert 4 -o "$tmp/named_mod.h5" >"$tmp/out" 2>&1 || fail "expert extract: $(cat "$tmp/out")"
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$tmp/out" && fail "expert extract printed a control character"
"$bin" expert list "$tmp/named_mod.h5" >"$tmp/out" 2>&1 || fail "expert list module: $(cat "$tmp/out")"
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$tmp/out" && fail "expert list (module) printed a control character"
grep -qF '\x1b]0;pwned' "$tmp/out" || fail "expert list (module) did not show the name escaped: $(cat "$tmp/out")"
"$bin" train --preset tiny --tokenizer "$tok" --data "code=$tmp/code.h5" --batch 2 --seq 16 --warmup 1 --eval-every 0 \
  --eval-batches 1 --threads 1 --steps 1 --log-every 1 --out "$tmp/r"$'\e[31m\a' >/dev/null 2>"$tmp/err" ||
  fail "train --out with control characters: $(cat "$tmp/err")"
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$tmp/err" && fail "train printed --out raw: $(cat -v "$tmp/err")"
grep -qF 'r\x1b[31m\x07' "$tmp/err" || fail "train did not show --out escaped: $(cat "$tmp/err")"
refused "-o a FIFO" "not a regular file (a FIFO); an output is written as NAME.tmp" "$bin" init --preset tiny \
  -o "$tmp/fifo"
[ -p "$tmp/fifo" ] || fail "init -o FIFO replaced the FIFO"
mkdir "$tmp/odir"
refused "tokenizer train -o a folder" "odir: not a regular file (a directory)" "$bin" tokenizer train --vocab-size 300 \
  --input "$tmp/in.txt" -o "$tmp/odir"
mkdir "$tmp/full"
# (stderr into a pipe: the file-size limit would refuse the message itself in a file)
set +e
msg=$(cd "$tmp/full" && trap '' XFSZ && ulimit -f 0 && exec "$bin" init --preset tiny -o o.h5 2>&1 >/dev/null)
rc=$?
set -e
[ $rc -eq 1 ] && [ "$(printf '%s\n' "$msg" | wc -l)" -eq 1 ] || fail "init on a full disk: exit $rc: $msg"
case $msg in *"o.h5 was not written"*) ;; *) fail "init on a full disk: $msg" ;; esac
[ -z "$(ls -A "$tmp/full")" ] || fail "a full disk left files: $(ls -la "$tmp/full")"
echo "256 MB tokenizer cap, 10 MB INI line, one-line usage errors, bench --threads capped, escaped names and"
echo "      --out, nothing left by a write that fails at its first byte"
echo "reliability_cli: ok"
