#!/usr/bin/python3
"""Writes the tiny models the tests use into OUTDIR, plus expected scores computed in Python
(Python featurizer + PyTorch), an independent reference for the C++ pipeline."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import torch  # noqa: E402

from hpcscreen_py import featurize, fingerprint, gnn, protein  # noqa: E402

PROBE_SMILES = ["CCO", "c1ccccc1O", "N[C@@H](C)C(=O)O", "C/C=C/C(=O)[O-].[Na+]", "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
                "O=C1NC(=O)C(=O)N1"]


class OneDim(torch.nn.Module):
    def forward(self, x, edge_index, edge_attr, batch, num_graphs: int):
        return torch.zeros(num_graphs)


class Overflowing(torch.nn.Module):
    """An encoder whose hidden states are scaled by 1e6 in sequences holding a W: finite in
    float32, beyond float16's range (65504)."""

    def __init__(self, encoder, w_id):
        super().__init__()
        self.encoder = encoder
        self.w_id = w_id

    def forward(self, input_ids, attention_mask):
        h = self.encoder(input_ids, attention_mask)
        has_w = (input_ids == self.w_id).any(dim=1).to(h.dtype)
        return h * (1.0 + 1e6 * has_w)[:, None, None]


class TwoArgs(torch.nn.Module):
    def forward(self, x, edge_index):
        return torch.zeros(1, 1)


def save_plain(module, path, meta=None):
    s = torch.jit.script(module)
    if meta is None:
        torch.jit.save(s, path)
    else:
        torch.jit.save(s, path, _extra_files={"hpcscreen.json": json.dumps(meta)})


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(3)
    tasks = ["activity", "toxicity"]
    sparse = gnn.GNNSparse(16, 2, len(tasks))
    dense = gnn.GNNDense(16, 2, len(tasks))
    dense.load_state_dict(sparse.state_dict())
    meta = gnn.metadata(tasks, rank_by="activity", name="test-gnn")
    gnn.save(sparse, os.path.join(out, "gnn.pt"), meta)
    gnn.save(dense, os.path.join(out, "gnn_dense.pt"), meta)
    gnn.save(sparse, os.path.join(out, "gnn_lower.pt"), gnn.metadata(tasks, rank_by="toxicity", higher_is_better=False))

    save_plain(sparse, os.path.join(out, "no_metadata.pt"))
    bad = dict(meta, featurizer={"name": "ogb-smiles2graph", "version": 2})
    gnn.save(sparse, os.path.join(out, "featurizer_v2.pt"), bad)
    gnn.save(sparse, os.path.join(out, "wrong_kind.pt"), dict(meta, kind="bert"))
    gnn.save(sparse, os.path.join(out, "three_tasks_declared.pt"), dict(meta, tasks=["a", "b", "c"], rank_by="a"))
    save_plain(OneDim(), os.path.join(out, "wrong_shape.pt"), meta)
    save_plain(TwoArgs(), os.path.join(out, "wrong_arity.pt"), meta)
    with open(os.path.join(out, "not_torchscript.pt"), "w") as f:
        f.write("this is not a TorchScript archive\n")

    # Fingerprint models (the morgan featurizer): ECFP4 bits, and FCFP6 counts folded to 1024;
    # two models share the ECFP4 featurizer, so it must run once for both.
    torch.manual_seed(4)
    for name, params, hidden in (("fp_mlp", {}, 16), ("fp_mlp_b", {}, 8),
                                 ("fp_counts", {"radius": 3, "bits": 1024, "counts": True, "features": True}, 16)):
        spec = fingerprint.spec(**params)
        mlp = fingerprint.MLP(spec["bits"], hidden, 2, layers=2)
        fingerprint.save(mlp, os.path.join(out, f"{name}.pt"),
                         fingerprint.metadata(["p_active", "p_toxic"], spec, name=f"test-{name.replace('_', '-')}"))
    bad = fingerprint.spec()
    fingerprint.save(fingerprint.MLP(2048, 4, 2), os.path.join(out, "fp_unknown_param.pt"),
                     fingerprint.metadata(["a", "b"], dict(bad, diameter=4), name="bad-fp"))
    fingerprint.save(fingerprint.MLP(1024, 4, 2), os.path.join(out, "fp_wrong_width.pt"),
                     fingerprint.metadata(["a", "b"], bad, name="wrong-width"))

    # Protein models: a 48-position BERT (46 residues per window) per residue and per sequence.
    torch.manual_seed(5)
    vocab = len(protein.PROTBERT_TOKENS)
    res = protein.TinyBert(vocab, 48, 16, 2, 2, 3, True)
    protein.save_traced(res, os.path.join(out, "bert_residue.pt"), protein.metadata(["C", "E", "H"], "residue", 48, name="test-ss3"))
    seq = protein.TinyBert(vocab, 48, 16, 2, 2, 2, False)
    protein.save_traced(seq, os.path.join(out, "bert_sequence.pt"),
                        protein.metadata(["membrane", "soluble"], "sequence", 48, name="test-loc", rank_by="membrane"))
    protein.save_traced(seq, os.path.join(out, "bert_wrong_level.pt"), protein.metadata(["C", "E", "H"], "residue", 48))
    # Encoders ("output_level": "embedding"): the per-residue model without its head (hidden 16),
    # the same returning a Hugging Face-style tuple, and one whose output is [B, C], not [B, L, H].
    protein.save_traced(protein.Encoder(res), os.path.join(out, "bert_encoder.pt"), protein.encoder_metadata(48, name="test-encoder"))
    protein.save_traced(protein.Encoder(res, hf_tuple=True), os.path.join(out, "bert_encoder_tuple.pt"),
                        protein.encoder_metadata(48, name="test-encoder-tuple"))
    protein.save_traced(seq, os.path.join(out, "bert_encoder_wrong_shape.pt"), protein.encoder_metadata(48))
    protein.save_traced(Overflowing(protein.Encoder(res), protein.PROTBERT_TOKENS.index("W")),
                        os.path.join(out, "bert_encoder_overflow.pt"), protein.encoder_metadata(48))
    expected = {}
    with torch.no_grad():
        for s in PROBE_SMILES:
            scores = sparse(*gnn.batch_graphs([featurize.smiles_to_graph(s)]))
            expected[s] = scores[0].tolist()
    with open(os.path.join(out, "expected_scores.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
