#!/usr/bin/python3
"""How far a classify run at another precision is from the FP32 run of the same library and
model: per label the largest |p - p_fp32| and the overlap of the top K by that label; with a
labels column (ChestX-ray14's 'Finding Labels', kept at pack with --keep-columns), each run's
ROC-AUC per label (an image is positive for a label named in its '|'-separated findings).

  tools/compare_precisions.py RUN_FP32 RUN_BF16 [RUN_INT8 ...] [--top 100]
                              [--labels-column "Finding Labels"]

Reads RUN/predictions.csv of each run; prints one JSON object per run after the first. The
agreement limits of issue 20: |dp| <= 0.02 per label, top-100 overlap >= 95%."""
import argparse
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpcscreen_py.metrics import roc_auc  # noqa: E402


def read_predictions(run):
    path = os.path.join(run, "predictions.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {(r["shard"], r["row"]): r for r in rows}


def labels_of(rows, model_run):
    with open(os.path.join(model_run, "run.json")) as f:
        return json.load(f)["classify"]["model"]["labels"]


def top(rows, label, k):
    order = sorted(rows.items(), key=lambda kv: (-float(kv[1][label]), kv[0]))
    return {key for key, _ in order[:k]}


def aucs(rows, labels, column):
    out = {}
    for label in labels:
        y = [label in r[column].split("|") for r in rows.values()]
        s = [float(r[label]) for r in rows.values()]
        try:
            out[label] = roc_auc(y, s)
        except ValueError:
            out[label] = None  # one class only
    return out


def compare(base, other, labels, k, column):
    if set(base) != set(other):
        raise SystemExit("the runs did not score the same images: compare runs of one library")
    k = min(k, len(base))
    result = {"images": len(base), "top_k": k, "labels": {}}
    for label in labels:
        d = max(abs(float(other[key][label]) - float(base[key][label])) for key in base)
        overlap = len(top(base, label, k) & top(other, label, k)) / k if k else 1.0
        result["labels"][label] = {"max_abs_dp": d, "top_overlap": overlap}
    result["max_abs_dp"] = max(v["max_abs_dp"] for v in result["labels"].values())
    result["min_top_overlap"] = min(v["top_overlap"] for v in result["labels"].values())
    result["within_limits"] = result["max_abs_dp"] <= 0.02 and result["min_top_overlap"] >= 0.95
    if column:
        result["roc_auc"] = aucs(other, labels, column)
        result["roc_auc_fp32"] = aucs(base, labels, column)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="the FP32 run first, then the others")
    p.add_argument("--top", type=int, default=100, help="K of the top-K overlap (default 100)")
    p.add_argument("--labels-column", help="kept column with '|'-separated findings, for ROC-AUC")
    a = p.parse_args()
    if len(a.runs) < 2:
        p.error("give the FP32 run and at least one other")
    base = read_predictions(a.runs[0])
    labels = labels_of(base, a.runs[0])
    if a.labels_column and base and a.labels_column not in next(iter(base.values())):
        p.error(f"predictions.csv has no column {a.labels_column!r}: pack with --keep-columns")
    for run in a.runs[1:]:
        r = compare(base, read_predictions(run), labels, a.top, a.labels_column)
        print(json.dumps({"run": run, **r}))


if __name__ == "__main__":
    main()
