"""Draws a `make bench` report (bench/results/<date>.json) as a PNG.

Left: each target as a multiple of its goal (1 = just met). Right: throughput of every
measure, the machine's ceilings in grey, on a log scale.
"""

import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def margin(target):
    """How far past its goal a target is: >= 1 met, < 1 missed."""
    goal = float(re.search(r"(?:<=|>=|<)\s*([\d.]+)", target["goal"]).group(1))
    measured = target["measured"]
    if "% of" in target["goal"]:
        ratio = float(re.search(r"= ([\d.]+)%", measured).group(1))
        return ratio / goal
    number = re.search(r"[\d.]+", measured)
    if goal == 0 or number is None:
        # Nothing to divide by (a goal of zero, a figure not counted): met or not.
        return 10.0 if target["met"] else 0.1
    value = float(number.group())
    return goal / value if value > 0 else 10.0


def main(source, destination):
    with open(source) as f:
        report = json.load(f)
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6.5))

    targets = report["targets"]
    names = [t["what"] for t in targets]
    values = [min(margin(t), 10.0) for t in targets]
    colours = ["#2e7d32" if t["met"] else "#c62828" for t in targets]
    left.barh(names, values, color=colours)
    left.axvline(1.0, color="black", linewidth=1)
    left.set_xscale("log")
    left.set_xlabel("multiple of the goal (log; 1 = met exactly)")
    left.set_title("Targets")
    left.invert_yaxis()

    measures = [m for m in report["scenarios"] + report["ceilings"] if m["unit"]]
    labels = [f'{m["name"]} ({m["unit"]})' for m in measures]
    through = [m["throughput"] for m in measures]
    shades = ["#1565c0" if m in report["scenarios"] else "#9e9e9e" for m in measures]
    right.barh(labels, through, color=shades)
    right.set_xscale("log")
    right.set_xlabel("per second (log)")
    right.set_title("Throughput (blue: system, grey: ceilings)")
    right.invert_yaxis()
    right.tick_params(axis="y", labelsize=7)
    for bar, value in zip(right.patches, through):
        right.text(value, bar.get_y() + bar.get_height() / 2, f" {value:,.0f}", va="center", fontsize=7)

    fig.suptitle(f'make bench, {report["date"]}: {report["machine"].get("cpu", "")}, '
                 f'{report["machine"].get("cores", "?")} cores (noisy shared machine)')
    fig.tight_layout()
    fig.savefig(destination, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
