#!/usr/bin/python3
"""tools/quantize_image_model.py: the calibration images are preprocessed as the metadata says
(checked against a PIL + numpy implementation written here from torchvision's documented
Resize / CenterCrop / TenCrop rules); a DenseNet-121 checkpoint (tests/make_chexnet_checkpoint.py,
seeded random weights) quantized on 8 generated PNGs gives float32 [B, 14] probabilities close
to the FP32 model's (|dp| printed); its metadata is the FP32 one plus precision and
quantization; bad calibration sets are refused. No hpcscreen binary; under a minute on 2 cores.

  /usr/bin/python3 tests/tools/test_quantize_image_model.py
"""
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MISSING = [m for m in ("torchvision", "PIL") if importlib.util.find_spec(m) is None]
if MISSING:
    print(f"skip: no {', '.join(MISSING)} (Debian: python3-torchvision, python3-pil)")
    sys.exit(77)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import make_chexnet_checkpoint  # noqa: E402
from hpcscreen_py import chexnet  # noqa: E402

QUANTIZE = os.path.join(ROOT, "tools", "quantize_image_model.py")
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# a sanity bound, not a measured value: broken quantization (wrong scales, a dropped layer)
# moves sigmoid outputs by tenths; working INT8 on this random-weight model by hundredths
MAX_DELTA_P = 0.05

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def run_quantize(*args):
    return subprocess.run([sys.executable, QUANTIZE, *args], capture_output=True, text=True)


def make_images(folder, count, seed, size=(300, 280)):
    """PNGs of smooth random shapes (an X-ray is smooth, not pixel noise), in PIL modes L, RGB,
    RGBA and P and sizes around `size`."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        w, h = size[0] + 13 * i, size[1] + (-1) ** i * 9 * i
        low = rng.random((6, 6, 3))
        img = Image.fromarray((low * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        mode = ("L", "RGB", "RGBA", "P")[i % 4]
        img = img.convert(mode) if mode != "P" else img.quantize(64)
        paths.append(os.path.join(folder, f"img{i:02d}.png"))
        img.save(paths[-1])
    return paths


def write_png16_rgb(path, rgb16):
    """A 16-bit RGB PNG (colour type 2), written by hand: PIL cannot write one."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def reference_preprocess(path, resize, crop, ten=False):
    """float32 [3, crop, crop] ([10, ...] for ten crops), written from torchvision's rules:
    Resize(int): the shorter side becomes `resize`, the longer int(resize * long / short), PIL
    bilinear; CenterCrop: top = int(round((h - crop) / 2)); TenCrop: top-left, top-right,
    bottom-left, bottom-right, centre, then the same of the left-right mirror."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    a = np.asarray(img.resize((nw, nh), Image.BILINEAR), dtype=np.float32) / np.float32(255)
    a = (a - MEAN) / STD

    def cut(arr, top, left):
        return arr[top:top + crop, left:left + crop].transpose(2, 0, 1)

    centre = (int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0)))
    if not ten:
        return torch.from_numpy(np.ascontiguousarray(cut(a, *centre)))
    out = []
    for arr in (a, a[:, ::-1]):
        for top, left in ((0, 0), (0, nw - crop), (nh - crop, 0), (nh - crop, nw - crop), centre):
            out.append(cut(arr, top, left))
    return torch.from_numpy(np.ascontiguousarray(np.stack(out)))


def read_meta(path):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/extra/hpcscreen.json"))
        return json.loads(z.read(name))


def test_preprocess(paths):
    worst = 0.0
    for crop in ("center", "ten"):
        for small in (False, True):
            pre = chexnet.preprocess_spec(small=small, crop=crop)
            transform = chexnet.image_transform(pre)
            for path in paths[:4]:
                got = transform(chexnet.open_image(path))
                want = reference_preprocess(path, pre["resize"], pre["crop_size"], crop == "ten")
                if got.shape != want.shape:
                    check(False, f"{crop} small={small} {path}: {list(got.shape)} vs "
                          f"{list(want.shape)}")
                    return
                worst = max(worst, (got - want).abs().max().item())
    check(worst <= 1e-5, f"preprocessing = the PIL + numpy reference (center, ten; 256/224 and "
          f"40/32): max |diff| {worst:.2g}")


def test_16bit(tmp):
    """A 16-bit grey PNG is preprocessed as the 8-bit image (v16 + 128) // 257 (the image
    workload's rule, computed here)."""
    v16 = (np.arange(70 * 90, dtype=np.int64).reshape(70, 90) * 65535 // (70 * 90 - 1))
    v16[10:20, 10:30] = 65535 - v16[10:20, 10:30]
    wide = os.path.join(tmp, "grey16.png")
    Image.fromarray(v16.astype(np.uint16)).save(wide)
    narrow = os.path.join(tmp, "grey8.png")
    Image.fromarray(((v16 + 128) // 257).astype(np.uint8)).save(narrow)
    check(Image.open(wide).mode.startswith("I"), f"PIL opens the 16-bit PNG as mode "
          f"{Image.open(wide).mode}")
    pre = chexnet.preprocess_spec(small=True)
    got = chexnet.image_transform(pre)(chexnet.open_image(wide))
    want = reference_preprocess(narrow, 40, 32)
    check((got - want).abs().max().item() <= 1e-6,
          f"16-bit grey PNG = its (v + 128) // 257 image: max |diff| "
          f"{(got - want).abs().max().item():.2g}")


def test_densenet(tmp, images, held_out):
    ckpt = os.path.join(tmp, "model.pth.tar")
    original = make_chexnet_checkpoint.write(ckpt, seed=21)
    out = os.path.join(tmp, "int8.pt")
    r = run_quantize("--checkpoint", ckpt, "--calibrate", images, "--n", "8", "--out", out)
    print("      " + r.stdout.strip().replace("\n", "\n      "))
    check(r.returncode == 0 and os.path.isfile(out), f"quantized: exit {r.returncode} "
          f"{r.stderr.strip()[-600:]}")
    if r.returncode != 0:
        return
    meta = read_meta(out)
    want_engine = "onednn" if "onednn" in torch.backends.quantized.supported_engines else "fbgemm"
    q = meta.get("quantization", {})
    check(meta.get("precision") == "int8-static" and q.get("engine") == want_engine
          and q.get("calibration_images") == 8,
          f"metadata: precision {meta.get('precision')}, engine {q.get('engine')}, "
          f"{q.get('calibration_images')} calibration images")
    check(meta["contract"] == "hpcscreen.image/1" and meta["labels"] == chexnet.CHEXNET_LABELS
          and meta["rank_by"] == "Pneumonia" and meta["preprocess"]["crop_size"] == 224
          and meta["output"] == {"values": "probabilities", "activation": "sigmoid"},
          "the FP32 contract's fields are kept")
    torch.backends.quantized.engine = q["engine"]  # before loading, as a runner must
    module = torch.jit.load(out, map_location="cpu")
    for name, folder in (("calibration", images), ("held-out", held_out)):
        paths = chexnet.list_images(folder)
        x = torch.stack([reference_preprocess(p, 256, 224) for p in paths])
        with torch.no_grad():
            p8 = torch.cat([module(x[i:i + 4]) for i in range(0, len(x), 4)])
            p32 = torch.cat([original(x[i:i + 4]) for i in range(0, len(x), 4)])
        d = (p8 - p32).abs()
        print(f"      {name} ({len(x)} images): |p_int8 - p_fp32| max {d.max().item():.4f}, "
              f"mean {d.mean().item():.4f}; FP32 outputs {p32.min().item():.3f}.."
              f"{p32.max().item():.3f}, sd across images {p32.std(0).mean().item():.3f}")
        check(p8.dtype == torch.float32 and list(p8.shape) == [len(x), 14]
              and bool(((p8 >= 0) & (p8 <= 1)).all()), f"{name}: float32 [B, 14] in [0, 1]")
        check(d.max().item() < MAX_DELTA_P, f"{name}: max |dp| {d.max().item():.4f} < "
              f"{MAX_DELTA_P}")
    with torch.no_grad():
        shapes = [list(module(torch.randn(b, 3, 224, 224)).shape) for b in (1, 3)]
    check(shapes == [[1, 14], [3, 14]], f"batch size not baked in: {shapes}")


def test_small_and_refusals(tmp, images):
    out = os.path.join(tmp, "tiny-int8.pt")
    r = run_quantize("--seed", "3", "--small", "--ten-crops", "--calibrate", images, "--n", "3",
                     "--labels", "a,b", "--out", out)
    meta = read_meta(out) if r.returncode == 0 else {}
    check(r.returncode == 0 and meta["quantization"]["calibration_rows"] == 30
          and meta["preprocess"]["crop"] == "ten" and meta["labels"] == ["a", "b"],
          f"--small --ten-crops: 3 images, 30 rows {r.stderr.strip()[-300:]}")
    listing = os.path.join(tmp, "list.txt")
    with open(listing, "w") as f:
        f.write("# calibration\n" + "".join(f"{os.path.join('images', n)}\n"
                                              for n in sorted(os.listdir(images))[:2]))
    r = run_quantize("--seed", "3", "--small", "--calibrate", listing, "--out",
                     os.path.join(tmp, "listed.pt"))
    check(r.returncode == 0 and read_meta(os.path.join(tmp, "listed.pt"))["quantization"]
          ["calibration_images"] == 2, f"--calibrate a list file {r.stderr.strip()[-200:]}")

    # A folder `pack images` takes, a non-image in it (a pack reject there): skipped, saying why.
    mixed = os.path.join(tmp, "mixed")
    shutil.copytree(images, mixed)
    with open(os.path.join(mixed, "000-notes.png"), "w") as f:
        f.write("hello\n")
    r = run_quantize("--seed", "3", "--small", "--calibrate", mixed, "--n", "3", "--out",
                     os.path.join(tmp, "mixed.pt"))
    check(r.returncode == 0 and "skipped" in r.stderr and "000-notes.png" in r.stderr
          and read_meta(os.path.join(tmp, "mixed.pt"))["quantization"]["calibration_images"] == 3,
          f"a non-image among the calibration images is skipped: {r.stderr.strip()[-200:]}")

    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    wide = os.path.join(tmp, "wide")
    os.makedirs(wide)
    write_png16_rgb(os.path.join(wide, "x.png"), np.full((40, 40, 3), 4000, dtype=np.uint16))
    broken = os.path.join(tmp, "broken")
    os.makedirs(broken)
    with open(os.path.join(broken, "x.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really")
    cases = [("empty", [empty], "no .png"), ("too_few", [images, "--n", "9"], "has 8 usable images"),
             ("wide", [wide], "16-bit PNG with colour"), ("broken", [broken], "x.png"),
             ("exists", [images, "--n", "1"], "exists")]
    with open(os.path.join(tmp, "exists.pt"), "w") as f:
        f.write("keep\n")
    for name, options, words in cases:
        target = os.path.join(tmp, f"{name}.pt")
        r = run_quantize("--seed", "3", "--small", "--calibrate", *options, "--out", target)
        kept = name != "exists" or open(target).read() == "keep\n"
        check(r.returncode == 1 and "Traceback" not in r.stderr and words in r.stderr and kept
              and (name == "exists" or not os.path.exists(target)),
              f"{name} refused: {r.stderr.strip()[-120:]}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        images = os.path.join(tmp, "images")
        held_out = os.path.join(tmp, "held_out")
        paths = make_images(images, 8, seed=1)
        make_images(held_out, 4, seed=2, size=(350, 330))
        test_preprocess(paths)
        test_16bit(tmp)
        test_densenet(tmp, images, held_out)
        test_small_and_refusals(tmp, images)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
