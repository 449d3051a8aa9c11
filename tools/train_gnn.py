#!/usr/bin/python3
"""Trains the reference HIV-activity GNN and exports it (sparse and dense variants, same
weights) in the hpcscreen.gnn/1 contract.

Data: the MoleculeNet HIV set (NCI DTP AIDS antiviral screen), `SMILES label` per line.
Split: random 80/10/10 by a fixed seed over the molecules the featurizer accepts; the split's
row indices are written beside the model so validation can use exactly the same test set.

  /usr/bin/python3 tools/train_gnn.py --data ../shared/data/hiv.txt --out models/
"""
import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from hpcscreen_py import featurize, gnn, metrics  # noqa: E402


def load(path):
    rows = []
    with open(path) as f:
        for i, line in enumerate(f):
            parts = line.split()
            if len(parts) != 2:
                continue
            rows.append((i, parts[0], int(parts[1])))
    return rows


def split(n, seed):
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    a, b = int(0.8 * n), int(0.9 * n)
    return idx[:a], idx[a:b], idx[b:]


def predict(model, graphs, batch=512):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(graphs), batch):
            out += model(*gnn.batch_graphs(graphs[i:i + batch]))[:, 0].tolist()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)

    t0 = time.time()
    rows = load(a.data)
    data = []
    for line_no, smiles, label in rows:
        g = featurize.smiles_to_graph(smiles)
        if g is not None:
            data.append((line_no, smiles, label, g))
    print(f"featurized {len(data)} of {len(rows)} molecules in {time.time() - t0:.0f} s", flush=True)
    tr, va, te = split(len(data), a.seed)

    model = gnn.GNNSparse(a.hidden, a.layers, 1, mean_pool=True, dropout=a.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    va_graphs = [data[i][3] for i in va]
    va_labels = [data[i][2] for i in va]
    best = (-1.0, None, 0)
    rng = random.Random(a.seed)
    for epoch in range(a.epochs):
        model.train()
        order = tr[:]
        rng.shuffle(order)
        total = 0.0
        for i in range(0, len(order), 128):
            b = order[i:i + 128]
            inputs = gnn.batch_graphs([data[j][3] for j in b])
            y = torch.tensor([[float(data[j][2])] for j in b])
            opt.zero_grad()
            loss = loss_fn(model(*inputs), y)
            loss.backward()
            opt.step()
            total += float(loss) * len(b)
        sched.step()
        auc = metrics.roc_auc(va_labels, predict(model, va_graphs))
        print(f"epoch {epoch + 1}: loss {total / len(order):.4f}  validation ROC-AUC {auc:.4f}  ({time.time() - t0:.0f} s)", flush=True)
        if auc > best[0]:
            best = (auc, {k: v.clone() for k, v in model.state_dict().items()}, epoch + 1)

    model.load_state_dict(best[1])
    te_scores = predict(model, [data[i][3] for i in te])
    te_auc = metrics.roc_auc([data[i][2] for i in te], te_scores)
    print(f"best epoch {best[2]} (validation ROC-AUC {best[0]:.4f}); test ROC-AUC {te_auc:.4f}")

    meta = gnn.metadata(["hiv_active"], name="hpcscreen-hiv-gin",
                        description=f"GIN ({a.layers} layers, hidden {a.hidden}, batch norm, mean readout) over OGB features, "
                                    f"trained on MoleculeNet HIV (random 80/10/10 split, seed {a.seed})",
                        output="logit: higher means more likely active in the NCI AIDS antiviral screen",
                        metrics={"test_roc_auc": round(te_auc, 4), "validation_roc_auc": round(best[0], 4)})
    gnn.save(model, os.path.join(a.out, "hiv_gnn.pt"), meta)
    dense = gnn.GNNDense(a.hidden, a.layers, 1, mean_pool=True)
    dense.load_state_dict(model.state_dict())
    gnn.save(dense, os.path.join(a.out, "hiv_gnn_dense.pt"), dict(meta, name="hpcscreen-hiv-gin-dense"))
    with open(os.path.join(a.out, "hiv_split.json"), "w") as f:
        json.dump({"data": os.path.basename(a.data), "seed": a.seed, "note": "line numbers (0-based) of hiv.txt",
                   "test_lines": sorted(data[i][0] for i in te), "test_roc_auc": te_auc}, f)


if __name__ == "__main__":
    main()
