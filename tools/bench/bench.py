#!/usr/bin/python3
"""hpcscreen's benchmark harness: one command, one JSON row per configuration appended to
bench/results.jsonl with the commit, machine, ranks, threads, batch settings and figures.

  /usr/bin/python3 tools/bench/bench.py                 # the figures the README quotes (~20 min on 2 cores)
  /usr/bin/python3 tools/bench/bench.py --n 10000000    # 10 M compounds (memory flatness)
  /usr/bin/python3 tools/bench/bench.py --smoke ...     # seconds; what CTest runs so it does not rot

Sections: stage limits, end-to-end screen vs the ideal, a Python baseline, rank scaling and
coordination cost, peak RSS vs library size, annotate vs the matmul rate for a ProtBert-shaped
BERT, length-aware vs fixed batching, embeddings (per-sequence, per-residue) vs logits only, the
memory tier's batch sweep, several models in one screen against separate screens, pack of an
Enamine REAL-format .cxsmiles.bz2 against `bzip2 -dc` of the same file, on 1 rank and on 2 ranks
with 2 files (--sections pack --pack-rows N; 10 M rows by default), and reduced precision
(`--sections precision`: each model at fp32, bf16 and int8 in the same run)."""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PY = "/usr/bin/python3"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1")


def sh(cmd, ok=(0,), **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, **kw)
    if r.returncode not in ok:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return r


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "os": platform.platform()}


def commit():
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


class Bench:
    def __init__(self, a):
        self.a = a
        self.hpcscreen = os.path.join(a.build, "hpcscreen")
        self.rows = []
        self.base = {"commit": commit(), "machine": machine(), "date": datetime.datetime.utcnow().isoformat(timespec="seconds")}

    def row(self, section, params, figures):
        r = dict(self.base, section=section, params=params, figures=figures)
        self.rows.append(r)
        print(json.dumps({"section": section, **figures}), flush=True)
        if not self.a.smoke:  # written as it comes, so an interrupted run keeps what it measured
            os.makedirs(os.path.dirname(self.a.out), exist_ok=True)
            with open(self.a.out, "a") as f:
                f.write(json.dumps(r) + "\n")

    def compounds(self, n, name):
        smi = os.path.join(self.a.work, f"{name}.smi")
        lib = os.path.join(self.a.work, f"{name}-lib")
        if not os.path.exists(lib):
            with open(smi, "w") as f:
                subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_library.py"), "compounds", str(n)], stdout=f, check=True)
            sh([self.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib, "--shard-size", "250000"])
        return smi, lib

    def screen(self, lib, model, ranks, threads, name, *extra):
        out = os.path.join(self.a.work, name)
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.time()
        sh(["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS",
            self.hpcscreen, "screen", "--library", lib, "--model", model, "--out", out, "--threads", str(threads),
            "--progress-interval", "0", *extra])
        wall = time.time() - t0
        rj = json.load(open(os.path.join(out, "run.json")))
        rj["outer_wall_s"] = wall
        return rj


def stage_split(rj):
    """Where the ranks' pool threads spent the run: thread-seconds per stage over threads x wall."""
    capacity = sum(r["pool_threads"] * r["busy_s"] for r in rj["per_rank"])
    out = {f"{name}_share": sum(r["stages"].get(name, {}).get("thread_s", 0) for r in rj["per_rank"]) / capacity
           for name in ("featurize", "infer")}
    out["idle_share"] = sum(r["pool_idle_thread_s"] for r in rj["per_rank"]) / capacity
    return out


ENAMINE_HEADER = ("smiles\tidnumber\treagent1\treagent2\treaction\tMW\tHAC\tslogP\tHBA\tHBD\tRotBonds\tFSP3\tTPSA\t"
                  "lead-like\t350/3_lead-like\tfragments\tstrict_fragments\tPPI_modulators\tnatural_product-like\t"
                  "mol_name\tInChiKey\n")


def write_enamine_bz2(path, n):
    """A synthetic Enamine REAL-format .cxsmiles.bz2 (tab-separated, header, an enhanced-stereo
    extension on some rows), compressed by the bzip2 command as Enamine's files are."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gen_library
    import random
    with open(path, "wb") as out:
        z = subprocess.Popen(["bzip2", "-c", "-9"], stdin=subprocess.PIPE, stdout=out)
        buf = [ENAMINE_HEADER]
        for i, line in enumerate(gen_library.compounds(n, random.Random(7))):
            smi = line.split(" ", 1)[0]
            if i % 13 == 0:
                smi = "C[C@H](N)C(=O)O |&1:1|" if i % 2 else "C[C@@H](O)c1ccc(cc1)C(=O)N |o1:1|"
            buf.append(f"{smi}\tPV-{i:012d}\t{i % 99991}\t{i % 7919}\tm_{i % 97}\t{200 + i % 300}.{i % 10}\t{10 + i % 25}\t"
                       f"{(i % 600) / 100:.2f}\t{i % 8}\t{i % 4}\t{i % 9}\t0.{i % 100:02d}\t{i % 140}.{i % 10}\t"
                       f"TRUE\tFALSE\tFALSE\tFALSE\tFALSE\tFALSE\tPV-{i:012d}\tABCDEFGHIJKLMN-UHFFFAOYSA-N\n")
            if len(buf) >= 100000:
                z.stdin.write("".join(buf).encode())
                buf = []
        z.stdin.write("".join(buf).encode())
        z.stdin.close()
        if z.wait() != 0:
            raise SystemExit("bzip2 failed")


def pack_section(b, n):
    """pack against the machine's own decompression of the same file, and 2 ranks on 2 files."""
    work = os.path.join(b.a.work, f"pack{n}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    src = os.path.join(work, "Enamine_REAL_synthetic.cxsmiles.bz2")
    t = time.monotonic()
    write_enamine_bz2(src, n)
    print(f"pack: wrote {n} rows in {time.monotonic() - t:.0f} s ({os.path.getsize(src) / 2**20:.0f} MiB)", flush=True)
    second = os.path.join(work, "Enamine_REAL_synthetic_copy.cxsmiles.bz2")
    os.link(src, second)  # the same bytes under a second name: the second rank's file

    def timed(cmd, **kw):
        t = time.monotonic()
        sh(cmd, **kw)
        return time.monotonic() - t

    with open(os.devnull, "wb") as null:
        t = time.monotonic()
        subprocess.run(["bzip2", "-dc", src], stdout=null, check=True)
        decompress_s = time.monotonic() - t
    mpi = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np"]
    one_s = timed([*mpi, "1", b.hpcscreen, "pack", "compounds", "--input", src, "--out", os.path.join(work, "lib1")])
    two_s = timed([*mpi, "2", b.hpcscreen, "pack", "compounds", "--input", src, second, "--out", os.path.join(work, "lib2")])
    one, two, dec = n / one_s, 2 * n / two_s, n / decompress_s
    real_rows, real_files, nodes = 6e9, 20, 20
    # One rank per node, one file per rank: the time of the slowest node, one file of 300 M rows.
    real_h = real_rows / real_files / one / 3600
    b.row("pack", {"rows": n, "format": "cxsmiles.bz2", "bytes": os.path.getsize(src), "shard_size": 1_000_000},
          {"bzip2_dc_rows_per_s": dec, "pack_1_rank_rows_per_s": one, "pack_1_rank_vs_bzip2_dc": one / dec,
           "pack_2_ranks_2_files_rows_per_s": two, "scaling_2_ranks": two / one,
           "real_6e9_rows_20_files_20_nodes_hours": real_h, "real_node_hours": real_h * nodes})
    shutil.rmtree(work, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--models", default=os.path.join(ROOT, "models"), help="folder with hiv_gnn.pt and hiv_gnn_dense.pt (or the test models)")
    p.add_argument("--work", default=os.path.join(ROOT, "build", "bench"))
    p.add_argument("--gnn", help="compound model to use instead of <models>/hiv_gnn.pt")
    p.add_argument("--tier-batches", help="comma-separated batch sizes for the memory-tier sweep")
    p.add_argument("--n", type=int, default=1_000_000, help="compounds for the end-to-end screen")
    p.add_argument("--pack-rows", type=int, default=10_000_000, help="rows of the synthetic Enamine file for the pack section")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results.jsonl"))
    p.add_argument("--smoke", action="store_true", help="tiny sizes, no results file: checks the harness runs")
    p.add_argument("--sections", default="stage,screen,split,python,scaling,memory,lengths,annotate,embeddings,tier,models,pack,precision,featurizers,cache,images")
    p.add_argument("--embedding-proteins", type=int, default=400, help="proteins for the embeddings section")
    p.add_argument("--featurizer-records", type=int, default=200_000, help="compounds for the featurizers section")
    p.add_argument("--cache-records", type=int, default=1_000_000, help="compounds for the feature-cache section")
    p.add_argument("--images", type=int, default=96, help="1024 x 1024 grey PNGs for the images section")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    b = Bench(a)
    cores = os.cpu_count()
    gnn = a.gnn or os.path.join(a.models, "hiv_gnn.pt" if os.path.exists(os.path.join(a.models, "hiv_gnn.pt")) else "gnn.pt")
    dense = os.path.join(a.models, "hiv_gnn_dense.pt" if os.path.exists(os.path.join(a.models, "hiv_gnn_dense.pt")) else "gnn_dense.pt")
    n = 3000 if a.smoke else a.n
    sections = a.sections.split(",")
    smi, lib = b.compounds(n, f"gen{n}") if set(sections) != {"pack"} else (None, None)

    stage = None
    if "stage" in sections or "screen" in sections:
        stage = json.loads(sh([os.path.join(a.build, "hpcscreen-stage-bench"), lib, gnn, "2000" if a.smoke else "20000",
                               *(["--quick"] if a.smoke else [])]).stdout)
        per_core = 1.0 / (1.0 / stage["featurize_per_core_per_s"] + 1.0 / stage["inference_per_core_per_s"])
        stage["ideal_per_core_per_s"] = per_core
        stage["ideal_all_cores_per_s"] = per_core * cores
        b.row("stage_limits", {"model": os.path.basename(gnn), "threads": 1}, stage)

    screen_e2e = None
    if "screen" in sections:
        rj = screen_e2e = b.screen(lib, gnn, 2, max(1, cores // 2), "screen-e2e")
        rate = rj["records_read"] / rj["outer_wall_s"]
        b.row("screen_end_to_end", {"records": n, "ranks": 2, "threads_per_rank": max(1, cores // 2), "model": os.path.basename(gnn)},
              {"records_per_s": rate, "records_per_s_inside": rj["throughput_records_per_s"], "wall_s": rj["outer_wall_s"],
               "fraction_of_ideal": rate / stage["ideal_all_cores_per_s"],
               "compounds_per_node_hour": rate * 3600, "coordination_fraction": rj["coordination"]["fraction_of_wall"],
               **stage_split(rj)})

    if "split" in sections:  # one rank using every core: threads that follow the work vs a fixed split
        m = min(n, 3000 if a.smoke else 250_000)
        _, sub_lib = b.compounds(m, f"gen{m}")
        for fixed in (0, 1):
            rj = b.screen(sub_lib, gnn, 1, cores, f"split-{fixed}", "--featurize-threads", str(fixed))
            b.row("thread_split", {"records": m, "ranks": 1, "threads": cores,
                                   "featurize_threads": fixed or "auto (each thread takes the oldest chunk's next task)"},
                  {"records_per_s": rj["records_read"] / rj["outer_wall_s"], **stage_split(rj)})

    if "python" in sections:
        sub = smi
        m = min(n, 2000 if a.smoke else 200_000)
        if m < n:
            sub = os.path.join(a.work, f"sub{m}.smi")
            with open(smi) as f, open(sub, "w") as o:
                for i, line in zip(range(m), f):
                    o.write(line)
        py = json.loads(sh([PY, os.path.join(HERE, "python_baseline.py"), sub, gnn, "--processes", str(cores)]).stdout)
        sub_lib = os.path.join(a.work, f"sub{m}-lib")
        if not os.path.exists(sub_lib):
            sh([b.hpcscreen, "pack", "compounds", "--input", sub, "--out", sub_lib])
        rj = b.screen(sub_lib, gnn, 2, max(1, cores // 2), "screen-vs-python")
        ours = rj["records_read"] / rj["outer_wall_s"]
        b.row("python_baseline", {"records": m, "processes": cores, "model": os.path.basename(gnn)},
              {"python_records_per_s": py["records_per_s"], "hpcscreen_records_per_s": ours, "speedup": ours / py["records_per_s"]})

    if "scaling" in sections:
        m = min(n, 3000 if a.smoke else 250_000)
        _, sub_lib = b.compounds(m, f"gen{m}")
        base = None
        for ranks in (1, 2) if a.smoke else (1, 2, 4):
            rj = b.screen(sub_lib, gnn, ranks, max(1, cores // ranks), f"scaling-{ranks}")
            rate = rj["records_read"] / rj["outer_wall_s"]
            base = base or rate
            b.row("scaling", {"records": m, "ranks": ranks, "threads_per_rank": max(1, cores // ranks), "oversubscribed": ranks > cores},
                  {"records_per_s": rate, "relative_to_1_rank": rate / base, "chunks": rj["chunks_total"],
                   "coordination_s": rj["coordination"]["max_rank_s"], "coordination_fraction": rj["coordination"]["fraction_of_wall"]})

    if "memory" in sections:
        sizes = [1000, 3000] if a.smoke else sorted({100_000, n})
        rss = {}
        for m in sizes:
            if m == n and screen_e2e:  # the end-to-end run above is the largest point
                rss[m] = screen_e2e["peak_rss_bytes_max"]
                continue
            _, sub_lib = b.compounds(m, f"gen{m}")
            rj = b.screen(sub_lib, gnn, 2, max(1, cores // 2), f"memory-{m}")
            rss[m] = rj["peak_rss_bytes_max"]
        b.row("memory", {"sizes": sizes, "ranks": 2},
              {"peak_rss_mib": {str(k): v / 2**20 for k, v in rss.items()}, "growth": rss[sizes[-1]] / rss[sizes[0]] - 1})

    if "lengths" in sections or "annotate" in sections or "embeddings" in sections:
        fa = os.path.join(a.work, "proteins.fa")
        m = 200 if a.smoke else 1500
        with open(fa, "w") as f:
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_library.py"), "proteins", str(m)], stdout=f, check=True)
        plib = os.path.join(a.work, f"proteins{m}-lib")
        if not os.path.exists(plib):
            sh([b.hpcscreen, "pack", "proteins", "--input", fa, "--out", plib])

    def annotate(model, name, *extra):
        out = os.path.join(a.work, name)
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.time()
        sh(ok=(0, 75), cmd=["mpirun", "-np", "1", "--bind-to", "none", b.hpcscreen, "annotate", "--library", plib, "--model", model, "--out", out, "--threads", str(cores),
            "--long-sequences", "window", "--progress-interval", "0", *extra])
        rj = json.load(open(os.path.join(out, "run.json")))
        infer_s = sum(r["stages"]["infer"]["thread_s"] for r in rj["per_rank"])  # one batch at a time
        return rj, rj["annotate"]["tokens"]["real_tokens"] / infer_s, time.time() - t0

    if "lengths" in sections:
        small = os.path.join(a.work, "bert-small.pt")
        if not os.path.exists(small):
            sh([PY, os.path.join(ROOT, "tools", "make_bert.py"), "--out", small, "--hidden", "128",
                "--layers", "2", "--heads", "4", "--max-length", "1024"])
        fixed, fixed_rate, _ = annotate(small, "lengths-fixed", "--batching", "fixed", "--max-sequences", "16")
        aware, aware_rate, _ = annotate(small, "lengths-aware", "--batching", "length", "--max-tokens", "16384")
        b.row("length_aware_batching", {"proteins": m, "model": "BERT hidden 128, 2 layers, 1024 positions", "fixed_batch": 16, "max_tokens": 16384},
              {"fixed_tokens_per_s": fixed_rate, "fixed_padding": fixed["annotate"]["padding_fraction"], "aware_tokens_per_s": aware_rate,
               "aware_padding": aware["annotate"]["padding_fraction"], "speedup": aware_rate / fixed_rate})

    if "annotate" in sections:
        hidden, layers, heads, length = (128, 2, 4, 512) if a.smoke else (1024, 30, 16, 1024)
        big = os.path.join(a.work, f"bert-{hidden}x{layers}.pt")
        if not os.path.exists(big):
            sh([PY, os.path.join(ROOT, "tools", "make_bert.py"), "--out", big, "--hidden", str(hidden), "--layers", str(layers),
                "--heads", str(heads), "--max-length", str(length)])
        if not stage:  # the matmul rate of this run, when the stage section was not asked for
            stage = json.loads(sh([os.path.join(a.build, "hpcscreen-stage-bench"), lib, gnn, "2000",
                                   *(["--quick"] if a.smoke else [])]).stdout)
        mm = stage
        rj, rate, _ = annotate(big, "annotate-protbert", "--max-chunks", "1", "--chunk-rows", "8" if a.smoke else "32", "--max-tokens", "8192")
        # FLOPs per token: 4 h^2 (QKV+out) + 8 h^2 (feed-forward), x2 for multiply-add, per layer; attention adds 4 L h.
        mean_len = rj["annotate"]["tokens"]["real_tokens"] / max(1, rj["records_scored"])
        flops_per_token = layers * (2 * 12 * hidden * hidden + 4 * mean_len * hidden)
        gflops = rate * flops_per_token / 1e9
        b.row("annotate_protbert_shape", {"hidden": hidden, "layers": layers, "heads": heads, "threads": cores, "sequences": rj["records_scored"]},
              {"tokens_per_s": rate, "model_gflops": gflops, "matmul_gflops_all_cores": mm["matmul_gflops_all_cores"],
               "fraction_of_matmul": gflops / mm["matmul_gflops_all_cores"], "padding": rj["annotate"]["padding_fraction"]})

    if "embeddings" in sections:
        # The cost of keeping embeddings: one BERT (ProtBert's width, 1,024, so the bytes per
        # residue are a real encoder's; few layers, so inference is cheap and the writing shows)
        # run with its per-residue head (logits only) and as an encoder without it.
        hidden, layers, heads = (64, 1, 4) if a.smoke else (1024, 2, 16)
        n_prot = 30 if a.smoke else a.embedding_proteins
        logits_model = os.path.join(a.work, f"bert-emb-{hidden}x{layers}.pt")
        encoder = os.path.join(a.work, f"bert-emb-{hidden}x{layers}-encoder.pt")
        if not os.path.exists(encoder):
            sh([PY, os.path.join(ROOT, "tools", "make_bert.py"), "--out", logits_model, "--hidden", str(hidden),
                "--layers", str(layers), "--heads", str(heads), "--max-length", "1024"])
            sh([PY, os.path.join(ROOT, "tools", "make_encoder.py"), "--source", logits_model, "--out", encoder,
                "--heads", str(heads)])
        efa = os.path.join(a.work, f"proteins-emb{n_prot}.fa")
        elib = os.path.join(a.work, f"proteins-emb{n_prot}-lib")
        if not os.path.exists(elib):
            with open(efa, "w") as f:
                subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_library.py"), "proteins", str(n_prot)],
                               stdout=f, check=True)
            sh([b.hpcscreen, "pack", "proteins", "--input", efa, "--out", elib])
        results = {}
        for name, model, extra in (("logits", logits_model, []),
                                   ("per-sequence", encoder, ["--embeddings", "per-sequence"]),
                                   ("per-residue", encoder, ["--embeddings", "per-residue"])):
            out = os.path.join(a.work, f"emb-{name}")
            shutil.rmtree(out, ignore_errors=True)
            sh(["mpirun", "-np", "1", "--bind-to", "none", b.hpcscreen, "annotate", "--library", elib, "--model", model,
                "--out", out, "--threads", str(cores), "--long-sequences", "window", "--progress-interval", "0",
                "--chunk-rows", "50", *extra])
            rj = json.load(open(os.path.join(out, "run.json")))
            files = sum(os.path.getsize(os.path.join(out, "annotations", f)) for f in os.listdir(os.path.join(out, "annotations")))
            residues = rj["annotate"]["tokens"]["residues"]
            results[name] = {"residues_per_s": residues / rj["wall_time_s"], "wall_s": rj["wall_time_s"],
                             "write_s": rj["annotate"]["output_write_s"],
                             "file_bytes": files, "file_bytes_per_residue": files / max(1, residues),
                             "residues": residues}
            if name != "logits":
                e = rj["annotate"]["embeddings"]
                results[name]["payload_bytes"] = e["payload_bytes"]
                results[name]["file_over_payload"] = e["file_bytes"] / max(1, e["payload_bytes"])
        base = results["logits"]["residues_per_s"]
        for name, r in results.items():
            r["relative_to_logits"] = r["residues_per_s"] / base
        b.row("embeddings", {"proteins": n_prot, "hidden": hidden, "layers": layers, "threads": cores, "dtype": "float16",
                             "chunk_rows": 50},
              {k.replace("-", "_"): v for k, v in results.items()})

    if "tier" in sections:
        m = 3000 if a.smoke else 5000
        _, tlib = b.compounds(m, f"gen{m}")
        pmem = os.path.join(a.work, "pmem")
        os.makedirs(pmem, exist_ok=True)
        budget = 32 * 2**20
        # Without a tier, the adjacency alone ([atoms, atoms] float32) must fit the budget.
        if not stage:
            stage = json.loads(sh([os.path.join(a.build, "hpcscreen-stage-bench"), lib, gnn, "2000", "--quick"]).stdout)
        mean_atoms = stage["mean_atoms"]
        fits = int((budget / 4) ** 0.5 / mean_atoms)
        sweep = [int(x) for x in a.tier_batches.split(",")] if a.tier_batches else ([64, 512] if a.smoke else [64, 128, 512, 1536, 2048])
        for batch in sweep:
            for tier in (False, True):
                extra = ["--batch-molecules", str(batch), "--batch-atoms", str(batch * 60)]
                if tier:
                    extra += ["--dram-budget", "32M", "--pmem-dir", pmem]
                rj = b.screen(tlib, dense, 1, cores, f"tier-{batch}-{tier}", *extra)
                t = rj["screen"]["memory_tier"]
                b.row("memory_tier", {"model": os.path.basename(dense), "batch_molecules": batch, "tier": tier, "dram_budget_bytes": budget if tier else None},
                      {"batch_vs_largest_fitting_the_budget": batch / max(1, fits), "records_per_s": rj["records_read"] / rj["outer_wall_s"], "peak_rss_mib": rj["peak_rss_bytes_max"] / 2**20,
                       "dram_peak_mib": t.get("dram_peak_bytes_max", 0) / 2**20, "spill_peak_mib": t.get("spill_peak_bytes_max", 0) / 2**20,
                       "spill_total_mib": t.get("spill_total_bytes", 0) / 2**20})

    if "models" in sections:  # N models in one screen (featurized once) against N separate screens
        import torch
        m = 2000 if a.smoke else 200_000
        _, mlib = b.compounds(m, f"gen{m}")
        copies = []
        for k in range(4):  # the same network under other names: the same cost per model
            files = {"hpcscreen.json": ""}
            module = torch.jit.load(gnn, _extra_files=files)
            meta = json.loads(files["hpcscreen.json"])
            meta["name"] = f"{meta.get('name') or 'gnn'}-copy{k}"
            path = os.path.join(a.work, f"gnn-copy{k}.pt")
            torch.jit.save(module, path, _extra_files={"hpcscreen.json": json.dumps(meta)})
            copies.append(path)
        for n_models in (1, 2) if a.smoke else (1, 2, 4):
            extra = [arg for path in copies[1:n_models] for arg in ("--model", path)]
            rj = b.screen(mlib, copies[0], 1, cores, f"models-{n_models}", *extra)
            together = rj["outer_wall_s"]
            separate = sum(b.screen(mlib, path, 1, cores, f"models-{n_models}-alone-{i}")["outer_wall_s"]
                           for i, path in enumerate(copies[:n_models]))
            infer = {k: v["infer_thread_s"] for k, v in rj["screen"]["models"].items()}
            b.row("several_models", {"records": m, "models": n_models, "ranks": 1, "threads": cores, "model": os.path.basename(gnn)},
                  {"together_wall_s": together, "separate_wall_s": separate, "speedup": separate / together,
                   "records_per_s_together": rj["records_read"] / together, "infer_thread_s_per_model": infer,
                   **stage_split(rj)})

    if "pack" in sections:
        pack_section(b, 2000 if a.smoke else a.pack_rows)

    if "precision" in sections:
        precision_section(a, b, lib, gnn, cores)

    if "featurizers" in sections:
        featurizers_section(a, b, gnn, cores)

    if "cache" in sections:
        cache_section(a, b, gnn, cores)

    if "images" in sections:
        images_section(a, b, cores)

    if not a.smoke:
        print(f"{len(b.rows)} rows appended to {a.out}")


PRECISIONS = ("fp32", "bf16", "int8")
CHEMPROP_PER_CORE = 660.0  # chemprop predict on CPU: 1 M molecules in 6 min 17 s on 4 cores (chemprop#150)


def all_scores(rd):
    import csv
    import glob
    out = {}
    for path in glob.glob(os.path.join(rd, "scores", "*.csv")):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                out[(r["shard"], r["row"])] = [float(v) for k, v in r.items() if ":" in k]
    return out


def cache_section(a, b, gnn, cores):
    """Screen from SMILES vs from a feature cache (hpcscreen featurize), both cores, one run, for
    the shipped GNN, a small GNN (hidden 32, 3 layers) and the fingerprint MLP; and the time to
    build each cache against the featurization time of a screen from SMILES."""
    import glob
    m = 3000 if a.smoke else a.cache_records
    _, clib = b.compounds(m, f"gen{m}")
    shutil.rmtree(os.path.join(clib, "features"), ignore_errors=True)
    small = os.path.join(a.work, "gnn-32x3.pt")
    if not os.path.exists(small):
        sh([PY, os.path.join(ROOT, "tools", "make_gnn.py"), "--out", small, "--hidden", "32", "--layers", "3"])
    fp = os.path.join(a.models, "hiv_fp_mlp.pt" if os.path.exists(os.path.join(a.models, "hiv_fp_mlp.pt")) else "fp_mlp.pt")
    ranks, threads = 2, max(1, cores // 2)
    runs = (("shipped GNN", gnn), ("small GNN 32x3", small), ("ECFP4 MLP", fp))
    for name, model in runs[:1] if a.smoke else runs:
        shutil.rmtree(os.path.join(clib, "features"), ignore_errors=True)  # each build timed whole
        smiles = b.screen(clib, model, ranks, threads, "cache-from-smiles", "--no-feature-cache")
        t0 = time.time()
        built = sh(["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS",
                    b.hpcscreen, "featurize", "--library", clib, "--model", model, "--threads", str(threads)], ok=(0, 1))
        build_s = time.time() - t0
        cached = b.screen(clib, model, ranks, threads, "cache-from-cache", "--require-cache")
        index = [json.load(open(p)) for p in glob.glob(os.path.join(clib, "features", "*", "cache.json"))]
        per_record = {i["featurizer"]: i["bytes_per_record"] for i in index}
        rate_smiles = smiles["records_read"] / smiles["outer_wall_s"]
        rate_cached = cached["records_read"] / cached["outer_wall_s"]
        featurize_s = sum(r["stages"].get("featurize", {}).get("thread_s", 0) for r in smiles["per_rank"])
        b.row("feature_cache", {"model": name, "records": m, "ranks": ranks, "threads_per_rank": threads},
              {"from_smiles_per_s": rate_smiles, "from_cache_per_s": rate_cached, "speedup": rate_cached / rate_smiles,
               "from_smiles_wall_s": smiles["outer_wall_s"], "from_cache_wall_s": cached["outer_wall_s"],
               "cache_build_wall_s": build_s if built.returncode == 0 else None,
               "screen_featurize_thread_s": featurize_s, "cache_bytes_per_record": per_record,
               "from_smiles_shares": stage_split(smiles), "from_cache_shares": stage_split(cached)})


def featurizers_section(a, b, gnn, cores):
    """Models of each registered featurizer end to end on every core (2 ranks x cores/2 threads),
    the same library, one run: the OGB GNN, the ECFP4 fingerprint MLP and, when the shared data is
    there, Chemprop's own regression file (hidden 300, depth 3) converted by import_chemprop.py,
    at each precision with its max |score - FP32 score| over every record, against Chemprop's
    ~660 molecules/s per core."""
    m = 2000 if a.smoke else a.featurizer_records
    _, flib = b.compounds(m, f"gen{m}")
    fp = os.path.join(a.models, "hiv_fp_mlp.pt" if os.path.exists(os.path.join(a.models, "hiv_fp_mlp.pt")) else "fp_mlp.pt")
    models = [("ogb-smiles2graph", gnn), ("morgan", fp)]
    shared = os.path.join(ROOT, "..", "shared", "data", "chemprop", "example_model_v2_regression_mol.pt")
    if os.path.exists(shared):
        chemprop = os.path.join(a.work, "chemprop-regression.pt")
        if os.path.exists(chemprop):
            os.unlink(chemprop)  # import_chemprop.py never overwrites its --out
        sh([PY, os.path.join(ROOT, "tools", "import_chemprop.py"), shared, "--out", chemprop])
        models.append(("chemprop", chemprop))
    for featurizer, model in models:
        base = None
        for prec in PRECISIONS if featurizer == "chemprop" and not a.smoke else ("fp32",):
            rj = b.screen(flib, model, 2, max(1, cores // 2), f"featurizers-{featurizer}-{prec}", "--precision", prec, "--all-scores")
            scores = all_scores(os.path.join(a.work, f"featurizers-{featurizer}-{prec}"))
            base = base or scores
            delta = max((abs(x - y) for k in base for x, y in zip(base[k], scores.get(k, base[k]))), default=0.0)
            rate = rj["records_read"] / rj["outer_wall_s"]
            b.row("featurizers", {"featurizer": featurizer, "model": os.path.basename(model), "precision": prec, "records": m,
                                  "ranks": 2, "threads_per_rank": max(1, cores // 2)},
                  {"records_per_s": rate, "records_per_s_inside": rj["throughput_records_per_s"],
                   "per_core_per_s": rate / cores, "vs_chemprop_per_core": rate / cores / CHEMPROP_PER_CORE,
                   "max_abs_delta_vs_fp32": delta, **stage_split(rj)})


def precision_section(a, b, lib, gnn, cores):
    """Each model at each precision in the same run, on the same input: screen compounds/s (the
    model alone on one thread, from the stage benchmark, and end to end) for the shipped GNN and a
    Chemprop-sized one (hidden 300, 5 layers); annotate tokens/s for a 12 x 768 BERT and the
    shipped BERTs. Each against FP32 and against this machine's FP32 torch::mm rate. A precision
    the CPU lacks is recorded as refused."""
    stage_bench = os.path.join(a.build, "hpcscreen-stage-bench")
    wide = os.path.join(a.work, "gnn-300x5.pt")
    if not a.smoke and not os.path.exists(wide):
        sh([PY, os.path.join(ROOT, "tools", "make_gnn.py"), "--out", wide, "--hidden", "300", "--layers", "5"])
    m = 2000 if a.smoke else 20000
    _, sub_lib = b.compounds(m, f"gen{m}")
    mm = None
    # The smoke run checks the harness: one model of each kind, every precision.
    for model, hidden, layers in ((gnn, 96, 4),) if a.smoke else ((gnn, 96, 4), (wide, 300, 5)):
        if a.smoke:
            hidden, layers = 16, 2
        base = None
        for prec in PRECISIONS:
            r = subprocess.run([stage_bench, sub_lib, model, str(m), "--precision", prec, *(["--quick"] if a.smoke or mm else [])],
                               capture_output=True, text=True, env=ENV)
            if r.returncode != 0:
                b.row("precision_screen", {"model": os.path.basename(model), "precision": prec}, {"refused": r.stderr.strip()[-300:]})
                continue
            st = json.loads(r.stdout)
            mm = mm or st  # the matmul rate measured once, in full, by the first run
            rj = b.screen(sub_lib, model, 2, max(1, cores // 2), f"precision-{os.path.basename(model)}-{prec}", "--precision", prec)
            rate = st["inference_per_core_per_s"]
            # Multiply-adds of the message-passing MLPs (h -> 2h -> h) per atom and layer.
            gflops = rate * st["mean_atoms"] * layers * 8 * hidden * hidden / 1e9
            base = base or {"rate": rate, "scores": st.get("first_batch_scores", []), "e2e": rj["records_read"] / rj["outer_wall_s"]}
            delta = max((abs(x - y) for x, y in zip(st.get("first_batch_scores", []), base["scores"])), default=0.0)
            b.row("precision_screen", {"model": os.path.basename(model), "hidden": hidden, "layers": layers, "precision": prec,
                                       "records": m, "inference_threads": 1, "ranks": 2, "threads_per_rank": max(1, cores // 2)},
                  {"inference_per_core_per_s": rate, "vs_fp32": rate / base["rate"], "model_gflops_1_thread": gflops,
                   "fraction_of_fp32_matmul_1_thread": gflops / mm["matmul_gflops_1_thread"],
                   "end_to_end_records_per_s": rj["records_read"] / rj["outer_wall_s"],
                   "end_to_end_vs_fp32": rj["records_read"] / rj["outer_wall_s"] / base["e2e"],
                   "max_abs_score_delta_first_batch": delta, "ran": rj["screen"]["precision"]["used"],
                   "isa_found": rj["screen"]["precision"]["isa_found"]})

    fa = os.path.join(a.work, "precision-proteins.fa")
    n_prot = 40 if a.smoke else 400
    with open(fa, "w") as f:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_library.py"), "proteins", str(n_prot)], stdout=f, check=True)
    plib = os.path.join(a.work, f"precision-proteins{n_prot}-lib")
    if not os.path.exists(plib):
        sh([b.hpcscreen, "pack", "proteins", "--input", fa, "--out", plib])
    hidden, layers, heads, length = (64, 2, 4, 128) if a.smoke else (768, 12, 12, 512)
    bert = os.path.join(a.work, f"bert-{hidden}x{layers}-{length}.pt")
    if not os.path.exists(bert):
        sh([PY, os.path.join(ROOT, "tools", "make_bert.py"), "--out", bert, "--hidden", str(hidden), "--layers", str(layers),
            "--heads", str(heads), "--max-length", str(length)])
    bert_models = [(bert, hidden, layers, ["--max-chunks", "1", "--chunk-rows", "8" if a.smoke else "32"])]
    for shipped in ("ss3_bert.pt", "membrane_bert.pt"):
        path = os.path.join(ROOT, "models", shipped)
        if os.path.exists(path):
            bert_models.append((path, 64, 2, ["--max-chunks", "2", "--chunk-rows", "100"]))
    for model, hidden, layers, extra in bert_models[:1] if a.smoke else bert_models:
        base = None
        for prec in PRECISIONS:
            out = os.path.join(a.work, f"precision-{os.path.basename(model)}-{prec}")
            shutil.rmtree(out, ignore_errors=True)
            r = subprocess.run(["mpirun", "-np", "1", "--bind-to", "none", b.hpcscreen, "annotate", "--library", plib, "--model", model,
                                "--out", out, "--threads", str(cores), "--long-sequences", "window", "--progress-interval", "0",
                                "--precision", prec, *extra], capture_output=True, text=True, env=ENV)
            if r.returncode not in (0, 75):
                b.row("precision_annotate", {"model": os.path.basename(model), "precision": prec}, {"refused": r.stderr.strip()[-300:]})
                continue
            rj = json.load(open(os.path.join(out, "run.json")))
            infer_s = sum(x["stages"]["infer"]["thread_s"] for x in rj["per_rank"])
            rate = rj["annotate"]["tokens"]["real_tokens"] / infer_s
            base = base or rate
            mean_len = rj["annotate"]["tokens"]["real_tokens"] / max(1, rj["records_scored"])
            gflops = rate * layers * (2 * 12 * hidden * hidden + 4 * mean_len * hidden) / 1e9
            b.row("precision_annotate", {"model": os.path.basename(model), "hidden": hidden, "layers": layers, "precision": prec,
                                         "threads": cores, "sequences": rj["records_scored"]},
                  {"tokens_per_s": rate, "vs_fp32": rate / base, "model_gflops": gflops,
                   "fraction_of_fp32_matmul_all_cores": gflops / mm["matmul_gflops_all_cores"],
                   "ran": rj["annotate"]["precision"]["used"], "graph_passes": rj["annotate"]["precision"]["graph_passes"]})



def images_section(a, b, cores):
    """CheXNet-class classification (DenseNet-121 at 224, 14 sigmoid labels, random weights) of
    1024 x 1024 8-bit grey PNGs: hpcscreen classify (1 rank x all cores) at FP32, BF16 and the
    statically quantized INT8 model (tools/quantize_image_model.py, calibrated on 16 of the
    images) against the Python script a user would write (tools/bench/python_image_baseline.py:
    torchvision DataLoader, PIL, two workers, the same TorchScript file), in the same run. Each
    precision's agreement with FP32: per-label max |dp| and the overlap of the top quarter by
    Pneumonia (top 100 when there are 400 images or more)."""
    import csv
    import numpy as np
    from PIL import Image
    n = 8 if a.smoke else a.images
    folder = os.path.join(a.work, f"xray{n}")
    if not os.path.exists(folder):
        os.makedirs(folder)
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:1024, 0:1024]
        for i in range(n):  # smooth structure + noise: compresses like a radiograph, not like noise
            img = 128 + 60 * np.sin(x / (40 + i % 17)) * np.cos(y / (55 + i % 13)) + rng.normal(0, 12, (1024, 1024))
            Image.fromarray(img.clip(0, 255).astype(np.uint8), "L").save(os.path.join(folder, f"{i:06d}.png"))
    lib = os.path.join(a.work, f"xray{n}-lib")
    if not os.path.exists(lib):
        sh([b.hpcscreen, "pack", "images", "--input", folder, "--out", lib])
    small = ["--small"] if a.smoke else []  # the smoke run checks the harness with a tiny CNN
    name = "tiny-cnn-seed0" if a.smoke else "densenet121-seed0"
    fp32 = os.path.join(a.work, f"{name}.pt")
    int8 = os.path.join(a.work, f"{name}-int8.pt")
    if not os.path.exists(fp32):
        sh([PY, os.path.join(ROOT, "tools", "export_chexnet.py"), "--seed", "0", *small, "--out", fp32])
    if not os.path.exists(int8):
        sh([PY, os.path.join(ROOT, "tools", "quantize_image_model.py"), "--seed", "0", *small, "--calibrate", folder,
            "--n", str(min(n, 16)), "--out", int8])
    py = json.loads(sh([PY, os.path.join(HERE, "python_image_baseline.py"), folder, fp32, "--workers", "2",
                        "--batch", "16", "--threads", str(cores)]).stdout)
    runs = {}
    for prec, model in (("fp32", fp32), ("bf16", fp32), ("int8", int8)):
        out = os.path.join(a.work, f"images-{prec}")
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.time()
        r = subprocess.run([b.hpcscreen, "classify", "--library", lib, "--model", model, "--out", out, "--threads",
                            str(cores), "--precision", prec, "--progress-interval", "0"], capture_output=True, text=True, env=ENV)
        if r.returncode != 0:
            b.row("images", {"precision": prec}, {"refused": r.stderr.strip()[-300:]})
            continue
        rj = json.load(open(os.path.join(out, "run.json")))
        with open(os.path.join(out, "predictions.csv")) as f:
            rows = list(csv.DictReader(f))
        runs[prec] = (rj, rows, time.time() - t0)
    base = runs.get("fp32")
    labels = json.load(open(os.path.join(a.work, "images-fp32", "run.json")))["classify"]["model"]["labels"] if base else []
    k = min(100, max(1, n // 4)) if n < 400 else 100
    for prec, (rj, rows, outer) in runs.items():
        rate = rj["records_scored"] / rj["wall_time_s"]
        d = max(abs(float(x[l]) - float(y[l])) for x, y in zip(rows, base[1]) for l in labels)
        top = lambda rs: {r_["id"] for r_ in sorted(rs, key=lambda r_: -float(r_["Pneumonia"]))[:k]}
        b.row("images", {"images": n, "size": "1024x1024 grey PNG", "model": f"{name} (random weights)", "crop": "center 224",
                         "ranks": 1, "threads": cores, "precision": prec, "python": "DataLoader, 2 workers, batch 16"},
              {"images_per_s": rate, "images_per_s_outer": rj["records_scored"] / outer, "python_images_per_s": py["images_per_s"],
               "vs_python": rate / py["images_per_s"], "vs_fp32": rate / (base[0]["records_scored"] / base[0]["wall_time_s"]),
               "max_abs_dp_vs_fp32": d, f"top{k}_overlap_vs_fp32": len(top(rows) & top(base[1])) / k,
               "ran": rj["classify"]["precision"].get("used"), "graph_passes": rj["classify"]["precision"].get("graph_passes")})


if __name__ == "__main__":
    main()
