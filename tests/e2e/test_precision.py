#!/usr/bin/python3
"""End to end: --precision on screen and annotate. Each precision this CPU runs gives the same
accounting and rejects as FP32 and scores within a stated tolerance of FP32's; run.json records
the precision, the ISA found and the quantized engine; a precision the CPU lacks is refused at
start (exit 1) naming the missing ISA (HPCSCREEN_FAKE_CPU_FEATURES, a test-only override, makes
CPUID look empty); an unknown precision is a usage error (exit 2)."""
import os

from common import e2e_args, NCI, check, finish, read_csv, read_json, run

# |score - FP32 score| within 2% of the largest |FP32 score| of the run: the random test GNN sums
# over atoms, so its logits reach ~10 on NCI molecules; BF16 (8 significant bits) gave 1%, INT8
# (weights at 1/255 of each row's range, activations quantized per batch) 1.5% here.
RELATIVE_TOLERANCE = 0.02


def hpcscreen(a, args, env_extra=None, expect=None):
    """args under mpirun with 2 ranks; env_extra is exported to the ranks."""
    env_extra = env_extra or {}
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", **env_extra)
    exports = [x for k in ["OPENBLAS_NUM_THREADS", *env_extra] for x in ("-x", k)]
    return run(["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", *exports,
                a.hpcscreen, *args, "--threads", "1", "--progress-interval", "0"], env=env, expect=expect)


def main():
    a = e2e_args()
    smi = os.path.join(a.work, "nci.smi")
    with open(NCI) as f:
        lines = f.readlines()[:300]
    with open(smi, "w") as f:
        f.writelines(lines)
        f.write("C1CC unclosed_ring\n")
    lib = os.path.join(a.work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib], expect=0)
    gnn = os.path.join(a.models, "gnn.pt")

    def screen(prec, env_extra=None, expect=0):
        out = os.path.join(a.work, f"screen-{prec}-{'fake' if env_extra else 'real'}")
        p = hpcscreen(a, ["screen", "--library", lib, "--model", gnn, "--out", out, "--top-k", "1000", "--precision", prec],
                      env_extra, expect)
        return out, p

    fp32, _ = screen("fp32")
    rj32 = read_json(os.path.join(fp32, "run.json"))
    p32 = rj32["screen"]["precision"]
    check(p32["requested"] == "fp32" and p32["used"] == "fp32" and p32["quantized_engine"] == "onednn"
          and isinstance(p32["isa_found"], list), f"run.json records FP32, the ISA found and the engine: {p32}")
    base = {h["id"]: float(h["score"]) for h in read_csv(os.path.join(fp32, "hits.csv"))}

    for prec in ("bf16", "int8", "auto"):
        out, p = screen(prec, expect=None)
        if p.returncode == 1 and "which this CPU lacks" in p.stderr:
            print(f"  skip: {prec}: {p.stderr.strip().splitlines()[-1]}")
            continue
        check(p.returncode == 0, f"screen --precision {prec} runs (exit {p.returncode})")
        rj = read_json(os.path.join(out, "run.json"))
        rec = rj["screen"]["precision"]
        check(rec["requested"] == prec and rec["used"] in ("fp32", "bf16", "int8") and (prec == "auto" or rec["used"] == prec),
              f"{prec}: run.json records what ran: {rec['used']}, passes {rec['graph_passes']}")
        check(all(rj[k] == rj32[k] for k in ("records_read", "records_scored", "records_rejected", "records_failed")),
              f"{prec}: the same accounting as FP32")
        check(open(os.path.join(out, "rejects.csv")).read() == open(os.path.join(fp32, "rejects.csv")).read(),
              f"{prec}: the same rejects as FP32")
        got = {h["id"]: float(h["score"]) for h in read_csv(os.path.join(out, "hits.csv"))}
        worst = max(abs(got[k] - base[k]) for k in base) if got.keys() == base.keys() else float("inf")
        allowed = RELATIVE_TOLERANCE * max(abs(v) for v in base.values())
        check(worst <= allowed, f"{prec}: every score within {allowed:.3f} of FP32 (max |delta| {worst:.4f})")

    # A CPU without the ISA (faked): refused at start, naming what is missing.
    for prec, isa in (("bf16", "AVX512_BF16"), ("int8", "AVX512_VNNI")):
        _, p = screen(prec, {"HPCSCREEN_FAKE_CPU_FEATURES": ""}, expect=None)
        check(p.returncode == 1 and isa in p.stderr, f"{prec} on a CPU without {isa}: exit 1 naming it (exit {p.returncode})")
    out, p = screen("auto", {"HPCSCREEN_FAKE_CPU_FEATURES": ""}, expect=0)
    rec = read_json(os.path.join(out, "run.json"))["screen"]["precision"]
    check(rec["used"] == "fp32" and rec.get("isa_faked") and rec["isa_found"] == [], f"auto without the ISA runs FP32: {rec}")
    p = run([a.hpcscreen, "screen", "--library", lib, "--model", gnn, "--out", os.path.join(a.work, "bad"), "--precision", "fp16"])
    check(p.returncode == 2 and "--precision must be" in p.stderr, "an unknown precision is a usage error (exit 2)")

    # annotate: the per-residue test BERT at each precision the CPU runs.
    fa = os.path.join(a.work, "p.fa")
    with open(fa, "w") as f:
        for i, s in enumerate(["MKTAYIAKQRQISFVKSHFSRQ", "GGSGGACDEFGHIKLMNPQRSTVWY" * 3, "MKV"]):
            f.write(f">p{i}\n{s}\n")
    plib = os.path.join(a.work, "plib")
    run([a.hpcscreen, "pack", "proteins", "--input", fa, "--out", plib], expect=0)
    for prec in ("fp32", "bf16", "int8"):
        out = os.path.join(a.work, f"annotate-{prec}")
        p = hpcscreen(a, ["annotate", "--library", plib, "--model", os.path.join(a.models, "bert_residue.pt"), "--out", out,
                          "--long-sequences", "window", "--precision", prec])
        if p.returncode == 1 and "which this CPU lacks" in p.stderr:
            print(f"  skip: annotate {prec}: CPU lacks the ISA")
            continue
        check(p.returncode == 0, f"annotate --precision {prec} runs")
        rec = read_json(os.path.join(out, "run.json"))["annotate"]["precision"]
        check(rec["used"] == prec, f"annotate run.json records {prec}")
    finish()


if __name__ == "__main__":
    main()
