#!/usr/bin/env python3
"""experiments_plug_moe_report.py OUT [BUDGET]: the markdown tables of scripts/experiments_plug_moe.sh
(docs/experiments.md, "Branch-train-plug from a MoE seed") from the eval_*.json files in
OUT, beside experiments_plug_late.sh's dense, MoE and plug-95 at 3,000 steps; what has not
been evaluated is left out. BUDGET labels the first table (default: the 3,000-step round)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import experiments_plug_report as rep  # noqa: E402  (its tables, over the same eval files)

DOMS = rep.DOMS


def main():
    rep.out = sys.argv[1]
    budget = sys.argv[2] if len(sys.argv) > 2 else "3,000 steps, 6,144,000 tokens per method"
    print(f"\nvalidation loss, whole val splits ({budget})\n")
    rep.loss_table([
        ("dense", "dense"),
        ("MoE from scratch (4 x 512, top-2)", "moe"),
        ("MoE from scratch (the seed's own run to the end)", "moe_rerun"),
        ("plug-95 (dense seed at 2850)", "v95"),
        ("MoE seed (the MoE run at 95% of its steps)", "moeseed95"),
        ("plug-MoE-95, replace, before the router", "pmoe95_plugged"),
        ("plug-MoE-95, replace (4 experts, top-2)", "pmoe95"),
        ("plug-MoE-95, add, before the router", "pmoe95_add_plugged"),
        ("plug-MoE-95, add (8 experts, top-2)", "pmoe95_add"),
        ("branches 33, all 18 (fresh Adam)", "pall_33_18"),
        ("branches 25, all 50 (fresh Adam)", "pall_25_50"),
        ("branches 33, all 18 (the seed's moments)", "pall_33_18m"),
        ("branches 25, all 50 (the seed's moments)", "pall_25_50m"),
        ("branches 33 (the seed's moments), router 18", "pmoe95bm"),
        ("branches 25 (the seed's moments), all 50 (the seed's moments)", "pall_25_50bm"),
        ("control: all 150 from the seed (fresh Adam)", "all150"),
        ("control: all 150 from the seed (the seed's moments)", "all150m"),
    ], ["dense", "moe_rerun", "moe"])
    rep.minus_table("per domain against the MoE from scratch (the same run's own step 3000)", "method - MoE", [
        ("plug-MoE-95 replace", "pmoe95", "moe_rerun"),
        ("plug-MoE-95 add", "pmoe95_add", "moe_rerun"),
        ("branches 33, all 18 (fresh Adam)", "pall_33_18", "moe_rerun"),
        ("branches 25, all 50 (fresh Adam)", "pall_25_50", "moe_rerun"),
        ("branches 33, all 18 (moments)", "pall_33_18m", "moe_rerun"),
        ("branches 25, all 50 (moments)", "pall_25_50m", "moe_rerun"),
        ("branches 33 (moments), router 18", "pmoe95bm", "moe_rerun"),
        ("branches 25 (moments), all 50 (moments)", "pall_25_50bm", "moe_rerun"),
        ("all 150 from the seed (fresh Adam)", "all150", "moe_rerun"),
        ("all 150 from the seed (moments)", "all150m", "moe_rerun"),
        ("the MoE's own last 5% (its end - the seed)", "moe_rerun", "moeseed95"),
        ("the rerun - the original MoE run", "moe_rerun", "moe"),
    ])
    rep.minus_table("per domain against dense", "method - dense", [
        ("plug-MoE-95 replace", "pmoe95", "dense"),
        ("plug-MoE-95 add", "pmoe95_add", "dense"),
        ("branches 33, all 18 (moments)", "pall_33_18m", "dense"),
        ("branches 25, all 50 (moments)", "pall_25_50m", "dense"),
        ("branches 33 (moments), router 18", "pmoe95bm", "dense"),
        ("branches 25 (moments), all 50 (moments)", "pall_25_50bm", "dense"),
        ("MoE from scratch (rerun)", "moe_rerun", "dense"),
    ])
    for label, f in [("the MoE seed", "moeseed95"), ("plug-MoE-95 replace", "pmoe95"),
                     ("plug-MoE-95 add", "pmoe95_add"), ("branches 25, all 50 (moments)", "pall_25_50m")]:
        rep.routing(label, f, DOMS)
    # the fifth domain: the old four on the five val splits before and after
    before, after, added = rep.load("pmoe95_5"), rep.load("fit_pmoe95"), rep.load("pmoe95_py_below")
    if before and after:
        ds = DOMS + ["python"]
        print("\nthe fifth domain on plug-MoE-95 replace (python's branch, row below, fitted 26 steps on five domains)\n")
        print("| model | " + " | ".join(ds) + " |")
        print("|---|" + "---:|" * len(ds))
        for label, j in [("before (4 experts)", before), ("python added, row fitted", after)]:
            print(f"| {label} | " + " | ".join(f"{j['val'][d]['loss']:.4f}" for d in ds) + " |")
        print("| old four's movement | " + " | ".join(
            f"{100 * (after['val'][d]['loss'] / before['val'][d]['loss'] - 1):+.2f}%" for d in DOMS) + " | |")
        rep.routing("python added, row fitted", "fit_pmoe95", ds)
    # the fifth domain on branches 25 + all 50 (moments): python's branch from that model
    before, after = rep.load("pall_25_50m_5"), rep.load("fit_pall_25_50m")
    if before and after:
        ds = DOMS + ["python"]
        print("\nthe fifth domain on branches 25 + all 50 (python's branch from that model, row below, fitted 26 steps)\n")
        print("| model | " + " | ".join(ds) + " |")
        print("|---|" + "---:|" * len(ds))
        for label, j in [("before (4 experts)", before), ("python added, row fitted", after)]:
            print(f"| {label} | " + " | ".join(f"{j['val'][d]['loss']:.4f}" for d in ds) + " |")
        print("| old four's movement | " + " | ".join(
            f"{100 * (after['val'][d]['loss'] / before['val'][d]['loss'] - 1):+.2f}%" for d in DOMS) + " | |")
        rep.routing("python added to branches 25 + all 50, row fitted", "fit_pall_25_50m", ds)
    # the second seed
    rep.minus_table("the second seed (--seed 2): branches 25 + all 50 (moments) against its own MoE", "method - MoE", [
        ("seed 2: branches 25, all 50 (moments)", "pall_25_50m_2", "moe2"),
        ("seed 2: the MoE's own last 5%", "moe2", "moeseed95_2"),
        ("seed 1: branches 25, all 50 (moments)", "pall_25_50m", "moe_rerun"),
        ("seed 2 MoE - seed 1 MoE (rerun)", "moe2", "moe_rerun"),
    ])
    rep.summaries(rep.out, ["pmoe95", "pmoe95_add", "pall_25_50m"], "pmoe95")


if __name__ == "__main__":
    main()
