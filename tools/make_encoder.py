#!/usr/bin/python3
"""Writes an encoder ("output_level": "embedding", data_schemas/bert_contract.md) from one of the
project's TorchScript BERTs: the same weights without the head, so forward(input_ids,
attention_mask) returns the last hidden states [B, L, hidden]. The tokenizer is copied from the
source model's hpcscreen.json.

  /usr/bin/python3 tools/make_encoder.py --source models/ss3_bert.pt --out ss3_encoder.pt

The source must be a TinyBert (tools/hpcscreen_py/protein.py: make_bert.py, train_protein.py);
the shapes of its weights give everything but the number of attention heads (--heads, 4 for
the shipped models). The rebuilt model is checked against the source on a probe batch before
anything is written, so a wrong --heads is caught. For a Hugging Face model, see the recipe in
data_schemas/bert_contract.md instead."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from hpcscreen_py import protein  # noqa: E402


def load_tinybert(path, heads):
    extra = {"hpcscreen.json": ""}
    traced = torch.jit.load(path, _extra_files=extra)
    meta = json.loads(extra["hpcscreen.json"])
    sd = traced.state_dict()
    vocab, hidden = sd["tok.weight"].shape
    max_length = sd["pos.weight"].shape[0]
    layers = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    conv = sd["conv.weight"].shape[2] if "conv.weight" in sd else 0
    n_labels = sd["head.weight"].shape[0]
    model = protein.TinyBert(vocab, max_length, hidden, layers, heads, n_labels,
                             meta.get("output_level") == "residue", conv=conv)
    model.load_state_dict(sd)
    model.eval()
    cfg = meta["tokenizer"]
    ids, mask = protein.batch([[5 + (i * 7) % 20 for i in range(n)] for n in (9, 23, 4)], cfg)
    with torch.no_grad():
        diff = float((model(ids, mask) - traced(ids, mask)).abs().max())
    if diff > 1e-4:
        raise SystemExit(f"{path}: rebuilt from its weights with --heads {heads}, it differs from the source "
                         f"by {diff:.3g} on a probe batch: wrong --heads, or not a TinyBert")
    return model, meta


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="a TorchScript TinyBert (e.g. models/ss3_bert.pt)")
    p.add_argument("--out", required=True)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--hf-tuple", action="store_true",
                   help="return (hidden states, pooled) like a traced Hugging Face BertModel")
    a = p.parse_args()
    model, meta = load_tinybert(a.source, a.heads)
    name = (meta.get("name") or os.path.splitext(os.path.basename(a.source))[0]) + "-encoder"
    hidden = model.tok.weight.shape[1]
    enc_meta = protein.encoder_metadata(meta["tokenizer"]["max_length"], name=name, tokenizer=meta["tokenizer"],
                                        description=f"the encoder of {os.path.basename(a.source)} without its head: "
                                                    f"last hidden states, {hidden} dimensions")
    protein.save_traced(protein.Encoder(model, hf_tuple=a.hf_tuple), a.out, enc_meta)
    print(f"wrote {a.out}: {name}, hidden size {hidden}")


if __name__ == "__main__":
    main()
