#!/usr/bin/python3
"""What a user would write instead of hpcscreen: RDKit + PyTorch in Python, the same
featurization (hpcscreen_py.featurize) and the same TorchScript model, a multiprocessing pool
over all cores, batches of 256, a top-K at the end.

  python_baseline.py LIBRARY.smi MODEL.pt [--processes N] [--top-k K]   → JSON on stdout
"""
import argparse
import heapq
import json
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

_model = None


def _init(model_path):
    global _model
    import torch
    torch.set_num_threads(1)
    _model = torch.jit.load(model_path)


def _score(lines):
    import torch
    from hpcscreen_py import featurize, gnn
    graphs, ids = [], []
    for line in lines:
        parts = line.split()
        g = featurize.smiles_to_graph(parts[0]) if parts else None
        if g is not None:
            graphs.append(g)
            ids.append(parts[1] if len(parts) > 1 else "")
    if not graphs:
        return [], len(lines)
    with torch.no_grad():
        scores = _model(*gnn.batch_graphs(graphs))[:, 0].tolist()
    return list(zip(scores, ids)), len(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("smi")
    p.add_argument("model")
    p.add_argument("--processes", type=int, default=os.cpu_count())
    p.add_argument("--top-k", type=int, default=100)
    a = p.parse_args()
    from rdkit import RDLogger
    RDLogger.DisableLog("rdApp.*")
    t0 = time.time()
    with open(a.smi) as f:
        lines = f.read().splitlines()
    batches = [lines[i:i + 256] for i in range(0, len(lines), 256)]
    top, n = [], 0
    with mp.Pool(a.processes, initializer=_init, initargs=(a.model,)) as pool:
        for scored, count in pool.imap_unordered(_score, batches, chunksize=4):
            n += count
            for s in scored:
                if len(top) < a.top_k:
                    heapq.heappush(top, s)
                else:
                    heapq.heappushpop(top, s)
    wall = time.time() - t0
    print(json.dumps({"records": n, "wall_s": wall, "records_per_s": n / wall, "processes": a.processes}))


if __name__ == "__main__":
    main()
