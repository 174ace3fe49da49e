#!/usr/bin/python3
"""Plots of docs/experiments.md, "Branch-train-plug against training whole", from the
evaluations scripts/experiments_plug.sh writes (OUT/eval_*.json).

    scripts/plot_experiments_plug.py [OUT [DIR]]     (defaults: runs/plug docs/img)

writes DIR/plug_loss.png (per-domain validation loss of each method) and
DIR/plug_routing.png (domain x expert routing shares, mean over the MoE layers).
Models not evaluated yet are left out. Needs Debian's python3-matplotlib
(scripts/setup.sh --plots)."""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else "runs/plug"
DIR = sys.argv[2] if len(sys.argv) > 2 else "docs/img"
DOMS = ["code", "math", "legal", "speeches"]


def load(name):
    path = os.path.join(OUT, f"eval_{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def loss_plot():
    methods = [("dense", "dense"), ("MoE", "moe"), ("BTX 25%", "btx25"), ("plug 25%", "plug25"),
               ("plug+all 25%", "plugall25"), ("BTX 50%", "btx50"), ("plug 50%", "plug50"),
               ("plug+all 50%", "plugall50")]
    methods = [(label, load(f)) for label, f in methods]
    methods = [(label, j) for label, j in methods if j]
    if not methods:
        return
    fig, ax = plt.subplots(figsize=(8, 3.6))
    w = 0.8 / len(methods)
    for i, (label, j) in enumerate(methods):
        xs = [k + (i - (len(methods) - 1) / 2) * w for k in range(len(DOMS))]
        ax.bar(xs, [j["val"][d]["loss"] for d in DOMS], w, label=label)
    lo = min(j["val"][d]["loss"] for _, j in methods for d in DOMS)
    hi = max(j["val"][d]["loss"] for _, j in methods for d in DOMS)
    ax.set_ylim(lo - 0.3, hi + 0.6)  # room for the legend
    ax.set_xticks(range(len(DOMS)))
    ax.set_xticklabels(DOMS)
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("small preset, 256 steps (524k tokens) per method, whole val splits")
    ax.legend(ncol=4, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(os.path.join(DIR, "plug_loss.png"), dpi=80)
    plt.close(fig)


def routing_plot():
    models = [("MoE from scratch", "moe", DOMS), ("BTX, seed 25%", "btx25", DOMS),
              ("plug, seed 25%", "plug25", DOMS), ("plug, seed 50%", "plug50", DOMS),
              ("plug25 + python, row below, fitted", "py_below_fit", DOMS + ["python"]),
              ("plug25 + python, row mean, fitted", "py_mean_fit", DOMS + ["python"])]
    models = [(label, load(f), ds) for label, f, ds in models]
    models = [(label, j, ds) for label, j, ds in models if j and j.get("routing_share")]
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(2.6 * len(models), 2.9))
    if len(models) == 1:
        axes = [axes]
    for ax, (label, j, ds) in zip(axes, models):
        r = [j["routing_share"][d]["mean"] for d in ds]
        ax.imshow(r, vmin=0, vmax=0.6, cmap="Blues")
        for y, row in enumerate(r):
            for x, v in enumerate(row):
                ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if v > 0.35 else "black")
        ax.set_xticks(range(len(r[0])))
        ax.set_xticklabels([f"e{e}" for e in range(len(r[0]))], fontsize=7)
        ax.set_yticks(range(len(ds)))
        ax.set_yticklabels(ds, fontsize=7)
        ax.set_title(label, fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(DIR, "plug_routing.png"), dpi=80)
    plt.close(fig)


os.makedirs(DIR, exist_ok=True)
loss_plot()
routing_plot()
