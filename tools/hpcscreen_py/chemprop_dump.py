"""Prints the `chemprop` featurizer's tensors for each line of a SMILES file, one JSON object a
line, from the Python reference (chemprop_ref): what the C++ featurizer is checked against.

  /usr/bin/python3 -m hpcscreen_py.chemprop_dump SMILES_FILE [--atom-featurizer v2] [--keep-h]
      [--add-h]                                                     (from tools/)

Each input line (without its newline, as RDKit's SMILES parser takes it) gives
  {"ok": true, "smiles": ..., "n_atoms": N, "d_v": d_v, "V": [N * d_v floats, row-major],
   "E": [n_edges * 14 floats], "edge_index": [sources..., targets...], "rev_edge_index": [...]}
or {"ok": false, "smiles": ..., "reason": "invalid_smiles", "message": ...}.
Float features are float32 values written exactly (repr of the float32 widened to double).
"""
import argparse
import json
import sys

from hpcscreen_py import chemprop_ref


def dump_line(smiles, atom_featurizer, keep_h, add_h):
    try:
        graph = chemprop_ref.featurize(smiles, atom_featurizer, keep_h, add_h)
    except chemprop_ref.Rejected as e:
        return {"ok": False, "smiles": smiles, "reason": e.reason, "message": str(e)}
    return {
        "ok": True,
        "smiles": smiles,
        "n_atoms": int(graph.V.shape[0]),
        "d_v": int(graph.V.shape[1]),
        "V": [float(x) for x in graph.V.reshape(-1)],
        "E": [float(x) for x in graph.E.reshape(-1)],
        "edge_index": [int(x) for x in graph.edge_index.reshape(-1)],
        "rev_edge_index": [int(x) for x in graph.rev_edge_index],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("smiles_file")
    p.add_argument("--atom-featurizer", default="v2", choices=sorted(chemprop_ref.ATOM_FEATURIZERS))
    p.add_argument("--keep-h", action="store_true")
    p.add_argument("--add-h", action="store_true")
    args = p.parse_args(argv)
    with open(args.smiles_file, encoding="utf-8", newline="\n") as f:
        for line in f:
            smiles = line.rstrip("\n").rstrip("\r")
            record = dump_line(smiles, args.atom_featurizer, args.keep_h, args.add_h)
            sys.stdout.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
