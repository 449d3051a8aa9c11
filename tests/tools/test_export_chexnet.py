#!/usr/bin/python3
"""tools/export_chexnet.py: a checkpoint in arnoweng/CheXNet's layout
(tests/make_chexnet_checkpoint.py, seeded random weights) converted to TorchScript gives the
outputs of torchvision's densenet121 holding those weights (the model the checkpoint was made
from, and a fresh densenet121 loaded from the checkpoint renamed here, independently of the
tool); broken checkpoints and an existing --out are refused with exit 1 and a message; the
metadata reads back; --small makes the tiny CNN. No hpcscreen binary; about a minute on 2 cores.

  /usr/bin/python3 tests/tools/test_export_chexnet.py
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MISSING = [m for m in ("torchvision",) if importlib.util.find_spec(m) is None]
if MISSING:
    print(f"skip: no {', '.join(MISSING)} (Debian: python3-torchvision)")
    sys.exit(77)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import torch  # noqa: E402
import torchvision  # noqa: E402

import make_chexnet_checkpoint  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tools"))
from hpcscreen_py import chexnet  # noqa: E402

EXPORT = os.path.join(ROOT, "tools", "export_chexnet.py")
TOLERANCE = 1e-6
# written out here, not taken from the tool
CHEXNET_LABELS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                  "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema",
                  "Fibrosis", "Pleural_Thickening", "Hernia"]
EXPECTED_META = {
    "contract": "hpcscreen.image/1", "kind": "cnn", "name": "chexnet-densenet121",
    "labels": CHEXNET_LABELS, "rank_by": "Pneumonia", "higher_is_better": True,
    "output": {"values": "probabilities", "activation": "sigmoid"},
    "preprocess": {"resize": 256, "interpolation": "bilinear", "crop": "center",
                   "crop_size": 224, "color": "rgb", "scale": 255.0,
                   "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
# renaming written here for the reference: PyTorch < 0.4 spelling -> today's, dense layers only
OLD_TO_NEW = {".norm.1.": ".norm1.", ".relu.1.": ".relu1.", ".conv.1.": ".conv1.",
              ".norm.2.": ".norm2.", ".relu.2.": ".relu2.", ".conv.2.": ".conv2."}

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def run_export(*args):
    return subprocess.run([sys.executable, EXPORT, *args], capture_output=True, text=True)


def refused(r, out, *words):
    """exit 1, a message naming `words`, no traceback, nothing at `out`."""
    return (r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("error:")
            and all(w in r.stderr for w in words) and not os.path.exists(out))


def read_model(path):
    files = {"hpcscreen.json": ""}
    module = torch.jit.load(path, map_location="cpu", _extra_files=files)
    return module, json.loads(files["hpcscreen.json"])


def reference_from_file(path):
    """torchvision densenet121 + CheXNet's classifier loaded (strict) from the checkpoint file,
    keys renamed here."""
    data = torch.load(path, map_location="cpu")  # a file this test wrote
    sd = {}
    for key, value in data["state_dict"].items():
        assert key.startswith("module.densenet121."), key
        key = key[len("module.densenet121."):]
        if ".denselayer" in key:
            for old, new in OLD_TO_NEW.items():
                key = key.replace(old, new)
        sd[key] = value
    model = torchvision.models.densenet121(weights=None)
    model.classifier = torch.nn.Sequential(torch.nn.Linear(1024, 14), torch.nn.Sigmoid())
    model.load_state_dict(sd, strict=True)
    return model.eval()


def inputs(seed, n=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 224, 224, generator=g) for _ in range(n)]


def max_diff(a, b, xs):
    with torch.no_grad():
        return max((a(x) - b(x)).abs().max().item() for x in xs)


def test_convert(tmp):
    ckpt = os.path.join(tmp, "model.pth.tar")
    original = make_chexnet_checkpoint.write(ckpt, seed=7)
    out = os.path.join(tmp, "chexnet.pt")
    r = run_export("--checkpoint", ckpt, "--out", out)
    check(r.returncode == 0 and os.path.isfile(out), f"converted: {r.stdout.strip()[-120:]}"
          + r.stderr.strip()[-300:])
    if r.returncode != 0:
        return ckpt
    module, meta = read_model(out)
    check({k: meta.get(k) for k in EXPECTED_META} == EXPECTED_META,
          "metadata reads back as the contract says")
    check(meta.get("weights", {}).get("source") == "checkpoint"
          and meta["weights"].get("file") == "model.pth.tar", f"weights: {meta.get('weights')}")
    xs = inputs(0)
    with torch.no_grad():
        y = module(xs[0])
        want = original(xs[0])
    check(y.dtype == torch.float32 and list(y.shape) == [2, 14],
          f"output {y.dtype} {list(y.shape)}")
    # the comparison means something only if the outputs are neither saturated nor constant
    check(0.01 < want.min().item() and want.max().item() < 0.99 and want.std().item() > 0.01,
          f"reference outputs spread in (0.01, 0.99): {want.min().item():.3f}.."
          f"{want.max().item():.3f}, sd {want.std().item():.3f}")
    d_original = max_diff(module, original, xs)
    check(d_original <= TOLERANCE,
          f"TorchScript vs the densenet121 the checkpoint was made from: max |diff| "
          f"{d_original:.2g}")
    d_file = max_diff(module, reference_from_file(ckpt), xs)
    check(d_file <= TOLERANCE,
          f"TorchScript vs densenet121 loaded from the checkpoint renamed by the test: "
          f"{d_file:.2g}")
    with torch.no_grad():
        y3 = module(torch.randn(3, 3, 224, 224))
    check(list(y3.shape) == [3, 14], "batch size not baked in (3 rows in, 3 out)")
    # a different seed is a different model: the comparison can fail
    other = make_chexnet_checkpoint.reference_model(8)
    check(max_diff(module, other, xs[:1]) > 1e-3, "another seed's model differs (> 1e-3)")
    return ckpt


def test_variants(tmp):
    """A PyTorch-0.3-era file (torch's legacy format, no num_batches_tracked) through the tool,
    with --ten-crops and --rank-by; today's spelling through the tool's loader in-process."""
    ckpt = os.path.join(tmp, "legacy.pth.tar")
    original = make_chexnet_checkpoint.write(ckpt, seed=11, legacy=True)
    out = os.path.join(tmp, "legacy.pt")
    r = run_export("--checkpoint", ckpt, "--out", out, "--ten-crops", "--rank-by", "Edema")
    if r.returncode != 0:
        check(False, f"legacy checkpoint: {r.stderr.strip()[-300:]}")
    else:
        module, meta = read_model(out)
        d = max_diff(module, original, inputs(11, 1))
        check(d <= TOLERANCE, f"legacy format, no num_batches_tracked: max |diff| {d:.2g}")
        check(meta["preprocess"]["crop"] == "ten" and meta["preprocess"]["crop_size"] == 224
              and meta["rank_by"] == "Edema", "--ten-crops --rank-by Edema in the metadata")
    ckpt = os.path.join(tmp, "modern.pth.tar")
    original = make_chexnet_checkpoint.write(ckpt, seed=12, modern_keys=True)
    model, _ = chexnet.model_from_checkpoint(ckpt, 14)
    d = max_diff(model, original, inputs(12, 1))
    check(d <= TOLERANCE, f"today's spelling (norm1, conv1, ...): max |diff| {d:.2g}")


def test_refusals(tmp, ckpt):
    good = torch.load(ckpt, map_location="cpu")  # a file this test wrote
    sd = good["state_dict"]
    marker = os.path.join(tmp, "code_ran")

    class RunsCode:
        def __reduce__(self):
            return (os.makedirs, (marker,))

    # through the tool: (name, checkpoint data, options, words the message names)
    missing_key = "module.densenet121.features.denseblock2.denselayer3.conv.2.weight"
    shape_key = "module.densenet121.features.denseblock3.denselayer5.norm.1.weight"
    cases = [
        ("missing", dict(good, state_dict={k: v for k, v in sd.items() if k != missing_key}),
         [], ["features.denseblock2.denselayer3.conv2.weight", "missing"]),
        ("shape", dict(good, state_dict=dict(sd, **{shape_key: torch.ones(7)})), [],
         [shape_key, "shape", "[7]"]),
        ("code", {"state_dict": {"features.conv0.weight": RunsCode()}}, [], ["not a tensor"]),
        ("labels", good, ["--labels-count", "5"], ["14 outputs", "5 labels"]),
    ]

    def run(case):
        name, data, options, _ = case
        path = os.path.join(tmp, f"bad_{name}.pth.tar")
        torch.save(data, path)
        return run_export("--checkpoint", path, "--out", os.path.join(tmp, f"bad_{name}.pt"),
                          *options)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, cases))
    for (name, _, options, words), r in zip(cases, results):
        check(refused(r, os.path.join(tmp, f"bad_{name}.pt"), *words),
              f"{name} {' '.join(options)}: exit {r.returncode}, {r.stderr.strip()[-200:]}")
    check(not os.path.exists(marker), "the pickled os.makedirs call did not run")

    # more, through the tool's functions (each a process start saved)
    nan_key = "module.densenet121.features.conv0.weight"
    nan = sd[nan_key].clone()
    nan[0, 0, 0, 0] = float("nan")
    extra_key = "module.densenet121.features.denseblock1.denselayer1.extra.weight"
    listed = "module.densenet121.features.norm0.bias"
    twice = "module.densenet121.features.denseblock1.denselayer1.norm1.weight"
    cases = [
        ("unexpected", dict(good, state_dict=dict(sd, **{extra_key: torch.ones(3)})),
         [extra_key, "unexpected"]),
        ("nan", dict(good, state_dict=dict(sd, **{nan_key: nan})), [nan_key, "non-finite"]),
        ("no_state_dict", {"model": sd, "epoch": 1}, ["state_dict", "'model'"]),
        ("not_tensor", dict(good, state_dict=dict(sd, **{listed: [1.0, 2.0]})),
         [listed, "not a tensor"]),
        ("not_dict", [sd], ["expected a dict", "found list"]),
        ("both_spellings", dict(good, state_dict=dict(sd, **{twice: sd[twice.replace(
            "norm1", "norm.1")]})), [twice, "both become"]),
        ("text", "not a checkpoint\n", ["not a readable torch checkpoint"]),
    ]
    for name, data, words in cases:
        path = os.path.join(tmp, f"bad_{name}.pth.tar")
        if isinstance(data, str):
            with open(path, "w") as f:
                f.write(data)
        else:
            torch.save(data, path)
        try:
            chexnet.model_from_checkpoint(path, 14)
            message = None
        except chexnet.Refusal as e:
            message = str(e)
        check(message is not None and all(w in message for w in words),
              f"{name}: {(message or 'accepted')[-160:]}")

    # --out exists: refused and untouched; --force replaces it
    out = os.path.join(tmp, "existing.pt")
    with open(out, "w") as f:
        f.write("keep me\n")
    r = run_export("--checkpoint", ckpt, "--out", out)
    with open(out) as f:
        kept = f.read() == "keep me\n"
    check(r.returncode == 1 and "Traceback" not in r.stderr and "exists" in r.stderr and kept,
          f"existing --out refused and kept: {r.stderr.strip()[-100:]}")
    r = run_export("--seed", "0", "--small", "--out", out, "--force")
    check(r.returncode == 0 and read_model(out)[1]["name"] == "tiny-cnn",
          "--force replaces an existing --out")
    r = run_export("--seed", "0", "--small", "--out", tmp)
    check(r.returncode == 1 and "directory" in r.stderr, "--out a directory refused")
    stray = [n for n in os.listdir(tmp) if n.endswith(".tmp")]
    check(not stray, f"no temporary files left: {stray}")


def test_small(tmp):
    out = os.path.join(tmp, "tiny.pt")
    r = run_export("--seed", "5", "--small", "--labels", "a,b,Pneumonia", "--out", out)
    check(r.returncode == 0, f"--small: {r.stdout.strip()[-100:]}{r.stderr.strip()[-200:]}")
    if r.returncode != 0:
        return
    module, meta = read_model(out)
    want = dict(EXPECTED_META, name="tiny-cnn", labels=["a", "b", "Pneumonia"],
                preprocess=dict(EXPECTED_META["preprocess"], resize=40, crop_size=32))
    check({k: meta.get(k) for k in want} == want, "--small metadata: tiny-cnn, resize 40, crop 32")
    with torch.no_grad():
        shapes = [list(module(torch.rand(b, 3, h, w)).shape)
                  for b, h, w in ((2, 32, 32), (1, 45, 61), (3, 7, 300))]
    check(shapes == [[2, 3], [1, 3], [3, 3]], f"any H x W: {shapes}")
    x = torch.rand(4, 3, 32, 32)
    same = max_diff(module, chexnet.random_model(3, 5, small=True), [x])
    other = max_diff(module, chexnet.random_model(3, 6, small=True), [x])
    check(same == 0.0 and other > 1e-4, f"--seed deterministic across processes (seed 5 again "
          f"{same:.2g}, seed 6 {other:.2g})")
    r = run_export("--seed", "5", "--small", "--labels-count", "3", "--out",
                   os.path.join(tmp, "tiny4.pt"))
    check(r.returncode == 0 and read_model(os.path.join(tmp, "tiny4.pt"))[1]["labels"]
          == CHEXNET_LABELS[:3] and read_model(os.path.join(tmp, "tiny4.pt"))[1]["rank_by"]
          == "Atelectasis", "--labels-count 3: the first three, ranked by the first")
    r = run_export("--seed", "5", "--small", "--labels", "a,a", "--out",
                   os.path.join(tmp, "tiny5.pt"))
    check(refused(r, os.path.join(tmp, "tiny5.pt"), "'a' appears twice"),
          f"duplicate labels refused: {r.stderr.strip()[-80:]}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = test_convert(tmp)
        test_variants(tmp)
        test_refusals(tmp, ckpt)
        test_small(tmp)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
