"""check_llama_cpp.py: the comparison step of scripts/check_llama_cpp.sh (see there).

python3 scripts/check_llama_cpp.py MONOLITH_BIN DIR TOL NAME TYPE

DIR holds held.h5 (the model the GGUF holds, imported back), prompts.json, llama_cpp.json
(scripts/llama_cpp_run.mjs) and generate.<i>.txt (monolith generate --temperature 0).
Prints one summary line; exits 1 if a check fails.
"""
import json
import os
import subprocess
import sys

import h5py
import numpy as np

bin_, d, tol, name, typ = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
prompts = json.load(open(os.path.join(d, "prompts.json")))
run = json.load(open(os.path.join(d, "llama_cpp.json")))
with h5py.File(os.path.join(d, "held.h5"), "r") as f:
    V = int(f["config"].attrs["vocab_size"])
    eot = None
    if "tokenizer" in f:
        names = [s.decode() for s in f["tokenizer/special_names"][()]]
        if "<|endoftext|>" in names:
            eot = int(f["tokenizer/special_ids"][()][names.index("<|endoftext|>")])

problems, worst, worst_raw, steps_total, steps_same, tok_same, gen_same = [], 0.0, 0.0, 0, 0, 0, 0
for i, (p, r) in enumerate(zip(prompts, run["prompts"])):
    ids, cont = p["ids"], r["continuation"]
    tok_same += r["tokens"] == ids
    if r["tokens"] != ids:
        problems.append(f"prompt {i}: llama.cpp tokens {r['tokens']} != monolith {ids}")
    seq = ids + cont
    tokens = os.path.join(d, f"tokens.{i}.h5")
    with h5py.File(tokens, "w") as f:
        f["tokens"] = np.array([seq + [0]], dtype=np.int64)
    dump = os.path.join(d, f"dump.{i}.h5")
    subprocess.run([bin_, "dump", "--checkpoint", os.path.join(d, "held.h5"), "--tokens", tokens, "-o", dump,
                    "--threads", "1"], check=True, stdout=subprocess.DEVNULL)
    with h5py.File(dump, "r") as f:
        logits = f["logits"][0].astype(np.float64)
    for j, tok in enumerate(cont):
        z = logits[len(ids) - 1 + j]
        pm = np.exp(z - z.max())
        pm /= pm.sum()
        pl = np.zeros(V)
        for t, q in r["probs"][j]:
            pl[t] = q
        # llama.cpp normalizes its softmax in float: over 50257 entries its probabilities sum
        # to 1 +- 1e-5, a common factor on every entry. The tolerance is on its vector
        # renormalized to sum 1; the raw difference is reported beside it.
        worst_raw = max(worst_raw, float(np.abs(pm - pl).max()))
        diff = float(np.abs(pm - pl / pl.sum()).max())
        worst = max(worst, diff)
        steps_total += 1
        top = int(np.argmax(pm))
        if top == tok:
            steps_same += 1
        else:
            s = np.sort(pm)[::-1]
            problems.append(f"prompt {i} step {j}: monolith's greedy token {top} (p {pm[top]:.6f}), llama.cpp's "
                            f"{tok} (p {pm[tok]:.6f} in monolith); top-2 margin {s[0] - s[1]:.2e}")
        if diff > tol:
            problems.append(f"prompt {i} step {j}: max |dp| {diff:.3e} > {tol:g}")
    # monolith generate's own greedy text against llama.cpp's continuation, decoded.
    upto = cont.index(eot) if eot is not None and eot in cont else len(cont)
    dec = subprocess.run([bin_, "tokenizer", "decode", "--tokenizer", os.path.join(d, "held.h5")],
                         input=" ".join(map(str, cont[:upto])).encode(), capture_output=True, check=True).stdout
    gen = open(os.path.join(d, f"generate.{i}.txt"), "rb").read()
    same = gen in (dec, dec + b"\n")
    gen_same += same
    if not same:
        problems.append(f"prompt {i}: monolith generate gave {gen[:80]!r}, llama.cpp {dec[:80]!r}")

n = len(prompts)
ok = not problems
print(f"{name} {typ}: {'ok' if ok else 'FAIL'}  prompt tokens same {tok_same}/{n}, greedy steps same "
      f"{steps_same}/{steps_total}, generate text same {gen_same}/{n}, max |p_llama.cpp - p_monolith| {worst:.2e} "
      f"(tolerance {tol:g}; before renormalizing llama.cpp's {worst_raw:.2e})")
for line in problems[:10]:
    print("   ", line)
sys.exit(0 if ok else 1)
