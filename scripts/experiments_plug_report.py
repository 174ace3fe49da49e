#!/usr/bin/env python3
"""experiments_plug_report.py OUT: the markdown tables of scripts/experiments_plug_late.sh
(docs/experiments.md, "Branch-train-plug from a late seed") from the eval_*.json files
that script writes into OUT; what has not been evaluated is left out."""
import json
import os
import sys

DOMS = ["code", "math", "legal", "speeches"]
out = None  # the folder, set by main


def load(name):
    path = f"{out}/eval_{name}.json"
    return json.load(open(path)) if os.path.exists(path) else None


def loss_table(rows, base_names):
    """Per-domain losses, their mean, and the mean's difference against each base."""
    bases = [(b, load(b)) for b in base_names]
    bases = [(b, j) for b, j in bases if j]
    print("| method | " + " | ".join(DOMS) + " | mean | " + " | ".join(f"vs {b}" for b, _ in bases) + " |")
    print("|---|" + "---:|" * (len(DOMS) + 1 + len(bases)))
    for label, f in rows:
        j = load(f)
        if not j:
            continue
        xs = [j["val"][d]["loss"] for d in DOMS]
        mean = sum(xs) / len(xs)
        diffs = []
        for _, b in bases:
            bm = sum(b["val"][d]["loss"] for d in DOMS) / len(DOMS)
            diffs.append(f"{mean - bm:+.3f}")
        print(f"| {label} | " + " | ".join(f"{x:.3f}" for x in xs) + f" | {mean:.3f} | " + " | ".join(diffs) + " |")


def per_domain_diff(label, f, base):
    j, b = load(f), load(base)
    if j and b:
        print(f"| {label} | " + " | ".join(f"{j['val'][d]['loss'] - b['val'][d]['loss']:+.3f}" for d in DOMS) + " |")


def routing(label, f, ds, load=load):
    """The routing matrix of eval_F.json (also used by experiments_plug.sh's report)."""
    j = load(f)
    r = j.get("routing_share") if j else None
    if not r or not r[ds[0]].get("mean"):
        return
    n = len(r[ds[0]]["mean"])
    print(f"\nrouting share, {label} (rows: domain; columns: expert; mean over the MoE layers)\n")
    print("| domain | " + " | ".join(f"e{e}" for e in range(n)) + " |")
    print("|---|" + "---:|" * n)
    for d in ds:
        print(f"| {d} | " + " | ".join(f"{x:.2f}" for x in r[d]["mean"]) + " |")


def summaries(out, names, plugged):
    """Each pipeline's stage table, and the last line of each `expert add` into PLUGGED."""
    for name in names:
        p = f"{out}/{name}_summary.txt"
        if os.path.exists(p):
            print(f"\n{name}: each stage's output on the pipeline's own windows ({name}_summary.txt)\n")
            print("".join("    " + line for line in open(p) if line.strip()))
    for how in ["below", "mean"]:
        p = f"{out}/{plugged}_py_{how}.txt"
        if os.path.exists(p):
            print(f"\nexpert add --router-init {how}: " + open(p).read().strip().splitlines()[-1])


def main():
    global out
    out = sys.argv[1]
    rows = [("dense (d_ff 1024)", "dense"), ("MoE from scratch (4 x 512, top-2)", "moe"),
            ("seed 75%: dense at step 75%", "seed75"), ("seed 90%: dense at step 90%", "seed90")]
    for s in ["75", "90"]:
        rows += [(f"branch-train-plug, seed {s}%", f"plug{s}"), (f"plug + all, seed {s}%", f"plugall{s}"),
                 (f"BTX, seed {s}%", f"btx{s}")]
    loss_table(rows, ["dense", "moe"])

    print("\nper domain, against dense (negative: below dense)\n")
    print("| method | " + " | ".join(DOMS) + " |")
    print("|---|" + "---:|" * len(DOMS))
    for label, f in rows[1:]:
        per_domain_diff(label, f, "dense")
    print("\nper domain, against MoE from scratch\n")
    print("| method | " + " | ".join(DOMS) + " |")
    print("|---|" + "---:|" * len(DOMS))
    for label, f in rows[4:]:
        per_domain_diff(label, f, "moe")

    for label, f in rows[1:]:
        routing(label, f, DOMS)

    five = DOMS + ["python"]
    if load("py_before"):
        base = load("py_before")["val"]
        print("\nthe fifth domain added to plug75 (expert 4 = the python branch of the 75% seed), whole val splits\n")
        print("| model | " + " | ".join(five) + " |")
        print("|---|" + "---:|" * len(five))
        names = [("plug75 (4 experts)", "py_before")]
        for how in ["below", "mean"]:
            names += [(f"+ python, row {how}, before the fit", f"py_{how}_added"), (f"+ python, row {how}, fitted", f"py_{how}_fit")]
        names += [("+ python, row below, fitted 4x as long", "py_below_long_fit")]
        for label, f in names:
            j = load(f)
            if not j:
                continue
            cells = []
            for d in five:
                x = j["val"][d]["loss"]
                rel = "" if f == "py_before" or d == "python" else f" ({100 * (x - base[d]['loss']) / base[d]['loss']:+.2f}%)"
                cells.append(f"{x:.3f}{rel}")
            print(f"| {label} | " + " | ".join(cells) + " |")
        for how in ["below", "mean"]:
            routing(f"+ python, row {how}, fitted", f"py_{how}_fit", five)
        routing("+ python, row below, fitted 4x as long", "py_below_long_fit", five)

    summaries(out, ["plug75", "plugall75", "btx75", "plug90", "plugall90", "btx90", "python75"], "plug75")

if __name__ == "__main__":
    main()
