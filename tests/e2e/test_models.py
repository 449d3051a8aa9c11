#!/usr/bin/python3
"""End to end: one screen with several models (issue 15) under mpirun with 1, 2 and 3 ranks.
Per-model scores must equal single-model runs exactly; the ensemble's mean, sd, lcb/ucb ranking
and --where filters are recomputed here in Python from the single-model outputs."""
import glob
import math
import os

import numpy as np
import torch

from common import e2e_args, NCI, check, finish, fresh, mpirun, read_csv, read_json, run

from hpcscreen_py import gnn

TASKS = ["activity", "toxicity"]
TOP_K = 20


def make_models(work):
    paths = {}
    for seed, name in [(1, "m1"), (2, "m2"), (3, "m3")]:
        torch.manual_seed(seed)
        model = gnn.GNNSparse(16, 2, len(TASKS))
        paths[name] = os.path.join(work, f"{name}.pt")
        gnn.save(model, paths[name], gnn.metadata(TASKS, rank_by="activity", name=name))
    torch.manual_seed(4)
    paths["other_tasks"] = os.path.join(work, "other_tasks.pt")
    gnn.save(gnn.GNNSparse(16, 2, 2), paths["other_tasks"], gnn.metadata(["a", "b"], name="other"))
    return paths


def all_scores(run_dir):
    """(shard, row) → {column: text} from RUN/scores/, plus the id."""
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "scores", "chunk-*.csv"))):
        for r in read_csv(path):
            out[(r["shard"], int(r["row"]))] = r
    return out


def ranked(values, k, higher=True):
    """The best k keys of {key: float32 score}, ties by (shard index, row): the documented order."""
    return sorted(values, key=lambda key: ((-values[key] if higher else values[key]), key))[:k]


def main():
    a = e2e_args()
    work = a.work
    models = make_models(work)
    smi = os.path.join(work, "lib.smi")
    with open(NCI) as f:
        lines = f.readlines()[:300]
    with open(smi, "w") as f:
        f.writelines(lines)
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib, "--shard-size", "120"], expect=0)
    shard_index = {s["file"]: i for i, s in enumerate(read_json(os.path.join(lib, "manifest.json"))["shards"])}
    base = [a.hpcscreen, "screen", "--library", lib, "--top-k", str(TOP_K), "--chunk-rows", "50", "--all-scores"]

    print("== single-model runs (the reference for every per-model score)")
    single = {}
    for name in ["m1", "m2", "m3"]:
        rd = fresh(os.path.join(work, f"single-{name}"))
        mpirun(1, base + ["--model", models[name], "--out", rd], threads=2, expect=0)
        single[name] = all_scores(rd)
    keys = sorted(single["m1"], key=lambda k: (shard_index[k[0]], k[1]))
    check(len(keys) > 250 and all(set(single[n]) == set(keys) for n in single), f"{len(keys)} records scored by each model alone")

    def f32(text):
        return np.float32(float(text))

    print("== three models in one screen, ranked by m2:toxicity and m1:activity")
    hits_by_np = {}
    for np_ in (1, 2, 3):
        rd = fresh(os.path.join(work, f"multi-np{np_}"))
        r = mpirun(np_, base + ["--model", models["m1"], "--model", models["m2"], "--model", models["m3"],
                                "--rank-by", "m2:toxicity", "--rank-by", "m1:activity", "--out", rd], threads=2, expect=0)
        got = all_scores(rd)
        cols = [f"{n}:{t}" for n in ["m1", "m2", "m3"] for t in TASKS]
        same = sum(got.get(k, {}).get(f"{n}:{t}") == single[n][k][f"{n}:{t}"] for k in keys for n in ["m1", "m2", "m3"] for t in TASKS)
        check(set(got) == set(keys) and same == len(keys) * 6,
              f"np={np_}: every per-model score equals the single-model run's exactly ({same} of {len(keys) * 6})")
        hits = read_csv(os.path.join(rd, "hits.csv"))
        expect = ranked({k: f32(single["m2"][k]["m2:toxicity"]) for k in keys}, TOP_K)
        check(len(hits) == TOP_K and [(h["shard"], int(h["row"])) for h in hits] == expect,
              f"np={np_}: hits.csv ranked by m2:toxicity ({len(hits)} hits)")
        check(len(hits) == TOP_K and all(h[c] == single[c.split(":")[0]][(h["shard"], int(h["row"]))][c] for h in hits for c in cols),
              f"np={np_}: hits.csv carries every model's score beside each hit")
        second = read_csv(os.path.join(rd, "hits-m1-activity.csv"))
        expect = ranked({k: f32(single["m1"][k]["m1:activity"]) for k in keys}, TOP_K)
        check(len(second) == TOP_K and [(h["shard"], int(h["row"])) for h in second] == expect,
              f"np={np_}: hits-m1-activity.csv ranked by the second --rank-by")
        rj = read_json(os.path.join(rd, "run.json"))
        per_model = rj["screen"]["models"]
        check(sorted(per_model) == ["m1", "m2", "m3"] and all(v["infer_thread_s"] > 0 for v in per_model.values()),
              f"np={np_}: run.json reports each model's inference time")
        check(rj["complete"] and rj["records_scored"] == len(keys), f"np={np_}: complete, every record scored once")
        hits_by_np[np_] = open(os.path.join(rd, "hits.csv"), "rb").read()
    check(hits_by_np[1] == hits_by_np[2] == hits_by_np[3], "hits.csv byte-identical for 1, 2 and 3 ranks")

    print("== an ensemble: mean, sd, lcb/ucb rankings and a --where filter")
    tox = sorted(f32(single["m1"][k]["m1:toxicity"]) for k in keys)
    cut = float(tox[len(tox) // 2])
    cut_text = repr(cut)

    def member_scores(k, t):
        return [f32(single[n][k][f"{n}:{t}"]) for n in ["m1", "m2", "m3"]]

    def mean_sd(k, t):
        v = np.array(member_scores(k, t), dtype=np.float64)
        mean = v.mean()
        return mean, math.sqrt(((v - mean) ** 2).sum() / len(v))

    for np_ in (1, 3):
        rd = fresh(os.path.join(work, f"ensemble-np{np_}"))
        mpirun(np_, base + ["--model", models["m1"], "--model", models["m2"], "--model", models["m3"], "--ensemble",
                            "--rank-by", "lcb:1.5", "--rank-by", "ucb:2", "--rank-by", "mean",
                            "--where", f"m1:toxicity < {cut_text}", "--out", rd], threads=2, expect=0)
        got = all_scores(rd)
        worst = 0.0
        for k in keys:
            for t in TASKS:
                mean, sd = mean_sd(k, t)
                worst = max(worst, abs(float(f32(got[k][f"mean:{t}"]) - np.float32(mean))), abs(float(f32(got[k][f"sd:{t}"]) - np.float32(sd))))
        check(worst == 0.0, f"np={np_}: ensemble mean and sd (population) per task equal Python's (max diff {worst})")
        passing = [k for k in keys if f32(single["m1"][k]["m1:toxicity"]) < np.float32(cut)]

        def bound(k, kk):
            mean, sd = np.float32(mean_sd(k, "activity")[0]), np.float32(mean_sd(k, "activity")[1])
            return np.float32(float(mean) + kk * float(sd))
        for file, kk in [("hits.csv", -1.5), ("hits-ucb-2-activity.csv", 2.0)]:
            hits = read_csv(os.path.join(rd, file))
            expect = ranked({k: bound(k, kk) for k in passing}, TOP_K)
            check(len(hits) == TOP_K and [(h["shard"], int(h["row"])) for h in hits] == expect,
                  f"np={np_}: {file} ranked by mean {kk:+} sd over records passing --where")
        hits = read_csv(os.path.join(rd, "hits-mean-activity.csv"))
        expect = ranked({k: np.float32(mean_sd(k, "activity")[0]) for k in passing}, TOP_K)
        check(len(hits) == TOP_K and [(h["shard"], int(h["row"])) for h in hits] == expect, f"np={np_}: ranked by the ensemble mean")
        rj = read_json(os.path.join(rd, "run.json"))
        check(rj["records_filtered"] == len(keys) - len(passing) and rj["records_rejected"] + rj["records_scored"] == rj["records_read"],
              f"np={np_}: {rj['records_filtered']} records filtered out (expected {len(keys) - len(passing)}), counted apart from rejects")

    print("== refusals")
    for extra, words in [(["--model", models["m1"], "--model", models["m1"]], "two models are named 'm1'"),
                         (["--model", models["m1"], "--model", models["other_tasks"], "--ensemble"], "same tasks"),
                         (["--model", models["m1"], "--ensemble"], "at least two"),
                         (["--model", models["m1"], "--rank-by", "m9:activity"], "is not a score"),
                         (["--model", models["m1"], "--where", "m1:activity = 3"], "--where"),
                         (["--model", models["m1"], "--model", models["m2"], "--rank-by", "mean"], "is not a score"),
                         # a signed K: lcb:-0 would be lcb:0 under another column name
                         (["--model", models["m1"], "--model", models["m2"], "--ensemble", "--rank-by", "lcb:-0"],
                          "K must be a number 0 or more")]:
        rd = fresh(os.path.join(work, "refused"))
        r = mpirun(1, base + extra + ["--out", rd])
        check(r.returncode == 2 and words in r.stderr and not os.path.exists(rd), f"{' '.join(extra[-2:])}: exit 2, '{words}'")
    finish()


if __name__ == "__main__":
    main()
