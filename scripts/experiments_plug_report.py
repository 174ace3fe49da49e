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


def minus_table(title, head, triples):
    """Per-domain and mean differences A - B for each (label, A, B) that is evaluated."""
    if not any(load(a) and load(b) for _, a, b in triples):
        return
    print(f"\n{title}\n")
    print(f"| {head} | " + " | ".join(DOMS) + " | mean |")
    print("|---|" + "---:|" * (len(DOMS) + 1))
    for label, a, b in triples:
        ja, jb = load(a), load(b)
        if ja and jb:
            ds = [ja["val"][d]["loss"] - jb["val"][d]["loss"] for d in DOMS]
            print(f"| {label} | " + " | ".join(f"{x:+.3f}" for x in ds) + f" | {sum(ds) / len(ds):+.3f} |")


def gap_tables():
    """The last round: plug variants from dense's checkpoints, and the second seed."""
    rows = [("dense", "dense"), ("dense, --seed 2", "dense2"), ("MoE from scratch", "moe"),
            ("MoE from scratch, --seed 2", "moe2"), ("seed 90%: dense at step 90%", "seed90"),
            ("seed 90%, --seed 2", "seed90_2"), ("seed 95%: dense at step 95%", "seed95"),
            ("plug-90 (branches 22, router 12; continued rate)", "plug90"),
            ("plug-90, --seed 2 (from dense --seed 2)", "plug90_2"),
            ("plug-90 before the router stage (0 router steps)", "plug90_plugged"),
            ("plug-90, branches at 1e-3 constant", "v90_lrc"),
            ("plug-90, branches re-warmed 2e-3 to 2e-4", "v90_rewarm"),
            ("plug-90, branches at 1e-4 constant", "v90_lrlow"),
            ("plug-90, branches 24, router 4", "v90_r4"),
            ("plug-95 (branches 11, router 6 per 1,000 steps)", "v95"),
            ("plug-95, branches 12, router 2", "v95_r2"),
            ("plug-95, --seed 2 (from dense --seed 2)", "plug95_2"),
            ("seed 95%, --seed 2", "seed95_2"),
            ("plug-90, branches of batch 2 x 88 steps per 1,000 (4x the updates)", "v90_b2"),
            ("control: dense from step 900, its FFN alone on the mixture", "ffn_only90")]
    if not any(load(f) for _, f in rows[1:]):
        return
    print("\nclosing the gap: plug variants (every row the same steps in all), whole val splits\n")
    loss_table(rows, ["dense", "moe"])
    print("\nper domain, against dense (seed 1) and against MoE from scratch (seed 1)\n")
    print("| method | " + " | ".join(f"{d} vs dense" for d in DOMS) + " | " + " | ".join(f"{d} vs MoE" for d in DOMS) + " |")
    print("|---|" + "---:|" * (2 * len(DOMS)))
    d0, m0 = load("dense"), load("moe")
    for label, f in rows[1:]:
        j = load(f)
        if j and d0 and m0:
            print(f"| {label} | " + " | ".join(f"{j['val'][d]['loss'] - d0['val'][d]['loss']:+.3f}" for d in DOMS) + " | "
                  + " | ".join(f"{j['val'][d]['loss'] - m0['val'][d]['loss']:+.3f}" for d in DOMS) + " |")
    pairs = [("dense", "dense2", "dense"), ("MoE", "moe2", "moe"), ("seed 90%", "seed90_2", "seed90"),
             ("plug-90", "plug90_2", "plug90"), ("seed 95%", "seed95_2", "seed95"), ("plug-95", "plug95_2", "v95")]
    minus_table("the second seed: --seed 2 minus --seed 1, per domain", "method", pairs)
    paired = [("plug-90, seed 1", "plug90", "dense"), ("plug-90, seed 2", "plug90_2", "dense2"),
              ("plug-90 branches 24, router 4", "v90_r4", "dense"), ("plug-95", "v95", "dense"),
              ("plug-95, branches 12, router 2", "v95_r2", "dense"),
              ("plug-95, seed 2", "plug95_2", "dense2"),
              ("plug-90, branches of batch 2 x 88 per 1,000", "v90_b2", "dense"),
              ("control: dense's FFN alone from step 900", "ffn_only90", "dense")]
    minus_table("paired: plug minus the dense run its seed was taken from", "plug minus its own dense", paired)
    vs_moe = [("plug-90, seed 1", "plug90", "moe"), ("plug-90, seed 2", "plug90_2", "moe2"),
              ("plug-95, seed 1", "v95", "moe"), ("plug-95, seed 2", "plug95_2", "moe2"),
              ("dense, seed 1", "dense", "moe"), ("dense, seed 2", "dense2", "moe2")]
    minus_table("against the MoE from scratch of the same --seed", "minus the MoE of its seed", vs_moe)
    for label, f in rows[7:]:
        routing(label, f, DOMS)


def b2_tables():
    """Plug-95 with branches of batch 2 (parts late_b2, late_b2_2) beside dense and the MoE
    of the same --seed and the batch-8 plug-95, at whatever budget OUT was run."""
    rows = [("dense", "dense"), ("dense, --seed 2", "dense2"), ("MoE from scratch", "moe"),
            ("MoE from scratch, --seed 2", "moe2"), ("seed 95%: dense at step 95%", "seed95"),
            ("seed 95%, --seed 2", "seed95_2"), ("plug-95, branches of batch 8", "v95"),
            ("plug-95, branches of batch 8, --seed 2", "plug95_2"), ("plug-95, branches of batch 2", "v95_b2"),
            ("plug-95, branches of batch 2, --seed 2", "plug95_b2_2")]
    if not load("v95_b2") and not load("plug95_b2_2"):
        return
    print("\nplug-95 with branches of batch 2 (4x the updates, the same tokens), whole val splits\n")
    loss_table(rows, ["dense", "moe"])
    paired = [("plug-95, batch 8, seed 1", "v95", "dense"), ("plug-95, batch 8, seed 2", "plug95_2", "dense2"),
              ("plug-95, batch 2, seed 1", "v95_b2", "dense"), ("plug-95, batch 2, seed 2", "plug95_b2_2", "dense2")]
    minus_table("paired: plug minus the dense run its seed was taken from", "plug minus its own dense", paired)
    vs_moe = [(label, a, "moe" if b == "dense" else "moe2") for label, a, b in paired]
    minus_table("against the MoE from scratch of the same --seed", "minus the MoE of its seed", vs_moe)
    for label, f in rows[8:]:
        routing(label, f, DOMS)


def fifth_fit_table(base_name="py_before", title="plug75 + the python branch", fits=None):
    """The fifth domain's row fits, against the plugged model before it (BASE_NAME: its
    evaluation on the five val splits)."""
    five = DOMS + ["python"]
    fits = fits or [("plug75 (4 experts)", "py_before"), ("forced: every domain on its expert", "py_below_forced"),
            ("row below, fit on the five domains, 26 steps", "py_below_fit"),
            ("row below, fit on the five domains, 104 steps", "py_below_long_fit"),
            ("row below, fit on code + python, 26 steps", "fit75_cp"),
            ("row below, fit on code + python, 104 steps", "fit75_cp_long"),
            ("row below, fit on python alone, 26 steps", "fit75_py"),
            ("row below, the whole router refitted on the five domains, 26 steps", "fit75_all"),
            ("row below, the whole router refitted on the five domains, 104 steps", "fit75_all_long")]
    base = load(base_name)
    if not base or not any(load(f) for _, f in fits[1:]):
        return
    print(f"\nthe fifth domain, router-row fits ({title}; whole val splits)\n")
    print("| model | " + " | ".join(five) + " | python on e4 | worst old |")
    print("|---|" + "---:|" * (len(five) + 2))
    for label, f in fits:
        j = load(f)
        if not j:
            continue
        cells, worst = [], 0.0
        for d in five:
            x = j["val"][d]["loss"]
            b = base["val"][d]["loss"]
            rel = 100 * (x - b) / b
            if d != "python":
                worst = max(worst, rel)
            cells.append(f"{x:.3f}" + ("" if f == base_name or d == "python" else f" ({rel:+.2f}%)"))
        r = j.get("routing_share") or {}
        share = r.get("python", {}).get("mean")
        sh = f"{share[4]:.2f}" if share and len(share) > 4 else "-"
        print(f"| {label} | " + " | ".join(cells) + f" | {sh} | {worst:+.2f}% |")
    for label, f in fits[2:]:
        routing(label, f, five)


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

    gap_tables()
    fifth_fit_table()
    b2_tables()
    for on, what in [("v95_b2", "batch-2 branches"), ("v95", "batch-8 branches")]:
        fifth_fit_table(f"{on}_5", f"plug-95 of {what} + the python branch of its seed", [
            (f"plug-95, {what} (4 experts)", f"{on}_5"), ("forced: every domain on its expert", f"{on}_py_forced"),
            ("row below, fit on the five domains, 26 steps per 1,000", f"fit{on[1:]}"),
            ("row below, the whole router refitted on the five domains, 26 steps per 1,000", f"fit{on[1:]}_all")])

    summaries(out, ["plug75", "plugall75", "btx75", "plug90", "plugall90", "btx90", "python75"], "plug75")

if __name__ == "__main__":
    main()
