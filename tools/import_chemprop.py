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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from hpcscreen_py import chemprop_file, chemprop_model, chemprop_ref, gnn  # noqa: E402

CHECK_TOLERANCE = 1e-6
CHECK_BATCH = 64


def build_metadata(desc, args):
    tasks = chemprop_file.column_names(desc, args.tasks.split(",") if args.tasks else None)
    rank_by = args.rank_by or tasks[0]
    if rank_by not in tasks:
        raise ValueError(f"--rank-by {rank_by!r} is not one of the columns {tasks}")
    featurizer = {
        "name": "chemprop",
        "version": 1,
        "atom_featurizer": desc["atom_featurizer"],
        "bond_featurizer": desc["bond_featurizer"],
        "keep_h": desc["molecule"]["keep_h"],
        "add_h": desc["molecule"]["add_h"],
    }
    name = args.name or os.path.splitext(os.path.basename(args.model))[0]
    return gnn.metadata(tasks, rank_by=rank_by, higher_is_better=not args.lower_is_better,
                        name=name, featurizer=featurizer, chemprop=desc)


def apply_options(desc, args):
    """--atom-featurizer / --keep-h / --add-h: what the file cannot say."""
    if args.atom_featurizer and args.atom_featurizer != desc["atom_featurizer"]:
        width = chemprop_ref.ATOM_FEATURIZERS[args.atom_featurizer].width
        raise ValueError(f"--atom-featurizer {args.atom_featurizer} gives {width} atom features; "
                         f"the model takes d_v = {desc['message_passing']['d_v']} "
                         f"({desc['atom_featurizer']})")
    if args.keep_h or args.add_h:
        desc["molecule"] = {"keep_h": args.keep_h or desc["molecule"]["keep_h"],
                            "add_h": args.add_h or desc["molecule"]["add_h"],
                            "source": "import_chemprop.py options"}


def read_smiles(path):
    """The first column of a CSV with a header (Chemprop's data files), or one SMILES a line."""
    with open(path, newline="") as f:
        first = f.readline()
        f.seek(0)
        if "," in first:
            rows = list(csv.reader(f))[1:]
            return [r[0] for r in rows if r]
        return [line.split()[0] for line in f if line.strip()]


def check(scripted, reference, smiles):
    """Largest |scripted - reference| / max(1, |reference|) over the SMILES, batch by batch."""
    worst = 0.0
    n_ok = 0
    n_rejected = 0
    for start in range(0, len(smiles), CHECK_BATCH):
        graphs = []
        for smi in smiles[start:start + CHECK_BATCH]:
            try:
                graphs.append(reference.featurize(smi))
            except chemprop_ref.Rejected:
                n_rejected += 1
        if not graphs:
            continue
        inputs = chemprop_ref.batch_graphs(graphs)
        with torch.no_grad():
            expected = reference.columns(reference.native(*inputs))
            found = scripted(*inputs)
        if found.shape != expected.shape or found.dtype != torch.float32:
            raise AssertionError(f"scripted model gave {tuple(found.shape)} {found.dtype}, "
                                 f"expected {tuple(expected.shape)} float32")
        # float32 keeps ~7 digits: compare relative to each value's size once beyond 1
        error = (found - expected).abs() / expected.abs().clamp(min=1.0)
        worst = max(worst, error.max().item())
        n_ok += len(graphs)
    return worst, n_ok, n_rejected


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="Chemprop model file")
    p.add_argument("--out", required=True, help="TorchScript model to write")
    p.add_argument("--name", help="model name in hpcscreen.json (default: the file's stem)")
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

    try:
        data = chemprop_file.load(args.model)
        desc = chemprop_file.describe(data, args.model)
        if desc["refused"]:
            raise ValueError("hpcscreen cannot run this model: " + "; ".join(desc["refused"]))
        apply_options(desc, args)
        meta = build_metadata(desc, args)
        module = chemprop_model.ChempropMPNN(desc, chemprop_file.weights(data, desc)).eval()
    except (ValueError, KeyError) as e:
        print(f"error: {args.model}: {e}", file=sys.stderr)
        return 1
    scripted = torch.jit.script(module)
    torch.jit.save(scripted, args.out,
                   _extra_files={"hpcscreen.json": json.dumps(meta, indent=2)})
    print(f"wrote {args.out}: {desc['predictor']['kind']}, {len(meta['tasks'])} columns "
          f"({', '.join(meta['tasks'][:6])}{', ...' if len(meta['tasks']) > 6 else ''}), "
          f"atom featurizer {desc['atom_featurizer']}")

    if args.check:
        reference = chemprop_ref.Reference(args.model)
        reference.desc["molecule"] = desc["molecule"]
        loaded = torch.jit.load(args.out)
        worst, n_ok, n_rejected = check(loaded, reference, read_smiles(args.check))
        print(f"check: {n_ok} molecules, {n_rejected} rejected, "
              f"max |model - reference| / max(1, |reference|) = {worst:.3g} "
              f"(tolerance {CHECK_TOLERANCE:g})")
        if not worst <= CHECK_TOLERANCE:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
