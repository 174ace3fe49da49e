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


def fifth(title, before_name, after_name, routing_label):
    """The fifth domain's table: the five val splits before and after, the old four's movement."""
    before, after = rep.load(before_name), rep.load(after_name)
    if not (before and after):
        return
    ds = DOMS + ["python"]
    print(f"\nthe fifth domain on {title}\n")
    print("| model | " + " | ".join(ds) + " |")
    print("|---|" + "---:|" * len(ds))
    for label, j in [("before (4 experts)", before), ("python added, row fitted", after)]:
        print(f"| {label} | " + " | ".join(f"{j['val'][d]['loss']:.4f}" for d in ds) + " |")
    print("| old four's movement | " + " | ".join(
        f"{100 * (after['val'][d]['loss'] / before['val'][d]['loss'] - 1):+.2f}%" for d in DOMS) + " | |")
    rep.routing(routing_label, after_name, ds)


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
        ("branches 12, all 102 (the seed's moments)", "pall_12_102m"),
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
        ("branches 12, all 102 (moments)", "pall_12_102m", "moe_rerun"),
        ("branches 25, all 50 (moments) - the control", "pall_25_50m", "all150m"),
        ("branches 12, all 102 (moments) - the control", "pall_12_102m", "all150m"),
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
        ("branches 12, all 102 (moments)", "pall_12_102m", "dense"),
        ("MoE from scratch (rerun)", "moe_rerun", "dense"),
    ])
    for label, f in [("the MoE seed", "moeseed95"), ("plug-MoE-95 replace", "pmoe95"),
                     ("plug-MoE-95 add", "pmoe95_add"), ("branches 25, all 50 (moments)", "pall_25_50m")]:
        rep.routing(label, f, DOMS)
    # the fifth domain: the old four on the five val splits before and after
    fifth("plug-MoE-95 replace (python's branch, row below, fitted 26 steps on five domains)",
          "pmoe95_5", "fit_pmoe95", "python added, row fitted")
    # on branches 25 + all 50 (moments): python's branch from that model
    for how, fit in [("below", "fit_pall_25_50m"), ("mean", "fit_pall_25_50m_mean")]:
        fifth(f"branches 25 + all 50 (python's branch from that model, row {how}, fitted 26 steps)",
              "pall_25_50m_5", fit, f"python added to branches 25 + all 50, row {how}, fitted")
    # the fitted row (part fifth_fit): as it is, then refined with supervised routing
    # (FIFTH_ON=pall_25_50m_2 PARTS="fifth_all fifth_fit": the same on the seed-2 plug, suffix _2)
    for sfx in ["", "_2"]:
        for how, fit in [("below", f"fit_pall_25_50m{sfx}"), ("fit", f"pall_25_50m{sfx}_py_fit"),
                         ("fit, then the router term (supervised routing)", f"fit_pall_25_50m{sfx}_fit_sup")]:
            if sfx or how != "below":  # seed 1's below is in the table above
                fifth(f"branches 25 + all 50{' (seed 2)' if sfx else ''} (python's branch from that model, row {how})",
                      f"pall_25_50m{sfx}_5", fit, f"python added to branches 25 + all 50{sfx}, row {how}")
    # a seed whose router separates the domains (parts moesup, sup_plug; SUP_CE=0.03 adds 003)
    rep.loss_table([
        ("supervised MoE, router-ce 0.1: its step 2850 (the seed)", "moesupseed95"),
        ("supervised MoE, router-ce 0.1, to step 3000", "moesup"),
        ("plug from it: branches 25, all 50 (moments)", "pall_25_50m_sup"),
        ("supervised MoE, router-ce 0.03: its step 2850", "moesup003seed95"),
        ("supervised MoE, router-ce 0.03, to step 3000", "moesup003"),
        ("plug from it: branches 25, all 50 (moments)", "pall_25_50m_sup003"),
    ], ["dense", "moe_rerun"])
    rep.minus_table("a seed whose router separates the domains", "difference", [
        ("plug (0.1 seed) - its own supervised MoE", "pall_25_50m_sup", "moesup"),
        ("plug (0.03 seed) - its own supervised MoE", "pall_25_50m_sup003", "moesup003"),
        ("supervised MoE (0.1) - MoE from scratch", "moesup", "moe_rerun"),
        ("supervised MoE (0.03) - MoE from scratch", "moesup003", "moe_rerun"),
        ("plug (0.03 seed) - dense", "pall_25_50m_sup003", "dense"),
    ])
    for label, f in [("the supervised MoE (0.1)", "moesup"), ("plug from it", "pall_25_50m_sup"),
                     ("the supervised MoE (0.03)", "moesup003"), ("plug from it", "pall_25_50m_sup003")]:
        rep.routing(label, f, DOMS)
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
