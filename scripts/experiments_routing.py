#!/usr/bin/python3
"""experiments_routing.py: the table and plot of docs/experiments.md, "Routing variants", from the run
folders scripts/experiments_routing.sh leaves (OUT/NAME-sSEED/{metrics.jsonl,eval.json}).

    /usr/bin/python3 scripts/experiments_routing.py [--out runs/routing] [--plot FILE.png] NAME...

Per run: the validation loss per domain and its mean (eval.json, `monolith eval --json`); load balance
over training, max/mean slots per expert of each MoE layer at every step (metrics.jsonl "expert_tokens"),
averaged over layers, reported as the mean over all steps and over the last fifth; the dropped fraction
(the last fifth of training, and eval) and experts per token (eval, averaged over domains and layers); and domain specialisation, the mutual
information I(domain; expert) of the eval routing matrix in nats (domains weighted by their scored tokens,
averaged over layers; at most log 4 = 1.386 for four domains). Runs of every seed found are listed, then
the mean over seeds with the spread (max - min) of the mean loss.
"""
import argparse
import glob
import json
import math
import os
import sys


def balance(path):
    """Per step, the layer-mean of max/mean slots per expert."""
    out = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") != "train":
                continue
            ratios = []
            for counts in r["expert_tokens"].values():
                m = sum(counts) / len(counts)
                if m > 0:
                    ratios.append(max(counts) / m)
            if ratios:
                out.append((r["step"], sum(ratios) / len(ratios)))
    return out


def train_dropped(path):
    """Mean over the last fifth of the steps of the layer-mean dropped fraction in training."""
    d = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "train" and r.get("dropped"):
                d.append(sum(r["dropped"].values()) / len(r["dropped"]))
    tail = d[len(d) * 4 // 5:]
    return sum(tail) / len(tail) if tail else 0.0


def mutual_information(ev):
    """I(domain; expert) in nats from the eval routing shares, averaged over MoE layers."""
    doms = list(ev["val"])
    tot = sum(ev["val"][d]["tokens"] for d in doms)
    w = {d: ev["val"][d]["tokens"] / tot for d in doms}
    mis = []
    for layer in ev["routing_share"][doms[0]]:
        if layer == "mean":
            continue
        joint = {(d, e): w[d] * s for d in doms for e, s in enumerate(ev["routing_share"][d][layer])}
        pe = {}
        for (d, e), p in joint.items():
            pe[e] = pe.get(e, 0) + p
        mis.append(sum(p * math.log(p / (w[d] * pe[e])) for (d, e), p in joint.items() if p > 0))
    return sum(mis) / len(mis)


def mean_over(ev, key):
    vals = [v for d in ev.get(key, {}).values() for v in d.values()]
    return sum(vals) / len(vals) if vals else float("nan")


def run_row(folder):
    ev = json.load(open(os.path.join(folder, "eval.json")))
    bal = balance(os.path.join(folder, "metrics.jsonl"))
    tail = bal[len(bal) * 4 // 5:]
    losses = {d: v["loss"] for d, v in ev["val"].items()}
    return dict(loss=losses, mean=sum(losses.values()) / len(losses),
                bal_all=sum(b for _, b in bal) / len(bal), bal_tail=sum(b for _, b in tail) / len(tail),
                dropped=mean_over(ev, "dropped"), train_dropped=train_dropped(os.path.join(folder, "metrics.jsonl")), ept=mean_over(ev, "experts_per_token"), mi=mutual_information(ev),
                curve=bal)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--out", default="runs/routing")
    ap.add_argument("--seed", help="ignored (every seed found is used); kept for the shell script")
    ap.add_argument("--plot", default="docs/experiments_routing_balance.png")
    ap.add_argument("names", nargs="+")
    a = ap.parse_args()
    rows = {}
    for n in a.names:
        for folder in sorted(glob.glob(os.path.join(a.out, f"{n}-s*"))):
            if os.path.isdir(folder) and os.path.exists(os.path.join(folder, "eval.json")):
                rows.setdefault(n, []).append((folder.rsplit("-s", 1)[1], run_row(folder)))
    if not rows:
        print(f"experiments_routing: no finished run under {a.out}", file=sys.stderr)
        return 1
    doms = list(next(iter(rows.values()))[0][1]["loss"])
    head = "| run | seed | " + " | ".join(doms) + " | mean | max/mean (all / last 20%) | dropped (train / eval) | experts/token | I(domain; expert) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for n, runs in rows.items():
        for seed, r in runs:
            print(f"| {n} | {seed} | " + " | ".join(f"{r['loss'][d]:.4f}" for d in doms) +
                  f" | {r['mean']:.4f} | {r['bal_all']:.2f} / {r['bal_tail']:.2f} | {r['train_dropped']:.3f} / {r['dropped']:.3f} | "
                  f"{r['ept']:.2f} | {r['mi']:.3f} |")
    print()
    print("| run | seeds | mean loss | spread | " + " | ".join(doms) + " | max/mean last 20% | dropped (train / eval) | I(domain; expert) |")
    print("|---|---|---|---|" + "---|" * len(doms) + "---|---|---|")
    for n, runs in rows.items():
        k = len(runs)
        avg = lambda f: sum(f(r) for _, r in runs) / k  # noqa: E731
        means = [r["mean"] for _, r in runs]
        print(f"| {n} | {k} | {avg(lambda r: r['mean']):.4f} | {max(means) - min(means):.4f} | " +
              " | ".join(f"{avg(lambda r, d=d: r['loss'][d]):.4f}" for d in doms) +
              f" | {avg(lambda r: r['bal_tail']):.2f} | {avg(lambda r: r['train_dropped']):.3f} / {avg(lambda r: r['dropped']):.3f} | "
              f"{avg(lambda r: r['mi']):.3f} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("experiments_routing: no matplotlib; no plot", file=sys.stderr)
        return 0
    fig, ax = plt.subplots(figsize=(7, 4))
    for n, runs in rows.items():
        seed, r = runs[0]
        ax.plot([s for s, _ in r["curve"]], [b for _, b in r["curve"]], label=f"{n} (seed {seed})")
    ax.set_xlabel("step")
    ax.set_ylabel("max / mean slots per expert (mean over layers)")
    ax.set_title("Load balance during training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.plot, dpi=90)
    print(f"\nplot: {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
