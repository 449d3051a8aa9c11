#!/usr/bin/env python3
"""tools/compare_precisions.py on two hand-made runs whose agreement and ROC-AUC are worked out
by hand in the comments below."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "..", "..", "tools", "compare_precisions.py")
FINDINGS = ["A", "B", "A|B", "No Finding"]


def write_run(folder, a, b):
    os.makedirs(folder)
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump({"classify": {"model": {"labels": ["A", "B"]}}}, f)
    with open(os.path.join(folder, "predictions.csv"), "w") as f:
        f.write("shard,row,id,Finding Labels,A,B\n")
        for i in range(4):
            f.write(f"s.h5,{i},img{i},{FINDINGS[i]},{a[i]},{b[i]}\n")


failures = 0


def check(cond, what):
    global failures
    print(("  ok: " if cond else "  FAIL: ") + what)
    failures += 0 if cond else 1


with tempfile.TemporaryDirectory() as d:
    fp32, other = os.path.join(d, "fp32"), os.path.join(d, "other")
    write_run(fp32, [0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6])
    write_run(other, [0.88, 0.12, 0.31, 0.52], [0.2, 0.8, 0.4, 0.6])
    out = subprocess.run([sys.executable, TOOL, fp32, other, "--top", "2", "--labels-column", "Finding Labels"],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    # A: |0.52 - 0.3| = 0.22 is the largest change; B is unchanged.
    check(abs(r["labels"]["A"]["max_abs_dp"] - 0.22) < 1e-12 and r["labels"]["B"]["max_abs_dp"] == 0,
          "max |dp| per label: 0.22 for A, 0 for B")
    # Top 2 by A: rows {0, 2} at FP32, {0, 3} in the other run: overlap 1/2. B: the same rows.
    check(r["labels"]["A"]["top_overlap"] == 0.5 and r["labels"]["B"]["top_overlap"] == 1.0,
          "top-2 overlap: 0.5 for A, 1.0 for B")
    check(r["within_limits"] is False, "outside the limits (|dp| 0.22 > 0.02)")
    # A positives rows 0, 2; negatives 1, 3. FP32: 0.9, 0.5 > 0.1, 0.3 (4 of 4 pairs) = 1.0.
    # Other: 0.88 beats both; 0.31 beats 0.12 but not 0.52: 3 of 4 = 0.75.
    # B positives rows 1, 2 (0.8, 0.4) vs negatives 0, 3 (0.2, 0.6): 3 of 4 = 0.75 in both.
    check(r["roc_auc_fp32"] == {"A": 1.0, "B": 0.75} and r["roc_auc"] == {"A": 0.75, "B": 0.75},
          "ROC-AUC per label from the findings column")
    bad = subprocess.run([sys.executable, TOOL, fp32, other, "--labels-column", "Nope"],
                         capture_output=True, text=True)
    check(bad.returncode == 2 and "no column" in bad.stderr, "an absent labels column is a usage error")
print("FAILED" if failures else "passed")
sys.exit(1 if failures else 0)
