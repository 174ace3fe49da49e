#!/usr/bin/python3
"""plot_run.py: a run folder of `monolith train` -> PNG plots.

    scripts/plot_run.py RUN_DIR [--out DIR]

Reads RUN_DIR/metrics.jsonl and writes, into --out (default RUN_DIR):
  loss.png      training loss (raw and smoothed) and per-domain validation loss by step
  training.png  learning rate, gradient norm and tokens/s by step
  routing.png   domain x expert routing share at the last evaluation: one heatmap per
                MoE layer and their average (each row sums to 1)
  load.png      tokens per expert over training, per MoE layer (load balance)

Needs Debian's python3-matplotlib (scripts/setup.sh --plots).
"""
import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    train, evals = {}, {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                sys.exit(f"plot_run: {path}:{n}: not a JSON line")
            (train if r.get("type") == "train" else evals)[r["step"]] = r  # a resumed run: the last line wins
    return [train[k] for k in sorted(train)], [evals[k] for k in sorted(evals)]


def smooth(xs, frac=0.02):
    """Centered moving average over a window of about frac of the points (no lag)."""
    h = max(1, int(len(xs) * frac / 2))
    out = []
    for i in range(len(xs)):
        w = [x for x in xs[max(0, i - h):i + h + 1] if x is not None]
        out.append(sum(w) / len(w) if w else None)
    return out


def plot_loss(train, evals, out):
    fig, ax = plt.subplots(figsize=(8, 5))
    steps = [r["step"] for r in train]
    loss = [r["loss"] for r in train]
    ax.plot(steps, loss, color="0.8", lw=0.8, label="train loss")
    ax.plot(steps, smooth(loss), color="k", lw=1.5, label="train loss (smoothed)")
    domains = sorted({d for e in evals for d in e["val"]})
    for d in domains:
        pts = [(e["step"], e["val"][d]["loss"]) for e in evals if d in e["val"] and e["val"][d]["loss"] is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=4, lw=1.5, label=f"val {d}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_training(train, out):
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    steps = [r["step"] for r in train]
    for ax, key, label in zip(axes, ("lr", "grad_norm", "tokens_per_s"), ("learning rate", "gradient norm", "tokens/s")):
        ax.plot(steps, [r[key] for r in train], lw=1)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def shares(counts):
    tot = sum(counts)
    return [c / tot if tot else 0.0 for c in counts]


def plot_routing(evals, out):
    last = next((e for e in reversed(evals) if e.get("routing")), None)
    if last is None:
        return False
    domains = list(last["routing"])
    layers = list(last["routing"][domains[0]])
    mats = {L: [shares(last["routing"][d][L]) for d in domains] for L in layers}
    E = len(mats[layers[0]][0])
    mats["mean"] = [[sum(mats[L][i][e] for L in layers) / len(layers) for e in range(E)] for i in range(len(domains))]
    panels = layers + ["mean"]
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 + 0.55 * E * cols, 0.9 + 0.5 * len(domains) * rows + 0.6),
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, L in zip(axes.flat, panels):
        m = mats[L]
        im = ax.imshow(m, vmin=0, vmax=max(max(r) for r in m) or 1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(E))
        ax.set_xticklabels([str(e) for e in range(E)])
        ax.set_yticks(range(len(domains)))
        ax.set_yticklabels(domains)
        ax.set_xlabel("expert")
        ax.set_title("average over MoE layers" if L == "mean" else f"layer {L}")
        for i, row in enumerate(m):
            for e, v in enumerate(row):
                ax.text(e, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if v < 0.6 * max(max(r) for r in m) else "k")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"share of each domain's routing slots per expert (step {last['step']})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def plot_load(train, out):
    if not train or not train[0].get("expert_tokens"):
        return False
    layers = list(train[0]["expert_tokens"])
    fig, axes = plt.subplots(len(layers), 1, figsize=(8, 1.0 + 2.0 * len(layers)), sharex=True, squeeze=False)
    steps = [r["step"] for r in train]
    for ax, L in zip(axes[:, 0], layers):
        E = len(train[0]["expert_tokens"][L])
        for e in range(E):
            ax.plot(steps, smooth([shares(r["expert_tokens"][L])[e] for r in train], 0.05), lw=1, label=f"e{e}")
        ax.axhline(1 / E, color="k", ls=":", lw=0.8)
        ax.set_ylabel(f"layer {L} share")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(ncol=min(E, 8), fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("step")
    fig.suptitle("share of routing slots per expert (smoothed; dotted: uniform)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser(description="Plots of a monolith train run folder.")
    ap.add_argument("run", help="run folder (holds metrics.jsonl)")
    ap.add_argument("--out", help="where the PNGs go (default: the run folder)")
    a = ap.parse_args()
    path = os.path.join(a.run, "metrics.jsonl")
    if not os.path.exists(path):
        sys.exit(f"plot_run: {path} not found: is {a.run} a run folder of monolith train?")
    train, evals = read_metrics(path)
    if not train:
        sys.exit(f"plot_run: {path} has no training steps yet")
    out = a.out or a.run
    os.makedirs(out, exist_ok=True)
    made = []
    plot_loss(train, evals, os.path.join(out, "loss.png"))
    made.append("loss.png")
    plot_training(train, os.path.join(out, "training.png"))
    made.append("training.png")
    if plot_routing(evals, os.path.join(out, "routing.png")):
        made.append("routing.png")
    if plot_load(train, os.path.join(out, "load.png")):
        made.append("load.png")
    print("plot_run: wrote " + ", ".join(os.path.join(out, m) for m in made))


if __name__ == "__main__":
    main()
