"""CheXNet-class image models for hpcscreen's image workload (contract `hpcscreen.image/1`):
a torchvision DenseNet-121 whose classifier is Sequential(Linear(1024, L), Sigmoid()) as CheXNet
(Rajpurkar et al. 2017) defines it, a tiny CNN with the same interface for tests, checkpoints in
the layout of the public CheXNet reimplementation (arnoweng/CheXNet), the hpcscreen.json
metadata, the preprocessing the metadata describes, and the export to TorchScript.

Shared by tools/export_chexnet.py (FP32) and tools/quantize_image_model.py (INT8).

A model takes float32 [B, 3, H, W] (preprocessed as metadata["preprocess"] says) and returns
float32 [B, L]: probabilities (output.values "probabilities") in the order of metadata["labels"].
With preprocess.crop "ten" the caller runs the ten crops of each image (torchvision TenCrop:
four corners and the centre, then the same of the horizontally flipped image) as ten rows and
averages the ten rows of probabilities, as arnoweng/CheXNet's test loop does.
"""
import collections
import hashlib
import json
import os
import re
import tempfile

import torch
import torchvision

from . import chemprop_file

CONTRACT = "hpcscreen.image/1"
# ChestX-ray14's findings in the order of CheXNet's output (arnoweng/CheXNet CLASS_NAMES)
CHEXNET_LABELS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                  "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                  "Pleural_Thickening", "Hernia"]
DEFAULT_RANK_BY = "Pneumonia"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DENSENET_NAME = "chexnet-densenet121"
TINY_NAME = "tiny-cnn"
CHECKPOINT_LAYOUT = "arnoweng/CheXNet"
# `hpcscreen screen` names score columns MODEL:TASK beside an ensemble's own mean/sd/lcb/ucb
RESERVED_MODEL_NAMES = ("mean", "sd", "lcb", "ucb")
CROPS = ("center", "ten", "none")
# PIL modes that convert("RGB") clips instead of scaling (wide samples)
WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class Refusal(ValueError):
    """A refusal with a message for the user (the tools exit 1 with it, no traceback)."""


# ---------------------------------------------------------------------------------------------
# labels, names, metadata

def check_labels(labels, what):
    """Output column names: at least one, unique, non-empty, no surrounding whitespace, no
    control characters, no ',' (the option that gives them is comma-separated)."""
    if not labels:
        raise Refusal(f"{what}: no labels")
    seen = {}
    for i, name in enumerate(labels):
        if not name:
            raise Refusal(f"{what}: label {i + 1} of {len(labels)} is empty")
        if name != name.strip():
            raise Refusal(f"{what}: {name!r} has leading or trailing whitespace")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise Refusal(f"{what}: {name!r} contains a control character")
        if name in seen:
            raise Refusal(f"{what}: {name!r} appears twice (labels {seen[name] + 1} and {i + 1})")
        seen[name] = i


def check_model_name(name, what):
    """The rules `hpcscreen screen` applies to a model's name, plus no empty name, surrounding
    whitespace or control characters."""
    if not name:
        raise Refusal(f"{what} is empty")
    if ":" in name or name in RESERVED_MODEL_NAMES:
        raise Refusal(f"{what} {name!r}: a model's name may not contain ':' or be mean, sd, lcb "
                      "or ucb (they name hpcscreen's score columns)")
    if name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise Refusal(f"{what} {name!r}: a model's name may not have leading or trailing "
                      "whitespace or control characters")


def labels_for_count(n):
    """The first n ChestX-ray14 labels in CheXNet's order; past 14, label_15, label_16, ..."""
    if n < 1:
        raise Refusal(f"--labels-count {n}: need at least one label")
    return CHEXNET_LABELS[:n] + [f"label_{i + 1}" for i in range(len(CHEXNET_LABELS), n)]


def preprocess_spec(small=False, crop="center"):
    """metadata["preprocess"]: torchvision Resize(resize) (shorter side, bilinear; on PIL images
    that is PIL's bilinear filter, which widens its support when shrinking), then the crop,
    then x / scale per channel of RGB, then (x - mean) / std."""
    if crop not in CROPS:
        raise Refusal(f"crop {crop!r}: one of {', '.join(CROPS)}")
    return {"resize": 40 if small else 256, "interpolation": "bilinear", "crop": crop,
            "crop_size": 32 if small else 224, "color": "rgb", "scale": 255.0,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def metadata(labels, name=DENSENET_NAME, rank_by=None, preprocess=None, higher_is_better=True,
             **extra):
    """hpcscreen.json of an image model; `extra` keys are added as they are."""
    check_labels(labels, "labels")
    check_model_name(name, "the model name")
    if rank_by is None:
        rank_by = DEFAULT_RANK_BY if DEFAULT_RANK_BY in labels else labels[0]
    if rank_by not in labels:
        raise Refusal(f"--rank-by {rank_by!r} is not one of the labels {labels}")
    meta = {"contract": CONTRACT, "kind": "cnn", "name": name, "labels": list(labels),
            "rank_by": rank_by, "higher_is_better": bool(higher_is_better),
            "output": {"values": "probabilities", "activation": "sigmoid"},
            "preprocess": preprocess if preprocess is not None else preprocess_spec()}
    meta.update(extra)
    return meta


# ---------------------------------------------------------------------------------------------
# models

def densenet121(n_labels=len(CHEXNET_LABELS)):
    """torchvision's DenseNet-121 (random weights) with CheXNet's classifier."""
    model = torchvision.models.densenet121(weights=None)
    model.classifier = torch.nn.Sequential(torch.nn.Linear(model.classifier.in_features, n_labels),
                                           torch.nn.Sigmoid())
    return model


class TinyCNN(torch.nn.Module):
    """Two strided 3x3 convolutions, global average pooling, Linear(16, L), Sigmoid: the image
    contract's interface (float32 [B, 3, H, W], any H, W >= 1, -> [B, L]) at test speed."""

    def __init__(self, n_labels):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.classifier = torch.nn.Sequential(torch.nn.Linear(16, n_labels), torch.nn.Sigmoid())

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def random_model(n_labels, seed, small=False):
    """Deterministic random weights (given the torch version): the seed, then construction."""
    torch.manual_seed(seed)
    return (TinyCNN(n_labels) if small else densenet121(n_labels)).eval()


# ---------------------------------------------------------------------------------------------
# checkpoints in the arnoweng/CheXNet layout

# PyTorch < 0.4 torchvision named a dense layer's modules norm.1, relu.1, conv.1, norm.2, relu.2,
# conv.2; today's torchvision names them norm1, relu1, conv1, norm2, relu2, conv2.
_OLD_DENSE_LAYER = re.compile(
    r"^(features\.denseblock\d+\.denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def rename_key(key):
    """A checkpoint key (module.densenet121.features...norm.1.weight) as today's torchvision
    densenet121 names it (features...norm1.weight)."""
    if key.startswith("module."):
        key = key[len("module."):]
    if key.startswith("densenet121."):
        key = key[len("densenet121."):]
    return _OLD_DENSE_LAYER.sub(r"\1\2.", key)


def _load_restricted(path):
    # torch.load(path, map_location="cpu") unpickles with the standard pickle, which runs any
    # code the file names; torch 1.13's weights_only=True reader refuses floats (BINFLOAT), which
    # every real checkpoint has (best_loss, the optimizer's lr). This reads both of torch's
    # formats with hpcscreen's restricted unpickler: tensors, containers and numbers come back,
    # any other class becomes an inert record and nothing named in the file is imported or run.
    data = chemprop_file.restricted_torch_load(path)
    chemprop_file.check_archive(path, data)  # a damaged zip record is refused, not read past
    return data


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path):
    """The checkpoint's state_dict (its own key spelling), every value a tensor on the CPU."""
    if not os.path.isfile(path):
        raise Refusal(f"--checkpoint {path}: no such file")
    try:
        data = _load_restricted(path)
    except Exception as e:  # a damaged or foreign file: any error of the unpickler or torch
        raise Refusal(f"--checkpoint {path}: not a readable torch checkpoint "
                      f"({type(e).__name__}: {e})") from e
    if not isinstance(data, dict) or chemprop_file.class_name(data):
        what = chemprop_file.class_name(data) or type(data).__name__
        raise Refusal(f"--checkpoint {path}: expected a dict with a 'state_dict' (the "
                      f"{CHECKPOINT_LAYOUT} layout), found {what}")
    if "state_dict" not in data:
        keys = ", ".join(repr(k) for k in list(data)[:10])
        raise Refusal(f"--checkpoint {path}: no 'state_dict' in it (its keys: {keys})")
    sd = data["state_dict"]
    if not isinstance(sd, dict) or chemprop_file.class_name(sd):
        what = chemprop_file.class_name(sd) or type(sd).__name__
        raise Refusal(f"--checkpoint {path}: 'state_dict' is a {what}, not a dict of tensors")
    for key, value in sd.items():
        if not isinstance(key, str):
            raise Refusal(f"--checkpoint {path}: state_dict has a key {key!r} that is not a "
                          "string")
        if not isinstance(value, torch.Tensor):
            what = chemprop_file.class_name(value) or type(value).__name__
            raise Refusal(f"--checkpoint {path}: state_dict[{key!r}] is a {what}, not a "
                          "tensor")
    return collections.OrderedDict(sd)


def renamed_state_dict(sd):
    """(today's names -> tensors, today's name -> the checkpoint's key); refuses two keys that
    become one name."""
    out, source = collections.OrderedDict(), {}
    for key, value in sd.items():
        new = rename_key(key)
        if new in out:
            raise Refusal(f"the checkpoint keys {source[new]!r} and {key!r} both become {new!r}")
        out[new] = value
        source[new] = key
    return out, source


def _spelled(name, source):
    return name if source.get(name, name) == name else f"{source[name]} (-> {name})"


def _listing(names, limit=8):
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_weights(model, sd, where="the checkpoint"):
    """Loads a checkpoint state_dict (any spelling rename_key knows) into `model` with
    strict=True, after naming every missing, unexpected, misshapen or non-finite tensor."""
    sd, source = renamed_state_dict(sd)
    expected = model.state_dict()
    # BatchNorm's num_batches_tracked (PyTorch >= 0.4.1) is absent from older checkpoints;
    # BatchNorm's loader sets it to 0 (it is not used in eval mode).
    missing = [k for k in expected if k not in sd and not k.endswith(".num_batches_tracked")]
    unexpected = [_spelled(k, source) for k in sd if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing from {where}: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected in {where} (not in torchvision's densenet121 with "
                        f"CheXNet's classifier): {_listing(unexpected)}")
    weight = sd.get("classifier.0.weight")
    if (weight is not None and weight.dim() == 2
            and weight.shape[0] != expected["classifier.0.weight"].shape[0]):
        problems.append(f"{where} has {weight.shape[0]} outputs "
                        f"({_spelled('classifier.0.weight', source)} {list(weight.shape)}) but "
                        f"{expected['classifier.0.weight'].shape[0]} labels were asked for "
                        "(--labels / --labels-count)")
    for k, value in sd.items():
        if k not in expected:
            continue
        want = expected[k]
        if value.shape != want.shape:
            problems.append(f"{_spelled(k, source)}: shape {list(value.shape)} in {where}, "
                            f"{list(want.shape)} expected")
        elif want.is_floating_point() and not value.is_floating_point():
            problems.append(f"{_spelled(k, source)}: {value.dtype} in {where}, a floating-"
                            "point tensor expected")
        elif value.is_floating_point() and not bool(torch.isfinite(value).all()):
            problems.append(f"{_spelled(k, source)}: non-finite values (inf or NaN)")
    if problems:
        raise Refusal("the weights do not fit the model: " + "; ".join(problems[:12])
                      + (f"; ... ({len(problems) - 12} more)" if len(problems) > 12 else ""))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise Refusal(f"load_state_dict(strict=True) refused {where}: {e}") from e
    return model.eval()


def model_from_checkpoint(path, n_labels):
    """(DenseNet-121 with the checkpoint's weights, eval mode; provenance for the metadata)."""
    sd = read_checkpoint(path)
    model = load_weights(densenet121(n_labels), sd, f"--checkpoint {os.path.basename(path)}")
    return model, {"source": "checkpoint", "layout": CHECKPOINT_LAYOUT,
                   "file": os.path.basename(path), "sha256": _sha256(path)}


# ---------------------------------------------------------------------------------------------
# command-line options shared by the tools

def add_model_arguments(p):
    weights = p.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", metavar="MODEL.pth.tar",
                         help=f"weights in the {CHECKPOINT_LAYOUT} layout (torch.save of "
                         "{'state_dict': DataParallel(DenseNet121).state_dict(), ...}); read "
                         "without running pickled code")
    weights.add_argument("--seed", type=int,
                         help="random weights from this seed (tests; no pretrained weights)")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="comma-separated output labels (default: the 14 "
                        "ChestX-ray14 findings in CheXNet's order)")
    labels.add_argument("--labels-count", type=int, metavar="N",
                        help="the first N ChestX-ray14 labels (label_15, ... past 14)")
    p.add_argument("--rank-by", help=f"label hits are ranked by (default {DEFAULT_RANK_BY} if "
                   "it is a label, else the first)")
    p.add_argument("--name", help=f"model name (default {DENSENET_NAME}, {TINY_NAME} with "
                   "--small)")
    p.add_argument("--ten-crops", action="store_true",
                   help="preprocess crop 'ten' (TenCrop, probabilities averaged) not 'center'")
    p.add_argument("--small", action="store_true",
                   help=f"a tiny CNN ({TINY_NAME}: resize 40, crop 32) for fast tests")
    p.add_argument("--out", required=True, help="TorchScript model to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def labels_from_args(args):
    if args.labels is not None:
        labels = args.labels.split(",")
        check_labels(labels, f"--labels {args.labels!r}")
        return labels
    if args.labels_count is not None:
        return labels_for_count(args.labels_count)
    return list(CHEXNET_LABELS)


def model_from_args(args):
    """(eval-mode torch.nn.Module, hpcscreen.json dict) from add_model_arguments' options."""
    labels = labels_from_args(args)
    name = args.name if args.name is not None else (TINY_NAME if args.small else DENSENET_NAME)
    check_model_name(name, "--name")
    pre = preprocess_spec(small=args.small, crop="ten" if args.ten_crops else "center")
    if args.checkpoint is not None:
        if args.small:
            raise Refusal("--small builds the tiny test CNN; a --checkpoint holds DenseNet-121 "
                          "weights (leave out --small)")
        meta = metadata(labels, name, args.rank_by, pre)  # label checks before the slow part
        model, weights = model_from_checkpoint(args.checkpoint, len(labels))
    else:
        meta = metadata(labels, name, args.rank_by, pre)
        model = random_model(len(labels), args.seed, small=args.small)
        weights = {"source": "random", "seed": args.seed}
    meta["architecture"] = "tiny-cnn" if args.small else "torchvision.densenet121"
    meta["weights"] = weights
    return model, meta


# ---------------------------------------------------------------------------------------------
# writing the TorchScript model

def check_out_path(out, force=False):
    """--out must be a file path in an existing folder; an existing file only with --force."""
    if not os.path.basename(out):
        raise Refusal(f"--out {out!r} names no file")
    if os.path.isdir(out):
        raise Refusal(f"--out {out} is a directory; give the path of a model file")
    if os.path.lexists(out) and not force:
        raise Refusal(f"--out {out} exists; refusing to overwrite it (--force replaces it)")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise Refusal(f"--out {out}: the folder {folder} does not exist")


def to_torchscript(model, example):
    """(TorchScript module, "script" or "trace"): torch.jit.script if it compiles the model,
    else torch.jit.trace over `example` (a batch of several, so the batch size is not baked
    in)."""
    try:
        return torch.jit.script(model), "script"
    except Exception as e:  # TorchScript's frontend raises many types
        print(f"note: torch.jit.script failed ({type(e).__name__}: {str(e).splitlines()[0]}); "
              "tracing instead")
    with torch.no_grad():
        return torch.jit.trace(model, example, check_trace=False), "trace"


def example_batch(meta, batch=2, seed=0):
    """A fixed float32 [batch, 3, crop_size, crop_size] batch (normal noise, seeded)."""
    size = meta["preprocess"]["crop_size"]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g)


def save(module, out, meta, force=False):
    """Writes `module` with hpcscreen.json to a temporary file beside `out`, returns its path
    (publish() moves it to `out`)."""
    folder = os.path.dirname(os.path.abspath(out))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".", suffix=".tmp",
                                   dir=folder)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a plainly created file, not mkstemp's 0600
    except OSError as e:
        raise Refusal(f"--out {out}: cannot write in {folder} ({e})") from e
    try:
        torch.jit.save(module, tmp, _extra_files={"hpcscreen.json": json.dumps(meta, indent=2)})
    except (OSError, RuntimeError) as e:
        os.unlink(tmp)
        raise Refusal(f"--out {out}: cannot write it ({e})") from e
    return tmp


def read_metadata(path):
    files = {"hpcscreen.json": ""}
    module = torch.jit.load(path, map_location="cpu", _extra_files=files)
    return module, json.loads(files["hpcscreen.json"])


def verify_saved(path, meta, reference, inputs, tolerance):
    """Reloads the written file: its metadata must read back equal, and on each input batch
    it must give float32 [B, L], finite, in [0, 1] for probabilities, within `tolerance` of
    `reference` (the in-memory model). Returns the largest |difference|."""
    module, read = read_metadata(path)
    if read != meta:
        raise Refusal(f"{path}: the metadata read back differs from what was written")
    n_labels = len(meta["labels"])
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            y = module(x)
            want = reference(x)
            if not isinstance(y, torch.Tensor) or y.dtype != torch.float32 \
                    or list(y.shape) != [x.shape[0], n_labels]:
                raise Refusal(f"the saved model returned {getattr(y, 'dtype', type(y))} "
                              f"{list(getattr(y, 'shape', []))} for input {list(x.shape)}; "
                              f"float32 [{x.shape[0]}, {n_labels}] expected")
            if not bool(torch.isfinite(y).all()):
                raise Refusal(f"the saved model returned non-finite values for {list(x.shape)}")
            if meta["output"]["values"] == "probabilities" and not bool(
                    ((y >= 0) & (y <= 1)).all()):
                raise Refusal("the saved model returned probabilities outside [0, 1]")
            worst = max(worst, (y - want).abs().max().item())
    if worst > tolerance:
        raise Refusal(f"the saved model differs from the model in memory by {worst:.3g} "
                      f"(> {tolerance:g})")
    return worst


def publish(tmp, out, force=False):
    """Moves the finished temporary file to `out`; without force never replaces a file that
    appeared there meanwhile."""
    if force:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)  # fails if `out` exists
    except FileExistsError:
        raise Refusal(f"--out {out} appeared meanwhile; refusing to overwrite it")
    except OSError:
        if os.path.lexists(out):
            raise Refusal(f"--out {out} appeared meanwhile; refusing to overwrite it")
        os.replace(tmp, out)  # a file system without hard links
        return
    os.unlink(tmp)


# ---------------------------------------------------------------------------------------------
# images, preprocessed as the metadata says

def image_transform(pre):
    """PIL image -> float32 [3, crop, crop] ([10, 3, crop, crop] for crop "ten";
    [3, H', W'] for "none") with torchvision transforms, as metadata["preprocess"] says."""
    from torchvision import transforms as T

    if pre.get("color") != "rgb":
        raise Refusal(f"preprocess color {pre.get('color')!r}: only 'rgb' is known")
    if pre.get("interpolation") != "bilinear":
        raise Refusal(f"preprocess interpolation {pre.get('interpolation')!r}: only 'bilinear' "
                      "is known")
    crop = pre.get("crop")
    if crop not in CROPS:
        raise Refusal(f"preprocess crop {crop!r}: one of {', '.join(CROPS)}")
    scale = float(pre["scale"])
    normalize = T.Normalize(pre["mean"], pre["std"])

    def tensor(img):  # as ToTensor for scale 255: uint8 values as float32, divided by scale
        return normalize(T.PILToTensor()(img).to(torch.float32) / scale)

    resize = T.Resize(int(pre["resize"]), interpolation=T.InterpolationMode.BILINEAR)
    size = int(pre["crop_size"])

    def run(img):
        img = resize(img)
        if crop == "center":
            return tensor(T.CenterCrop(size)(img))
        if crop == "ten":
            return torch.stack([tensor(c) for c in T.TenCrop(size)(img)])
        return tensor(img)

    return run


def _png_depth_and_colour(path):
    """(bit depth, colour type) from a PNG's IHDR, or None for another file."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24], head[25]
    return None


def open_image(path):
    """An 8-bit RGB PIL image of a PNG or JPEG file, as arnoweng/CheXNet reads one
    (Image.open(path).convert('RGB'): grey replicated, alpha dropped, not composited). A 16-bit
    grey PNG becomes 8 bits by the image workload's rule v8 = (v16 + 128) // 257 (PIL's own
    convert would clip it at 255); 16-bit PNGs with colour or alpha, which PIL reduces to their
    high bytes, are refused."""
    import numpy as np
    from PIL import Image

    try:
        png = _png_depth_and_colour(path)
        if png is not None and png[0] == 16 and png[1] != 0:
            raise Refusal(f"{path}: a 16-bit PNG with colour or alpha (colour type {png[1]}); "
                          "PIL keeps only the high bytes where the image workload rounds: "
                          "convert it to 8 bits")
        with Image.open(path) as img:
            if img.format not in ("PNG", "JPEG"):
                raise Refusal(f"{path}: a {img.format} file; PNG or JPEG expected")
            if png is not None and png[0] == 16:
                v16 = np.asarray(img, dtype=np.int64)
                if v16.ndim != 2 or v16.min() < 0 or v16.max() > 65535:
                    raise Refusal(f"{path}: PIL decoded this 16-bit grey PNG as mode "
                                  f"{img.mode} {v16.shape}, not 16-bit samples")
                img8 = Image.fromarray(((v16 + 128) // 257).astype(np.uint8), mode="L")
                return img8.convert("RGB")
            if img.mode in WIDE_MODES:
                raise Refusal(f"{path}: a mode {img.mode} image; 8-bit samples expected")
            return img.convert("RGB")
    except Refusal:
        raise
    except Exception as e:  # PIL raises many types for damaged files
        raise Refusal(f"{path}: cannot read it as an image ({type(e).__name__}: {e})") from e


def list_images(where):
    """Image paths from a folder (*.png, *.jpg, *.jpeg, sorted by name) or from a text file of
    paths, one a line (relative to the file's folder; blank lines and # comments skipped)."""
    if os.path.isdir(where):
        paths = [os.path.join(where, n) for n in sorted(os.listdir(where))
                 if n.lower().endswith(IMAGE_SUFFIXES)
                 and os.path.isfile(os.path.join(where, n))]
        if not paths:
            raise Refusal(f"{where}: no .png, .jpg or .jpeg files in it")
        return paths
    if not os.path.isfile(where):
        raise Refusal(f"{where}: no such folder or file")
    base = os.path.dirname(os.path.abspath(where))
    try:
        with open(where, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise Refusal(f"{where}: cannot read it as a list of image paths ({e})") from e
    paths = [os.path.join(base, line) for line in lines if line and not line.startswith("#")]
    if not paths:
        raise Refusal(f"{where}: lists no images")
    return paths
