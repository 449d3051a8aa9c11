#!/usr/bin/python3
"""Writes a small BERT-style model with seeded random weights in the hpcscreen.bert/1 contract
(traced over (input_ids, attention_mask), like a Hugging Face export), for tests and benchmarks.

  /usr/bin/python3 tools/make_bert.py --out bert.pt --level residue --labels C,E,H --max-length 64
  /usr/bin/python3 tools/make_bert.py --out protbert_shape.pt --hidden 1024 --layers 30 --heads 16 --max-length 1024
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from hpcscreen_py import protein  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--level", choices=["residue", "sequence"], default="residue")
    p.add_argument("--labels", default="C,E,H")
    p.add_argument("--max-length", type=int, default=64, help="positions, special tokens included")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    labels = a.labels.split(",")
    model = protein.TinyBert(len(protein.PROTBERT_TOKENS), a.max_length, a.hidden, a.layers, a.heads, len(labels),
                             a.level == "residue")
    meta = protein.metadata(labels, a.level, a.max_length, name=f"random-bert-seed{a.seed}")
    protein.save_traced(model, a.out, meta)


if __name__ == "__main__":
    main()
