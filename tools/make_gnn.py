#!/usr/bin/python3
"""Writes a GNN with seeded random weights in the hpcscreen.gnn/1 contract, for tests and
benchmarks. Trained reference models come from train_gnn.py.

  /usr/bin/python3 tools/make_gnn.py --out model.pt [--dense] [--seed 1] [--hidden 32]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from hpcscreen_py import gnn  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--dense", action="store_true", help="the dense-adjacency variant")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--tasks", default="activity", help="comma-separated task names")
    p.add_argument("--lower-is-better", action="store_true")
    p.add_argument("--featurizer-version", type=int, default=1, help="(tests of the contract check)")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    tasks = args.tasks.split(",")
    cls = gnn.GNNDense if args.dense else gnn.GNNSparse
    model = cls(args.hidden, args.layers, len(tasks))
    meta = gnn.metadata(tasks, higher_is_better=not args.lower_is_better,
                        name=f"random-gnn-seed{args.seed}")
    meta["featurizer"]["version"] = args.featurizer_version
    gnn.save(model, args.out, meta)


if __name__ == "__main__":
    main()
