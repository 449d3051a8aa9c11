#!/usr/bin/python3
"""Validates the shipped models through the pipeline: packs each held-out split into shards,
runs `hpcscreen screen` / `annotate` on it, computes the metric from the pipeline's own outputs,
and compares it with the same metric computed in PyTorch on the same split (which must agree to
1e-3) and with the target.

With --precisions, the pipeline runs again at each reduced precision (`--precision bf16|int8`,
converted by hpcscreen at load from the same file) and each metric is checked against FP32's
(ROC-AUC within 0.005, Q3 within 0.005), with the per-record agreement: max |score - FP32 score|
and, per residue, the share of argmax labels equal to FP32's. A precision the CPU lacks is
reported as skipped (hpcscreen refuses it, naming the ISA).

  /usr/bin/python3 tools/validate_models.py --hpcscreen build/hpcscreen --data ../shared/data --work build/validate
  /usr/bin/python3 tools/validate_models.py --precisions fp32,bf16,int8 --json build/validate.json
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import torch  # noqa: E402

from hpcscreen_py import featurize, gnn, metrics, protein  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1")
RESULTS = []
PRECISION_TOLERANCE = {"ROC-AUC": 0.005, "Q3": 0.005}  # of FP32's value, the targets of issue 14


class CpuLacks(Exception):
    pass


def sh(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if r.returncode == 1 and "which this CPU lacks" in r.stderr:
        raise CpuLacks(r.stderr.strip().splitlines()[-1])
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return r


def report(name, pipeline_value, python_value, target, higher=True):
    agree = abs(pipeline_value - python_value) < 1e-3
    meets = pipeline_value >= target if higher else pipeline_value <= target
    RESULTS.append({"metric": name, "pipeline": round(pipeline_value, 4), "python": round(python_value, 4), "target": target,
                    "agree_1e-3": agree, "meets_target": meets})
    print(f"{name}: pipeline {pipeline_value:.4f}, PyTorch {python_value:.4f}, target {target} -> "
          f"{'agree' if agree else 'DISAGREE'}, {'meets target' if meets else 'BELOW TARGET'}", flush=True)


def run_hpcscreen(a, args, prec="fp32"):
    sh(["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", a.hpcscreen, *args, "--threads", "1", "--progress-interval", "0",
        "--precision", prec])


def report_precision(name, kind, prec, value, fp32_value, max_abs_delta, argmax_agreement=None):
    """A reduced precision's metric against FP32's, with the per-record agreement."""
    tol = PRECISION_TOLERANCE[kind]
    ok = abs(value - fp32_value) <= tol
    r = {"metric": f"{name} [{prec}]", "precision": prec, "pipeline": round(value, 4), "fp32": round(fp32_value, 4),
         "delta_vs_fp32": round(value - fp32_value, 4), "tolerance": tol, "max_abs_score_delta": round(max_abs_delta, 4),
         "within_tolerance": ok}
    if argmax_agreement is not None:
        r["argmax_agreement"] = round(argmax_agreement, 5)
    RESULTS.append(r)
    extra = f", argmax agreement {argmax_agreement:.4f}" if argmax_agreement is not None else ""
    print(f"{name} at {prec}: {value:.4f} (FP32 {fp32_value:.4f}, delta {value - fp32_value:+.4f}, tolerance {tol}) "
          f"max |score delta| {max_abs_delta:.4f}{extra} -> {'within tolerance' if ok else 'OUTSIDE TOLERANCE'}", flush=True)


def skipped(name, prec, why):
    RESULTS.append({"metric": f"{name} [{prec}]", "precision": prec, "skipped": why})
    print(f"{name} at {prec}: skipped: {why}", flush=True)


def reduced(a):
    return [p for p in a.precisions.split(",") if p != "fp32"]


def validate_hiv(a):
    split = json.load(open(os.path.join(ROOT, "models", "hiv_split.json")))
    lines = open(os.path.join(a.data, "hiv.txt")).read().splitlines()
    test = [(i, *lines[i].split()) for i in split["test_lines"]]
    smi = os.path.join(a.work, "hiv_test.smi")
    with open(smi, "w") as f:
        for i, s, _ in test:
            f.write(f"{s} line{i}\n")
    lib = os.path.join(a.work, "hiv_lib")
    sh([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib])

    def pipeline_scores(prec):
        out = os.path.join(a.work, f"hiv_run_{prec}")
        run_hpcscreen(a, ["screen", "--library", lib, "--model", os.path.join(ROOT, "models", "hiv_gnn.pt"), "--out", out,
                          "--top-k", str(len(test))], prec)
        with open(os.path.join(out, "hits.csv"), newline="") as f:
            return {r["id"]: float(r["score"]) for r in csv.DictReader(f)}

    score = pipeline_scores("fp32")
    label = {f"line{i}": int(y) for i, _, y in test}
    pipeline_auc = metrics.roc_auc([label[k] for k in score], [score[k] for k in score])
    model = torch.jit.load(os.path.join(ROOT, "models", "hiv_gnn.pt"))
    ys, ps = [], []
    with torch.no_grad():
        graphs = [(featurize.smiles_to_graph(s), int(y)) for _, s, y in test]
        graphs = [(g, y) for g, y in graphs if g is not None]
        for k in range(0, len(graphs), 512):
            part = graphs[k:k + 512]
            ps += model(*gnn.batch_graphs([g for g, _ in part]))[:, 0].tolist()
            ys += [y for _, y in part]
    check_n = len(score) == len(graphs)
    print(f"HIV test split: {len(test)} molecules, {len(score)} scored by the pipeline, {len(graphs)} by Python ({'same' if check_n else 'DIFFERENT'})")
    report("HIV ROC-AUC (random split)", pipeline_auc, metrics.roc_auc(ys, ps), 0.80)
    for prec in reduced(a):
        try:
            s = pipeline_scores(prec)
        except CpuLacks as e:
            skipped("HIV ROC-AUC (random split)", prec, str(e))
            continue
        report_precision("HIV ROC-AUC (random split)", "ROC-AUC", prec, metrics.roc_auc([label[k] for k in s], [s[k] for k in s]),
                         pipeline_auc, max(abs(s[k] - score[k]) for k in score))


def validate_ss3(a):
    import h5py
    model_path = os.path.join(ROOT, "models", "ss3_bert.pt")
    extra = {"hpcscreen.json": ""}
    model = torch.jit.load(model_path, _extra_files=extra)
    cfg = json.loads(extra["hpcscreen.json"])["tokenizer"]
    size = cfg["max_length"] - 2
    for name, target in (("TS115", 0.60), ("CASP12", None)):
        with open(os.path.join(a.data, "netsurfp2", f"{name}_HHblits.csv"), encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f, skipinitialspace=True))
        fa = os.path.join(a.work, f"{name}.fa")
        with open(fa, "w") as f:
            for i, r in enumerate(rows):
                f.write(f">{name}_{i}\n{''.join(r['input'].split())}\n")
        lib = os.path.join(a.work, f"{name}_lib")
        sh([a.hpcscreen, "pack", "proteins", "--input", fa, "--out", lib])

        def pipeline_outputs(prec):
            """Per record: (predicted labels, logits) as the pipeline wrote them."""
            out = os.path.join(a.work, f"{name}_run_{prec}")
            run_hpcscreen(a, ["annotate", "--library", lib, "--model", model_path, "--out", out, "--long-sequences", "window"], prec)
            labels = json.load(open(os.path.join(out, "annotations.json")))
            got = {}
            for fl in labels["files"]:
                with h5py.File(os.path.join(out, fl["file"]), "r") as h:
                    o, idb, ido = h["residue_offsets"][()], h["id/bytes"][()].tobytes(), h["id/offsets"][()]
                    for i in range(len(o) - 1):
                        got[idb[ido[i]:ido[i + 1]].decode()] = (h["prediction"][o[i]:o[i + 1]], h["logits"][o[i]:o[i + 1]])
            return got

        fp32_out = pipeline_outputs("fp32")
        pred = {k: v[0] for k, v in fp32_out.items()}

        def q3(p):
            right = total = 0
            for i, r in enumerate(rows):
                ss = ["CEH".index(x) for x in r["dssp3"].split()]
                ok = [float(x) == 1.0 for x in r["disorder"].split()]
                for k, (y, good) in enumerate(zip(ss, ok)):
                    if good:
                        total += 1
                        right += int(p[f"{name}_{i}"][k]) == y
            return right / total

        right = total = right_py = 0
        with torch.no_grad():
            for i, r in enumerate(rows):
                ss = ["CEH".index(x) for x in r["dssp3"].split()]
                ok = [float(x) == 1.0 for x in r["disorder"].split()]
                ids = protein.encode("".join(r["input"].split()), cfg)[0]
                py = torch.zeros(len(ids), dtype=torch.long)
                for b, e, kb, ke in protein.plan_windows(len(ids), size, size // 4):
                    y = model(*protein.batch([ids[b:e]], cfg))[0, 1:1 + e - b].argmax(-1)
                    py[kb:ke] = y[kb - b:ke - b]
                p = pred[f"{name}_{i}"]
                for k, (y, good) in enumerate(zip(ss, ok)):
                    if good:
                        total += 1
                        right += int(p[k]) == y
                        right_py += int(py[k]) == y
        report(f"SS3 Q3 {name}", right / total, right_py / total, target if target else 0.0)  # CASP12: reported, no target
        for prec in reduced(a):
            try:
                got = pipeline_outputs(prec)
            except CpuLacks as e:
                skipped(f"SS3 Q3 {name}", prec, str(e))
                continue
            same = sum(int((got[k][0] == fp32_out[k][0]).sum()) for k in fp32_out)
            n_res = sum(len(v[0]) for v in fp32_out.values())
            delta = max(float(abs(got[k][1] - fp32_out[k][1]).max()) for k in fp32_out)
            report_precision(f"SS3 Q3 {name}", "Q3", prec, q3({k: v[0] for k, v in got.items()}), right / total, delta, same / n_res)


def validate_membrane(a):
    path = os.path.join(ROOT, "models", "membrane_bert.pt")
    if not os.path.exists(path):
        print("membrane model not shipped: skipped")
        return
    split = json.load(open(os.path.join(ROOT, "models", "membrane_split.json")))
    with open(os.path.join(a.data, "deeploc", "deeploc_per_protein_test.csv"), encoding="utf-8-sig", newline="") as f:
        rows = [r for r in csv.DictReader(f, skipinitialspace=True) if r["membrane"] in ("M", "S")]
    test = [(i, "".join(rows[i]["input"].split()), int(rows[i]["membrane"] == "M")) for i in split["test_rows"]]
    fa = os.path.join(a.work, "membrane.fa")
    with open(fa, "w") as f:
        for i, s, _ in test:
            f.write(f">row{i}\n{s}\n")
    lib = os.path.join(a.work, "membrane_lib")
    sh([a.hpcscreen, "pack", "proteins", "--input", fa, "--out", lib])

    def pipeline_scores(prec):
        out = os.path.join(a.work, f"membrane_run_{prec}")
        run_hpcscreen(a, ["annotate", "--library", lib, "--model", path, "--out", out, "--long-sequences", "window",
                          "--top-k", str(len(test))], prec)
        with open(os.path.join(out, "hits.csv"), newline="") as f:
            return {r["id"]: float(r["score"]) for r in csv.DictReader(f)}

    score = pipeline_scores("fp32")
    label = {f"row{i}": y for i, _, y in test}
    extra = {"hpcscreen.json": ""}
    model = torch.jit.load(path, _extra_files=extra)
    cfg = json.loads(extra["hpcscreen.json"])["tokenizer"]
    size = cfg["max_length"] - 2
    py = []
    with torch.no_grad():
        for _, s, y in test:
            ids = protein.encode(s, cfg)[0]
            acc = 0.0
            for b, e, kb, ke in protein.plan_windows(len(ids), size, size // 4):
                acc += (ke - kb) / len(ids) * float(model(*protein.batch([ids[b:e]], cfg))[0, 0])
            py.append(acc)
    fp32_auc = metrics.roc_auc([label[k] for k in score], [score[k] for k in score])
    report("membrane ROC-AUC", fp32_auc, metrics.roc_auc([y for _, _, y in test], py), 0.80)
    for prec in reduced(a):
        try:
            s = pipeline_scores(prec)
        except CpuLacks as e:
            skipped("membrane ROC-AUC", prec, str(e))
            continue
        report_precision("membrane ROC-AUC", "ROC-AUC", prec, metrics.roc_auc([label[k] for k in s], [s[k] for k in s]),
                         fp32_auc, max(abs(s[k] - score[k]) for k in score))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hpcscreen", default=os.path.join(ROOT, "build", "hpcscreen"))
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    p.add_argument("--work", default=os.path.join(ROOT, "build", "validate"))
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--precisions", default="fp32", help="comma-separated: fp32 and any of bf16, int8 (each checked against fp32)")
    a = p.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    validate_hiv(a)
    validate_ss3(a)
    validate_membrane(a)
    if a.json:
        json.dump(RESULTS, open(a.json, "w"), indent=1)
    bad = [r["metric"] for r in RESULTS
           if ("agree_1e-3" in r and not (r["agree_1e-3"] and r["meets_target"])) or r.get("within_tolerance") is False]
    print(f"{len(RESULTS) - len(bad)} passed, {len(bad)} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
