#!/usr/bin/python3
"""Trains and exports the reference protein models (hpcscreen.bert/1, traced like a Hugging
Face BERT):

  ss3       per-residue secondary structure (C/E/H) from single sequences. Train: NetSurfP-2.0
            Validation + CB513; evaluate: TS115 and CASP12. Q3 counts residues whose disorder
            value is 1.0 (resolved), the NetSurfP evaluation convention.
  membrane  per-sequence membrane-bound (M) vs soluble (S) from the DeepLoc test split, rows
            labelled U left out, split 80/20 by seed; metric ROC-AUC of the 'membrane' output.

  /usr/bin/python3 tools/train_protein.py --task ss3 --data ../shared/data --out models/
"""
import argparse
import csv
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from hpcscreen_py import metrics, protein  # noqa: E402

SS3 = ["C", "E", "H"]


def read_rows(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f, skipinitialspace=True))


def load_ss3(path):
    out = []
    for r in read_rows(path):
        seq = "".join(r["input"].split())
        ss = [SS3.index(x) for x in r["dssp3"].split()]
        resolved = [float(x) == 1.0 for x in r["disorder"].split()]
        out.append((seq, ss, resolved))
    return out


def encode_all(seqs, cfg):
    return [protein.encode(s, cfg)[0] for s in seqs]


def batches_by_length(items, max_tokens, rng):
    order = sorted(range(len(items)), key=lambda i: (len(items[i]), rng.random()))
    out, cur, longest = [], [], 0
    for i in order:
        n = len(items[i]) + 2
        if cur and (len(cur) + 1) * max(longest, n) > max_tokens:
            out.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def crop(n, window, rng):
    if n <= window:
        return 0, n
    b = rng.randint(0, n - window)
    return b, b + window


def q3(model, data, cfg, window):
    """Q3 over resolved residues; sequences longer than the window are scored per window (no
    long protein is in these sets' evaluation splits beyond it, but keep it correct)."""
    model.eval()
    right = total = 0
    with torch.no_grad():
        for ids, ss, resolved in data:
            pred = []
            for b in range(0, len(ids), window):
                out = model(*protein.batch([ids[b:b + window]], cfg))[0, 1:1 + len(ids[b:b + window])]
                pred += out.argmax(-1).tolist()
            for p, y, ok in zip(pred, ss, resolved):
                if ok:
                    right += p == y
                    total += 1
    return right / total


def train_ss3(a):
    cfg = protein.tokenizer_config(a.max_length)
    window = a.max_length - 2
    train = [x for f in ("Validation_HHblits.csv", "CB513_HHblits.csv") for x in load_ss3(os.path.join(a.data, "netsurfp2", f))]
    tests = {name: load_ss3(os.path.join(a.data, "netsurfp2", f"{name}_HHblits.csv")) for name in ("TS115", "CASP12")}
    rng = random.Random(a.seed)
    rng.shuffle(train)
    n_dev = len(train) // 10
    dev, train = train[:n_dev], train[n_dev:]
    enc = lambda data: [(protein.encode(s, cfg)[0], ss, res) for s, ss, res in data]  # noqa: E731
    train, dev = enc(train), enc(dev)
    tests = {k: enc(v) for k, v in tests.items()}
    model = protein.TinyBert(len(cfg["tokens"]), a.max_length, a.hidden, a.layers, a.heads, 3, True, conv=a.conv, dropout=a.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-1)
    best, t0 = (-1.0, None, 0), time.time()
    for epoch in range(a.epochs):
        model.train()
        for b in batches_by_length([x[0] for x in train], a.max_tokens, rng):
            ids, ys = [], []
            for i in b:
                t, ss, res = train[i]
                s, e = crop(len(t), window, rng)
                ids.append(t[s:e])
                ys.append([y if ok else -1 for y, ok in zip(ss[s:e], res[s:e])])
            input_ids, mask = protein.batch(ids, cfg)
            target = torch.full(input_ids.shape, -1, dtype=torch.long)
            for r, y in enumerate(ys):
                target[r, 1:1 + len(y)] = torch.tensor(y)
            opt.zero_grad()
            loss = loss_fn(model(input_ids, mask).reshape(-1, 3), target.reshape(-1))
            loss.backward()
            opt.step()
        acc = q3(model, dev, cfg, window)
        print(f"epoch {epoch + 1}: dev Q3 {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
        if acc > best[0]:
            best = (acc, {k: v.clone() for k, v in model.state_dict().items()}, epoch + 1)
    model.load_state_dict(best[1])
    results = {name: round(q3(model, data, cfg, window), 4) for name, data in tests.items()}
    print(f"best epoch {best[2]} (dev Q3 {best[0]:.4f}); test Q3: {results}")
    meta = protein.metadata(SS3, "residue", a.max_length, name="hpcscreen-ss3-tiny",
                            description=f"secondary structure (3 states) from single sequences; conv {a.conv} + "
                                        f"{a.layers} transformer layers, hidden {a.hidden}; trained on NetSurfP-2.0 "
                                        f"Validation + CB513 (10% held out for model selection, seed {a.seed})",
                            metrics={"q3_" + k: v for k, v in results.items()})
    protein.save_traced(model, os.path.join(a.out, "ss3_bert.pt"), meta)


def train_membrane(a):
    cfg = protein.tokenizer_config(a.max_length)
    window = a.max_length - 2
    rows = [r for r in read_rows(os.path.join(a.data, "deeploc", "deeploc_per_protein_test.csv")) if r["membrane"] in ("M", "S")]
    data = [(protein.encode("".join(r["input"].split()), cfg)[0], 1 if r["membrane"] == "M" else 0, i) for i, r in enumerate(rows)]
    rng = random.Random(a.seed)
    idx = list(range(len(data)))
    rng.shuffle(idx)
    cut = int(0.8 * len(idx))
    train, test = [data[i] for i in idx[:cut]], [data[i] for i in idx[cut:]]
    model = protein.TinyBert(len(cfg["tokens"]), a.max_length, a.hidden, a.layers, a.heads, 2, False, conv=a.conv, dropout=a.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    t0 = time.time()
    for epoch in range(a.epochs):
        model.train()
        for b in batches_by_length([x[0] for x in train], a.max_tokens, rng):
            ids = []
            for i in b:
                s, e = crop(len(train[i][0]), window, rng)
                ids.append(train[i][0][s:e])
            y = torch.tensor([train[i][1] for i in b])
            opt.zero_grad()
            logits = model(*protein.batch(ids, cfg))
            loss = torch.nn.functional.cross_entropy(logits, 1 - y)  # column 0 = membrane
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    meta = protein.metadata(["membrane", "soluble"], "sequence", a.max_length, name="hpcscreen-membrane-tiny",
                            rank_by="membrane",
                            description=f"membrane-bound vs soluble from DeepLoc test-split proteins labelled M or S, "
                                        f"80/20 split by seed {a.seed}")
    path = os.path.join(a.out, "membrane_bert.pt")
    protein.save_traced(model, path, meta)
    # The metric is computed like the pipeline does it: windows of the model's length, weighted mean.
    scores = []
    with torch.no_grad():
        for ids, _, _ in test:
            acc, n = 0.0, len(ids)
            for b, e, kb, ke in protein.plan_windows(n, window, window // 4):
                acc += (ke - kb) / n * float(model(*protein.batch([ids[b:e]], cfg))[0, 0])
            scores.append(acc)
    auc = metrics.roc_auc([y for _, y, _ in test], scores)
    print(f"test ROC-AUC {auc:.4f}")
    meta["metrics"] = {"test_roc_auc": round(auc, 4)}
    protein.save_traced(model, path, meta)
    with open(os.path.join(a.out, "membrane_split.json"), "w") as f:
        json.dump({"seed": a.seed, "note": "row indices among DeepLoc rows labelled M or S", "test_rows": sorted(i for _, _, i in test),
                   "test_roc_auc": auc}, f)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", choices=["ss3", "membrane"], required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--conv", type=int, default=9)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-tokens", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    (train_ss3 if a.task == "ss3" else train_membrane)(a)


if __name__ == "__main__":
    main()
