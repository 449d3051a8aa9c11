#!/usr/bin/python3
"""Trains the reference HIV-activity fingerprint model (ECFP4, 2048 bits, into a feed-forward
network) and exports it with the `morgan` featurizer declared in its hpcscreen.json.

Same data and split as the HIV GNN (tools/train_gnn.py): the molecules the OGB featurizer
accepts, random 80/10/10 by seed 0, so the two models' test ROC-AUCs are comparable; the test
lines are checked against models/hiv_split.json.

  /usr/bin/python3 tools/train_fingerprint.py --data ../shared/data/hiv.txt --out models/
"""
import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from hpcscreen_py import featurize, fingerprint, metrics  # noqa: E402
from train_gnn import load, split  # noqa: E402


def predict(model, x, batch=2048):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch])[:, 0] for i in range(0, len(x), batch)]).tolist()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    spec = fingerprint.spec(radius=2, bits=2048)
    gen = fingerprint.generator(spec)

    t0 = time.time()
    rows = load(a.data)
    data = [(line_no, smiles, label) for line_no, smiles, label in rows if featurize.smiles_to_graph(smiles) is not None]
    tr, va, te = split(len(data), a.seed)
    split_file = os.path.join(a.out, "hiv_split.json")
    if os.path.exists(split_file):
        want = json.load(open(split_file))["test_lines"]
        if sorted(data[i][0] for i in te) != want:
            raise SystemExit("the split differs from models/hiv_split.json: the two models would not be comparable")
    x = torch.from_numpy(np.stack([fingerprint.smiles_to_fingerprint(s, spec, gen) for _, s, _ in data]))
    y = torch.tensor([[float(l)] for _, _, l in data])
    print(f"{len(data)} molecules fingerprinted in {time.time() - t0:.0f} s", flush=True)

    model = fingerprint.MLP(spec["bits"], a.hidden, 1, a.layers, a.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    va_labels = [data[i][2] for i in va]
    best = (-1.0, None, 0)
    rng = random.Random(a.seed)
    for epoch in range(a.epochs):
        model.train()
        order = tr[:]
        rng.shuffle(order)
        for i in range(0, len(order), 128):
            b = torch.tensor(order[i:i + 128])
            opt.zero_grad()
            loss = loss_fn(model(x[b]), y[b])
            loss.backward()
            opt.step()
        auc = metrics.roc_auc(va_labels, predict(model, x[torch.tensor(va)]))
        print(f"epoch {epoch + 1}: validation ROC-AUC {auc:.4f} ({time.time() - t0:.0f} s)", flush=True)
        if auc > best[0]:
            best = (auc, {k: v.clone() for k, v in model.state_dict().items()}, epoch + 1)
    model.load_state_dict(best[1])
    te_auc = metrics.roc_auc([data[i][2] for i in te], predict(model, x[torch.tensor(te)]))
    print(f"best epoch {best[2]} (validation ROC-AUC {best[0]:.4f}); test ROC-AUC {te_auc:.4f}")
    meta = fingerprint.metadata(
        ["hiv_active"], spec, name="hpcscreen-hiv-ecfp4-mlp",
        description=f"feed-forward network ({a.layers} hidden layers of {a.hidden}, ReLU, dropout {a.dropout}) over "
                    f"ECFP4 bits (Morgan radius 2, 2048 bits), trained on MoleculeNet HIV (random 80/10/10 split, "
                    f"seed {a.seed}, as hiv_gnn.pt)",
        output="logit: higher means more likely active in the NCI AIDS antiviral screen",
        metrics={"test_roc_auc": round(te_auc, 4), "validation_roc_auc": round(best[0], 4)})
    fingerprint.save(model, os.path.join(a.out, "hiv_fp_mlp.pt"), meta)


if __name__ == "__main__":
    main()
