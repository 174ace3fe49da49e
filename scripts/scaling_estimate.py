#!/usr/bin/env python3
"""scaling_estimate.py: the data-parallel scaling table of docs/distributed.md.

Modelled, not measured: per step, compute (measured elsewhere, seconds per step of one
rank) against the gradient all-reduce of 4P bytes as Rabenseifner's reduce-scatter +
all-gather: 2 (M-1)/M x 4P / BW + 2 log2(M) alpha per 4 MB bucket, no overlap.

  scripts/scaling_estimate.py NAME:PARAMS:COMPUTE_S [...] [--alpha-us 20]
"""
import argparse
import math

ap = argparse.ArgumentParser()
ap.add_argument("models", nargs="+", help="NAME:PARAMS:COMPUTE_SECONDS_PER_STEP")
ap.add_argument("--alpha-us", type=float, default=20.0, help="latency per message, microseconds")
ap.add_argument("--speedup", type=float, default=1.0, help="divide compute by this (a faster machine)")
a = ap.parse_args()

BUCKET = 4 * (1 << 20)
print("| model | compute/step | machines | " + " | ".join(f"{g} Gbit/s" for g in (25, 100, 400)) + " |")
print("|---|---:|---:|" + "---:|" * 3)
for spec in a.models:
    name, p, tc = spec.split(":")
    p, tc = int(p), float(tc) / a.speedup
    for m in (8, 64, 512):
        cells = []
        for gbit in (25, 100, 400):
            bw = gbit * 1e9 / 8
            buckets = math.ceil(4 * p / BUCKET)
            t = 2 * (m - 1) / m * 4 * p / bw + buckets * 2 * math.log2(m) * a.alpha_us * 1e-6
            cells.append(f"{1e3 * t:.0f} ms, {100 * tc / (tc + t):.0f}%")
        print(f"| {name} | {tc:.2f} s | {m} | " + " | ".join(cells) + " |")
