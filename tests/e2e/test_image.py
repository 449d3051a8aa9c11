#!/usr/bin/env python3
"""Images end to end: `pack images` over the generated corpus (every PNG/JPEG/DICOM form the
workload reads, and hostile files) and `classify` on 1, 2 and 3 ranks. Expected values come from
tests/image_reference.py (Pillow, pydicom, torchvision) and PyTorch, never from hpcscreen:

- a probe model whose outputs are its input tensor's values: the C++ decode + preprocess must
  equal the reference exactly (float32), for centre crops and ten crops;
- the tiny CNN from tools/export_chexnet.py: probabilities equal to PyTorch's on the reference
  tensors (float tolerance: batch composition may change the last bits);
- every file is a record or a pack reject with a reason, as index.json expects;
- 1, 2 and 3 ranks give identical predictions; a run stopped after one chunk and resumed gives
  the same as one that ran through."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from common import check, e2e_args, finish, mpirun, read_csv, read_json, read_library, run

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))

try:
    import torch
    import image_reference as ref
except ImportError as e:  # torchvision/Pillow/pydicom missing: tools/install-deps.sh installs them
    print(f"skipped: {e}")
    sys.exit(77)

a = e2e_args()
hp = a.hpcscreen
W = a.work
PY = sys.executable

corpus = os.path.join(W, "corpus")
run([PY, os.path.join(ROOT, "tests", "make_test_images.py"), "--out", corpus, "--seed", "1"],
    expect=0)
index = read_json(os.path.join(corpus, "index.json"))
by_file = {e["file"]: e for e in index}
folders = sorted({e["file"].split("/")[0] for e in index})


# ---------------------------------------------------------------------------------- models
class Probe(torch.nn.Module):
    """Outputs its input: one label per value of the [3, h, w] tensor (of the mean over crops)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def save_probe(path, crop, resize, size):
    n = 3 * size * size
    meta = {"contract": "hpcscreen.image/1", "kind": "cnn", "name": "probe",
            "labels": [f"v{i}" for i in range(n)], "rank_by": "v0",
            "output": {"values": "scores"},
            "preprocess": {"resize": resize, "interpolation": "bilinear", "crop": crop,
                           "crop_size": size, "color": "rgb", "scale": 255.0,
                           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    torch.jit.save(torch.jit.script(Probe()), path, _extra_files={"hpcscreen.json": json.dumps(meta)})
    return meta


probe_center = os.path.join(W, "probe_center.pt")
probe_ten = os.path.join(W, "probe_ten.pt")
meta_center = save_probe(probe_center, "center", 13, 11)
meta_ten = save_probe(probe_ten, "ten", 24, 9)
tiny = os.path.join(W, "tiny.pt")
run([PY, os.path.join(ROOT, "tools", "export_chexnet.py"), "--seed", "3", "--small", "--out", tiny],
    expect=0)

# ------------------------------------------------------------------------------------ pack
inputs = [os.path.join(corpus, f) for f in folders]
lib1 = os.path.join(W, "lib1")
lib3 = os.path.join(W, "lib3")
r = run([hp, "pack", "images", "--input", *inputs, "--out", lib1, "--shard-size", "16"], expect=0)
print(r.stdout)
mpirun(3, [hp, "pack", "images", "--input", *inputs, "--out", lib3, "--shard-size", "16"],
       threads=None, expect=0)
manifest, records = read_library(lib1)
_, records3 = read_library(lib3)
check(manifest["kind"] == "images", "the library's kind is images")
check([(r_["id"], r_["bytes"]) for r_ in records] == [(r_["id"], r_["bytes"]) for r_ in records3],
      "pack under 3 ranks gives the same records as one process")

# Shards close at --shard-size images or --shard-bytes bytes, whichever comes first, so a rank's
# memory stays bounded whatever the images weigh; the records are the same.
lib_bytes = os.path.join(W, "lib_bytes")
run([hp, "pack", "images", "--input", *inputs, "--out", lib_bytes, "--shard-bytes", "100000"], expect=0)
manifest_b, records_b = read_library(lib_bytes)
check(len(manifest_b["shards"]) > 2 and [(r_["id"], r_["bytes"]) for r_ in records_b] == [(r_["id"], r_["bytes"]) for r_ in records],
      f"--shard-bytes 100000: {len(manifest_b['shards'])} shards, the same records")
sizes = {}
for r_ in records_b:
    sizes.setdefault(r_["shard"], []).append(len(r_["bytes"].encode("utf-8", "surrogateescape")))
check(all(sum(v[:-1]) < 100000 for v in sizes.values()), "a shard is closed by the image that reaches the limit")
r = run([hp, "pack", "images", "--help"], expect=0)
check("(=10000)" in r.stdout and "(=1073741824)" in r.stdout,
      "pack images' defaults: 10,000 images or 1 GiB per shard (the option defaults shown and used)")

# Every file is a record (id: its path inside its folder) or a pack reject, as expected.
packed = {rec["id"]: rec for rec in records}
rejects = read_csv(os.path.join(lib1, "pack_rejects.csv"))
ok_files = [e for e in index if e["expect"] == "ok"]
bad_files = [e for e in index if e["expect"] == "reject"]
ids_expected = sorted(e["file"].split("/", 1)[1] for e in ok_files)
check(len(records) + len(rejects) == len(index),
      f"every file accounted for: {len(records)} records + {len(rejects)} rejects = {len(index)}")
check(sorted(packed) == ids_expected, "exactly the readable files are records")
check(all(row["reason"] and ":" in row["reason"] for row in rejects),
      "every pack reject has a reason code and a detail")
print("rejects:", *[row["reason"][:110] for row in rejects], sep="\n  ")
check(len(rejects) == len(bad_files), f"{len(bad_files)} hostile files are the pack rejects")
check(all((int(packed[e["file"].split("/", 1)[1]]["width"]), int(packed[e["file"].split("/", 1)[1]]["height"]))
          == (e["width"], e["height"]) for e in ok_files), "width and height as the headers say")
check(all(open(os.path.join(corpus, e["file"]), "rb").read().decode("utf-8", "surrogateescape")
          == packed[e["file"].split("/", 1)[1]]["bytes"] for e in ok_files),
      "each record holds the file's original bytes")


# ------------------------------------------------------------------------ exact preprocessing
def predictions(run_dir):
    rows = read_csv(os.path.join(run_dir, "predictions.csv"))
    return {r_["id"]: r_ for r_ in rows}


def classify(np_, model, out, *extra, expect=0):
    return mpirun(np_, [hp, "classify", "--library", lib1, "--model", model, "--out", out,
                        "--chunk-rows", "8", "--batch-images", "5", "--progress-interval", "0",
                        *extra], expect=expect)


for model, meta, name in ((probe_center, meta_center, "centre"), (probe_ten, meta_ten, "ten")):
    out = os.path.join(W, f"run_probe_{name}")
    classify(2, model, out)
    got = predictions(out)
    spec = meta["preprocess"]
    worst, bad = 0.0, []
    for e in ok_files:
        rid = e["file"].split("/", 1)[1]
        t = ref.preprocess(ref.load_8bit(os.path.join(corpus, e["file"])), spec).numpy()
        if t.ndim == 4:  # ten crops: the model's outputs are averaged over crops
            t = t.reshape(10, -1).astype(np.float32).sum(0, dtype=np.float32) / np.float32(10)
        want = t.reshape(-1).astype(np.float32)
        row = got.get(rid)
        if row is None:
            bad.append(rid + " (no prediction)")
            continue
        have = np.array([float(row[f"v{i}"]) for i in range(want.size)], np.float32)
        d = float(np.abs(have - want).max())
        worst = max(worst, d)
        if d > (0 if name == "centre" else 2e-6):
            bad.append(f"{rid} (max |diff| {d:.3g})")
    check(not bad, f"{name} crops: C++ decode + preprocess equal the Python reference on all "
                   f"{len(ok_files)} images (max |diff| {worst:.3g}){': ' + ', '.join(bad[:8]) if bad else ''}")

# ------------------------------------------------------------------------------ tiny CNN
runs = {}
for np_ in (1, 2, 3):
    runs[np_] = os.path.join(W, f"run_tiny_np{np_}")
    classify(np_, tiny, runs[np_], "--top-k", "5", "--rank-by", "Pneumonia", "--rank-by", "Mass")
base = open(os.path.join(runs[1], "predictions.csv"), "rb").read()
check(all(open(os.path.join(runs[n], "predictions.csv"), "rb").read() == base for n in (2, 3)),
      "predictions.csv identical on 1, 2 and 3 ranks")
check(all(open(os.path.join(runs[n], f), "rb").read() == open(os.path.join(runs[1], f), "rb").read()
          for n in (2, 3) for f in ("hits.csv", "hits-Mass.csv")),
      "hit lists identical on 1, 2 and 3 ranks (one per --rank-by)")
rj = read_json(os.path.join(runs[1], "run.json"))
check(rj["records_scored"] == len(ok_files) and rj["accounting_ok"], "every image scored, accounting ok")
import h5py  # the per-chunk HDF5 files hold the same values as predictions.csv
h5_rows = {}
for name in sorted(os.listdir(os.path.join(runs[1], "predictions"))):
    if name.endswith(".h5"):
        with h5py.File(os.path.join(runs[1], "predictions", name), "r") as f:
            lab = f.attrs["labels"]
            labels = (lab.decode() if isinstance(lab, bytes) else str(lab)).split("\n")
            ids_b = f["id"]["bytes"][()].tobytes()
            off = f["id"]["offsets"][()]
            for k in range(len(off) - 1):
                h5_rows[ids_b[off[k]:off[k + 1]].decode("utf-8", "surrogateescape")] = dict(zip(labels, f["scores"][k]))
csv_rows = predictions(runs[1])
check(len(h5_rows) == len(csv_rows) and all(np.float32(float(csv_rows[i][l])) == v
                                            for i, r_ in h5_rows.items() for l, v in r_.items()),
      f"per-chunk HDF5 predictions equal predictions.csv ({len(h5_rows)} images)")
extra = {"hpcscreen.json": ""}
net = torch.jit.load(tiny, _extra_files=extra).eval()
tmeta = json.loads(extra["hpcscreen.json"])
got = predictions(runs[1])
worst = 0.0
with torch.no_grad():
    for e in ok_files:
        rid = e["file"].split("/", 1)[1]
        x = ref.preprocess(ref.load_8bit(os.path.join(corpus, e["file"])), tmeta["preprocess"])
        p = net(x.unsqueeze(0) if x.dim() == 3 else x).mean(0).numpy()
        have = np.array([float(got[rid][l]) for l in tmeta["labels"]])
        worst = max(worst, float(np.abs(have - p).max()))
check(worst <= 1e-5, f"tiny CNN: probabilities equal PyTorch's on the reference tensors (max |diff| {worst:.2e})")
hits = read_csv(os.path.join(runs[1], "hits.csv"))
# predictions.csv names each record's shard file, as hits.csv does; ties go by the manifest's order
shard_index = {s["file"]: i for i, s in enumerate(manifest["shards"])}
check(set(r_["shard"] for r_ in got.values()) <= set(shard_index), "predictions.csv names shard files of the library")
order = sorted(got.values(), key=lambda r_: (-float(r_["Pneumonia"]), shard_index[r_["shard"]], int(r_["row"])))[:5]
check([h["id"] for h in hits] == [r_["id"] for r_ in order], "hits.csv: the top 5 by Pneumonia, ties by record")

html = open(os.path.join(runs[1], "report.html")).read()
check(html.count('src="data:image/png;base64,') == 5, "report.html shows each of the 5 hits as a PNG thumbnail")
check("<script" not in html.split("<h2>Top hits</h2>")[1].split("</table>")[0], "no script in the hits table")

# Rejected at decode time in the run: a limit the images pass at pack but not here.
small = os.path.join(W, "run_small_limit")
classify(1, tiny, small, "--max-pixels", "2000")
rj = read_json(os.path.join(small, "run.json"))
big = [e for e in ok_files if e["width"] * e["height"] > 2000]
rejected = read_csv(os.path.join(small, "rejects.csv"))
check(rj["records_rejected"] == len(big) and rj["records_scored"] == len(ok_files) - len(big)
      and rj["accounting_ok"], f"--max-pixels 2000: the {len(big)} larger images are rejected in the run, the rest scored")
check(all(r_["reason"].startswith("too_many_pixels:") for r_ in rejected) and len(rejected) == len(big),
      "each is in rejects.csv with too_many_pixels")

# A thin strip of a few KB under the pixel limit, whose resize (short side to the model's
# size) would be gigabytes: the limit applies to the resize's output too.
import struct
import zlib
strip_dir = os.path.join(W, "strip")
os.makedirs(strip_dir, exist_ok=True)
strip_w = 3_000_000
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
with open(os.path.join(strip_dir, "strip.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", strip_w, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" + bytes(strip_w), 9)) + chunk(b"IEND", b""))
shutil.copyfile(os.path.join(corpus, ok_files[0]["file"]), os.path.join(strip_dir, "ordinary" + os.path.splitext(ok_files[0]["file"])[1]))
strip_lib, strip_run = os.path.join(W, "strip_lib"), os.path.join(W, "strip_run")
shutil.rmtree(strip_lib, ignore_errors=True)
shutil.rmtree(strip_run, ignore_errors=True)
run([hp, "pack", "images", "--input", strip_dir, "--out", strip_lib], expect=0)
mpirun(1, [hp, "classify", "--library", strip_lib, "--model", tiny, "--out", strip_run, "--progress-interval", "0"],
       expect=0)
rejected = read_csv(os.path.join(strip_run, "rejects.csv"))
check([(r_["id"], r_["reason"].split(":")[0]) for r_ in rejected] == [("strip.png", "too_many_pixels")]
      and read_json(os.path.join(strip_run, "run.json"))["records_scored"] == 1,
      f"a {strip_w} x 1 strip (3 MP, a few KB) whose resize would exceed the limit is a reject; the other image "
      f"is scored ({[r_['reason'][:90] for r_ in rejected]})")

# ---------------------------------------------------------------------------- stop, resume
part = os.path.join(W, "run_resumed")
r = classify(1, tiny, part, "--max-chunks", "1", expect=75)
classify(1, tiny, part, "--resume", expect=0)
check(open(os.path.join(part, "predictions.csv"), "rb").read() == base,
      "stopped after one chunk and resumed: predictions identical to a run straight through")
r = classify(1, tiny, part, "--resume", "--top-k", "7", expect=1)
check("top_k" in r.stderr, "resume with another --top-k is refused, naming it")

# ---------------------------------------------------------------------------- a CSV list
# As NIH ChestX-ray14's Data_Entry file: an "Image Index" column of paths relative to the list,
# label columns kept for the outputs. A row naming no file and an over-long line are the rows'
# own pack rejects (the long one naming --max-line-bytes); the other rows are records.
listed = ok_files[:5]
list_path = os.path.join(corpus, "entries.csv")
with open(list_path, "w") as f:
    f.write("Image Index,Finding Labels,Patient ID\n")
    for i, e in enumerate(listed):
        f.write(f"{e['file']},Finding{i}|Other,{100 + i}\n")
    f.write("nowhere/missing.png,No Finding,7\n")
    f.write(listed[0]["file"] + ",\"" + "x" * 400 + "\",8\n")
lib_list = os.path.join(W, "lib_list")
run([hp, "pack", "images", "--input", list_path, "--out", lib_list, "--keep-columns",
     "Finding Labels,Patient ID", "--max-line-bytes", "300"], expect=0)
_, list_records = read_library(lib_list)
list_rejects = read_csv(os.path.join(lib_list, "pack_rejects.csv"))
check([r_["id"] for r_ in list_records] == [e["file"] for e in listed],
      "a list's rows are records in its order, ids the paths as written")
check([(r_["Finding Labels"], r_["Patient ID"]) for r_ in list_records]
      == [(f"Finding{i}|Other", str(100 + i)) for i in range(len(listed))],
      "the kept columns are in the shards")
print("list rejects:", *list_rejects, sep="\n  ")
check(len(list_rejects) == 2 and any("missing.png" in v for v in list_rejects[0].values())
      and "--max-line-bytes" in list_rejects[1]["reason"],
      "a row naming no file and a line over --max-line-bytes are the rows' rejects")
out_list = os.path.join(W, "run_list")
mpirun(1, [hp, "classify", "--library", lib_list, "--model", tiny, "--out", out_list,
           "--progress-interval", "0"], expect=0)
list_rows = read_csv(os.path.join(out_list, "predictions.csv"))
check([(r_["id"], r_["Finding Labels"]) for r_ in list_rows]
      == [(e["file"], f"Finding{i}|Other") for i, e in enumerate(listed)],
      "classify of the list library: every record, kept columns beside the predictions")

# ChestX-ray14 as downloaded: Data_Entry_2017.csv names bare files, which unpack into images/
# beside it. Read from the list's folder, every row is a reject and the pack fails (exit 1);
# with --image-dir images/ every row is a record.
nih = os.path.join(W, "nih")
os.makedirs(os.path.join(nih, "images"))
with open(os.path.join(nih, "Data_Entry_2017.csv"), "w") as f:
    f.write("Image Index,Finding Labels\n")
    for i, e in enumerate(listed):
        name = f"{i:08d}_000" + os.path.splitext(e["file"])[1]
        shutil.copyfile(os.path.join(corpus, e["file"]), os.path.join(nih, "images", name))
        f.write(f"{name},Finding{i}\n")
entry = os.path.join(nih, "Data_Entry_2017.csv")
r = run([hp, "pack", "images", "--input", entry, "--path-column", "Image Index", "--out", os.path.join(W, "nih_lib0")])
nih_rejects = read_csv(os.path.join(W, "nih_lib0", "pack_rejects.csv"))
check(r.returncode == 1 and "nothing was packed" in r.stderr and "--image-dir" in r.stderr
      and len(nih_rejects) == len(listed) and all(x["reason"].startswith("missing:") for x in nih_rejects),
      f"bare names read from the list's folder: all {len(listed)} rejects, exit 1 naming --image-dir (exit {r.returncode})")
run([hp, "pack", "images", "--input", entry, "--path-column", "Image Index", "--image-dir",
     os.path.join(nih, "images"), "--keep-columns", "Finding Labels", "--out", os.path.join(W, "nih_lib")], expect=0)
_, nih_records = read_library(os.path.join(W, "nih_lib"))
check([(r_["id"], r_["Finding Labels"]) for r_ in nih_records]
      == [(f"{i:08d}_000" + os.path.splitext(e["file"])[1], f"Finding{i}") for i, e in enumerate(listed)]
      and [r_["bytes"] for r_ in nih_records] == [r_["bytes"] for r_ in list_records],
      "--image-dir: every row a record, ids the names as written, the same image bytes")
r = run([hp, "pack", "images", "--input", os.path.join(nih, "images"), "--image-dir", nih, "--out", os.path.join(W, "nih_bad")])
check(r.returncode == 2 and "--image-dir is for lists" in r.stderr, f"--image-dir without a list: exit {r.returncode} (2)")
r = run([hp, "pack", "images", "--input", entry, "--image-dir", "", "--out", os.path.join(W, "nih_empty")])
check(r.returncode == 2 and "--image-dir is empty" in r.stderr, f"--image-dir '': exit {r.returncode} (2)")

# ------------------------------------------------------------------------------- refusals
inside = os.path.join(corpus, ok_files[0]["file"])
r = run([hp, "pack", "images", "--input", os.path.dirname(inside), inside, "--out",
         os.path.join(W, "lib_twice")], expect=2)
check("inside input folder" in r.stderr and not os.path.exists(os.path.join(W, "lib_twice", "manifest.json")),
      "a file inside an input folder is refused (it would be packed twice)")
r = run([hp, "pack", "images", "--input", os.path.dirname(inside), "--out",
         os.path.join(os.path.dirname(inside), "lib_here")], expect=2)
check("lies inside input folder" in r.stderr and not os.path.exists(os.path.join(os.path.dirname(inside), "lib_here", "manifest.json")),
      "--out inside an input folder is refused (the pack would read its own files)")
r = run([hp, "classify", "--library", lib1, "--model", tiny, "--out", os.path.join(W, "x"),
         "--precision", "int8"], expect=1)
check("static quantization" in r.stderr, "--precision int8 on an FP32 CNN says to quantize statically")
r = run([hp, "classify", "--library", lib1, "--model", tiny, "--out", os.path.join(W, "y"),
         "--rank-by", "Nope"], expect=2)
check("not a label" in r.stderr, "an unknown --rank-by label is a usage error")

# A statically quantized model runs as INT8 where the CPU has VNNI (oneDNN's INT8 without it
# saturates 16-bit sums: other numbers); --precision bf16 needs the FP32 file. Both refusals are
# facts of the model or the node: exit 1.
calib = os.path.join(W, "calib")
os.makedirs(calib)
for e in [e for e in ok_files if e["file"].lower().endswith((".jpg", ".jpeg"))][:8]:  # 8-bit
    shutil.copyfile(os.path.join(corpus, e["file"]), os.path.join(calib, e["file"].replace("/", "_")))
tiny8 = os.path.join(W, "tiny8.pt")
run([PY, os.path.join(ROOT, "tools", "quantize_image_model.py"), "--seed", "3", "--small", "--calibrate", calib,
     "--out", tiny8], expect=0)
no_vnni = dict(os.environ, HPCSCREEN_FAKE_CPU_FEATURES="avx512f,avx512_bf16")
r = run([hp, "classify", "--library", lib1, "--model", tiny8, "--out", os.path.join(W, "q0"), "--threads", "1"], env=no_vnni)
check(r.returncode == 1 and "AVX512_VNNI" in r.stderr and not os.path.exists(os.path.join(W, "q0")),
      f"a statically quantized model on a CPU without VNNI: exit {r.returncode} (1), names the ISA, no run folder")
r = run([hp, "classify", "--library", lib1, "--model", tiny8, "--out", os.path.join(W, "q1"), "--precision", "bf16"])
check(r.returncode == 1 and "needs its FP32 file" in r.stderr, f"--precision bf16 on an INT8 file: exit {r.returncode} (1)")
vnni = dict(os.environ, HPCSCREEN_FAKE_CPU_FEATURES="avx512f,avx512_vnni")
r = run([hp, "classify", "--library", lib1, "--model", tiny8, "--out", os.path.join(W, "q2"), "--threads", "1"], env=vnni)
q = read_json(os.path.join(W, "q2", "run.json")) if r.returncode == 0 else {}
check(r.returncode == 0 and q["classify"]["precision"]["used"] == "int8" and q["records_scored"] == read_json(os.path.join(runs[1], "run.json"))["records_scored"],
      f"with VNNI it runs as INT8, every image scored (exit {r.returncode})")
finish()
