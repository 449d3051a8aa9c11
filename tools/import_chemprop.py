#!/usr/bin/python3
"""Converts a Chemprop model file (v2 .pt / .ckpt, v1 .pt) into a TorchScript model for
`hpcscreen screen`, with its hpcscreen.json inside. Chemprop need not be installed; the file is
read without running its pickled code (hpcscreen_py/chemprop_file.py).

  /usr/bin/python3 tools/import_chemprop.py MODEL.pt --out M.pt [--tasks a,b] [--check smiles.csv]

The model takes the `chemprop` featurizer's tensors (data_schemas/chemprop_features.md):
forward(V [N, d_v] f32, E [E, 14] f32, edge_index [2, E] i64, rev_edge_index [E] i64,
batch [N] i64, num_graphs) -> [B, T] f32.

Chemprop does not store `chemprop predict`'s --keep-h / --add-h or the atom featurizer in v2
files: give the ones the model was trained with (the featurizer is recognised from its width).
"""
import argparse
import csv
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from hpcscreen_py import chemprop_file, chemprop_model, chemprop_ref, gnn  # noqa: E402

CHECK_TOLERANCE = 1e-6
CHECK_BATCH = 64
# `hpcscreen screen` names score columns MODEL:TASK beside an ensemble's own mean/sd/lcb/ucb
RESERVED_MODEL_NAMES = ("mean", "sd", "lcb", "ucb")


class Refusal(ValueError):
    """A refusal with a message for the user (exit 1, no traceback)."""


def check_model_name(name, what, hint=""):
    """The rules `hpcscreen screen` applies to a model's name (src/screen/screen.cpp), and no
    empty name, no surrounding whitespace or control characters."""
    if not name:
        raise Refusal(f"{what} is empty{hint}")
    if ":" in name or name in RESERVED_MODEL_NAMES:
        raise Refusal(f"{what} {name!r}: a model's name may not contain ':' or be mean, sd, "
                      f"lcb or ucb (they name hpcscreen's score columns){hint}")
    if name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise Refusal(f"{what} {name!r}: a model's name may not have leading or trailing "
                      f"whitespace or control characters{hint}")


def check_task_names(names, what):
    """Task (column) names: unique, non-empty, no leading/trailing whitespace, no control
    characters (`hpcscreen screen` refuses a model whose tasks break these)."""
    seen = {}
    for i, name in enumerate(names):
        if not name:
            raise Refusal(f"{what}: name {i + 1} of {len(names)} is empty ({names!r})")
        if name != name.strip():
            raise Refusal(f"{what}: {name!r} has leading or trailing whitespace")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise Refusal(f"{what}: {name!r} contains a control character")
        if name in seen:
            raise Refusal(f"{what}: {name!r} appears twice (names {seen[name] + 1} and "
                          f"{i + 1}); every output column needs its own name")
        seen[name] = i


def build_metadata(desc, args):
    if args.tasks is not None:
        given = args.tasks.split(",")
        check_task_names(given, f"--tasks {args.tasks!r}")
    else:
        given = None
        if desc.get("output_columns"):
            check_task_names(desc["output_columns"], "the task names the file stores")
    tasks = chemprop_file.column_names(desc, given)
    check_task_names(tasks, "the output columns " + ", ".join(tasks))
    rank_by = args.rank_by if args.rank_by is not None else tasks[0]
    if rank_by not in tasks:
        raise Refusal(f"--rank-by {rank_by!r} is not one of the columns {tasks}")
    featurizer = {
        "name": "chemprop",
        "version": 1,
        "atom_featurizer": desc["atom_featurizer"],
        "bond_featurizer": desc["bond_featurizer"],
        "keep_h": desc["molecule"]["keep_h"],
        "add_h": desc["molecule"]["add_h"],
    }
    if args.name is not None:
        name = args.name
        check_model_name(name, "--name")
    else:
        name = os.path.splitext(os.path.basename(args.out))[0]
        check_model_name(name, "the default model name (the --out file's stem)",
                         "; give another with --name")
    return gnn.metadata(tasks, rank_by=rank_by, higher_is_better=not args.lower_is_better,
                        name=name, featurizer=featurizer, chemprop=desc)


def apply_options(desc, args):
    """--atom-featurizer / --keep-h / --add-h: what the file cannot say; refused where they
    contradict what the file records (v1's explicit_h / adding_h)."""
    if args.atom_featurizer and args.atom_featurizer != desc["atom_featurizer"]:
        width = chemprop_ref.ATOM_FEATURIZERS[args.atom_featurizer].width
        raise Refusal(f"--atom-featurizer {args.atom_featurizer} gives {width} atom "
                      f"features; the model takes d_v = {desc['message_passing']['d_v']} "
                      f"({desc['atom_featurizer']})")
    molecule = desc["molecule"]
    recorded = {"keep_h": "explicit_h", "add_h": "adding_h"}
    for key, given in (("keep_h", args.keep_h), ("add_h", args.add_h)):
        if not given:
            continue
        option = "--" + key.replace("_", "-")
        source = molecule["source"][key]
        if desc["format"] == "chemprop-v1" and source.startswith("the file's"):
            if not molecule[key]:
                trained = ("without explicit H atoms" if key == "keep_h"
                           else "without added H atoms")
                raise Refusal(f"{option} contradicts the file: its args record "
                              f"{recorded[key]} = False (the model was trained {trained}); "
                              f"leave out {option}")
            molecule["source"][key] = f"{source}; {option} agrees"
        else:
            molecule[key] = True
            molecule["source"][key] = f"import_chemprop.py {option}"


def read_smiles(path):
    """The first column of a CSV with a header (Chemprop's data files), or one SMILES a line."""
    with open(path, newline="") as f:
        first = f.readline()
        f.seek(0)
        if "," in first:
            rows = list(csv.reader(f))[1:]
            return [r[0] for r in rows if r]
        return [line.split()[0] for line in f if line.strip()]


class CheckResult:
    """check()'s verdict: `worst` relative difference over the finite outputs, `n_nonfinite`
    molecules with a NaN or inf in the model's or the reference's outputs; `ok` only when
    there is none of those and worst <= CHECK_TOLERANCE."""

    def __init__(self):
        self.worst = 0.0
        self.n_ok = 0
        self.n_rejected = 0
        self.n_nonfinite = 0
        self.nonfinite_model = 0
        self.nonfinite_reference = 0

    @property
    def ok(self):
        return self.n_nonfinite == 0 and self.worst <= CHECK_TOLERANCE

    def __iter__(self):  # worst, n_ok, n_rejected, as before
        return iter((self.worst, self.n_ok, self.n_rejected))

    def summary(self):
        text = (f"check: {self.n_ok} molecules, {self.n_rejected} rejected, "
                f"max |model - reference| / max(1, |reference|) = {self.worst:.3g} "
                f"(tolerance {CHECK_TOLERANCE:g})")
        if self.n_nonfinite:
            text += (f"; {self.n_nonfinite} molecules gave non-finite outputs (NaN or inf: "
                     f"{self.nonfinite_model} from the model, {self.nonfinite_reference} from "
                     "the reference)")
        return text


def check(scripted, reference, smiles):
    """Largest |scripted - reference| / max(1, |reference|) over the SMILES, batch by batch; a
    NaN or inf on either side fails the check (it never compares as larger than anything)."""
    result = CheckResult()
    for start in range(0, len(smiles), CHECK_BATCH):
        graphs = []
        for smi in smiles[start:start + CHECK_BATCH]:
            try:
                graphs.append(reference.featurize(smi))
            except chemprop_ref.Rejected:
                result.n_rejected += 1
        if not graphs:
            continue
        inputs = chemprop_ref.batch_graphs(graphs)
        with torch.no_grad():
            expected = reference.columns(reference.native(*inputs))
            found = scripted(*inputs)
        if found.shape != expected.shape or found.dtype != torch.float32:
            raise AssertionError(f"scripted model gave {tuple(found.shape)} {found.dtype}, "
                                 f"expected {tuple(expected.shape)} float32")
        bad_model = ~torch.isfinite(found).all(dim=1)
        bad_reference = ~torch.isfinite(expected).all(dim=1)
        bad = bad_model | bad_reference
        result.nonfinite_model += int(bad_model.sum())
        result.nonfinite_reference += int(bad_reference.sum())
        result.n_nonfinite += int(bad.sum())
        good = ~bad
        if bool(good.any()):
            # float32 keeps ~7 digits: compare relative to each value's size once beyond 1
            error = (found[good] - expected[good]).abs() / expected[good].abs().clamp(min=1.0)
            result.worst = max(result.worst, float(error.max()))
        result.n_ok += len(graphs)
    return result


def check_out_path(out):
    """--out must be a new file in an existing folder: never overwrite (the input, another
    model, anything)."""
    if os.path.isdir(out):
        raise Refusal(f"--out {out} is a directory; give the path of a new model file")
    if os.path.lexists(out):
        raise Refusal(f"--out {out} exists; refusing to overwrite it (remove it or choose "
                      "another path)")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise Refusal(f"--out {out}: the folder {folder} does not exist")
    if not os.path.basename(out):
        raise Refusal(f"--out {out!r} names no file")


def publish(tmp, out):
    """Moves the finished temporary file to `out`, never replacing a file that appeared there
    meanwhile."""
    try:
        os.link(tmp, out)  # fails if `out` exists
    except FileExistsError:
        raise Refusal(f"--out {out} appeared while importing; refusing to overwrite it")
    except OSError:
        if os.path.lexists(out):
            raise Refusal(f"--out {out} appeared while importing; refusing to overwrite it")
        os.replace(tmp, out)  # a file system without hard links
        return
    os.unlink(tmp)


def read_model(args):
    """The stages that read the file, each named in the message of anything they raise that is
    not already a message for the user (a malformed file reaching code that does not expect
    it, or a bug here: either way the file and the stage are named, not hidden)."""
    stage = "reading the file"
    try:
        data = chemprop_file.load(args.model)
        stage = "reading the hyper-parameters and state_dict"
        desc = chemprop_file.describe(data, args.model)
        if desc["refused"]:
            raise Refusal("hpcscreen cannot run this model: " + "; ".join(desc["refused"]))
        stage = "applying the options"
        apply_options(desc, args)
        meta = build_metadata(desc, args)
        stage = "building the model from its weights"
        module = chemprop_model.ChempropMPNN(desc, chemprop_file.weights(data, desc)).eval()
        return desc, meta, module
    except ValueError:
        raise
    except (KeyError, TypeError, RuntimeError, IndexError, AttributeError) as e:
        raise Refusal(f"unexpected {type(e).__name__} while {stage}: {e} (a malformed "
                      "file, or a bug in import_chemprop.py)") from e


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="Chemprop model file")
    p.add_argument("--out", required=True,
                   help="TorchScript model to write (a new file: an existing one is refused)")
    p.add_argument("--name", help="model name in hpcscreen.json (default: the --out file's stem)")
    p.add_argument("--tasks", help="comma-separated task names when the file stores none "
                   "(Chemprop then says pred_0, pred_1, ...)")
    p.add_argument("--rank-by", help="column hits are ranked by (default: the first)")
    p.add_argument("--lower-is-better", action="store_true")
    p.add_argument("--atom-featurizer", choices=sorted(chemprop_ref.ATOM_FEATURIZERS))
    p.add_argument("--keep-h", action="store_true", help="as chemprop predict --keep-h")
    p.add_argument("--add-h", action="store_true", help="as chemprop predict --add-h")
    p.add_argument("--check", metavar="SMILES_FILE",
                   help="compare the written model with the Python reference on these SMILES")
    args = p.parse_args()

    tmp = None
    try:
        check_out_path(args.out)
        smiles = None
        if args.check:
            try:
                smiles = read_smiles(args.check)
            except (OSError, UnicodeDecodeError, csv.Error) as e:
                raise Refusal(f"--check {args.check}: cannot read it ({e})") from e
        desc, meta, module = read_model(args)
        scripted = torch.jit.script(module)
        folder = os.path.dirname(os.path.abspath(args.out))
        try:
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(args.out) + ".",
                                       suffix=".tmp", dir=folder)
            os.close(fd)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # as a plainly created file, not mkstemp's 0600
            torch.jit.save(scripted, tmp,
                           _extra_files={"hpcscreen.json": json.dumps(meta, indent=2)})
        except (OSError, RuntimeError) as e:
            raise Refusal(f"--out {args.out}: cannot write in {folder} ({e})") from e
        if smiles is not None:
            reference = chemprop_ref.Reference(args.model)
            reference.desc["molecule"] = desc["molecule"]
            result = check(torch.jit.load(tmp), reference, smiles)
            print(result.summary())
            if not result.ok:
                print(f"error: {args.model}: the check failed; nothing written to {args.out}",
                      file=sys.stderr)
                return 1
        try:
            publish(tmp, args.out)
        except OSError as e:
            raise Refusal(f"--out {args.out}: cannot write it ({e})") from e
        tmp = None
    except ValueError as e:
        print(f"error: {args.model}: {e}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {args.out}: {desc['predictor']['kind']}, {len(meta['tasks'])} columns "
          f"({', '.join(meta['tasks'][:6])}{', ...' if len(meta['tasks']) > 6 else ''}), "
          f"atom featurizer {desc['atom_featurizer']}, model name {meta['name']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
