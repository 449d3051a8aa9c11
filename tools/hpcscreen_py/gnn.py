"""Reference GNNs for the hpcscreen.gnn/1 contract.

GINE-style message passing over the OGB features: h' = MLP((1 + eps) h + sum_j h_j + sum_j b_ij)
with bond embeddings b_ij, then a sum readout and a linear head. Aggregation is linear in the
neighbour states, so the same weights run either on an edge list (GNNSparse, memory O(E)) or on
a block-diagonal dense adjacency built per batch (GNNDense, memory O(N^2), the way the seed
study's molecular GNN worked). Both are TorchScript-scriptable."""
import json

import torch
from torch import nn

from . import featurize

CONTRACT = "hpcscreen.gnn/1"


class _Weights(nn.Module):
    def __init__(self, hidden, layers, tasks, mean_pool=False, dropout=0.0):
        super().__init__()
        self.atom_emb = nn.ModuleList([nn.Embedding(d, hidden) for d in featurize.ATOM_FEATURE_DIMS])
        self.bond_emb = nn.ModuleList([
            nn.ModuleList([nn.Embedding(d, hidden) for d in featurize.BOND_FEATURE_DIMS])
            for _ in range(layers)])
        self.mlps = nn.ModuleList([
            nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden))
            for _ in range(layers)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(hidden) for _ in range(layers)])
        self.drop = nn.Dropout(dropout)
        self.mean_pool = mean_pool
        self.eps = nn.Parameter(torch.zeros(layers))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, tasks))
        self.hidden = hidden
        self.layers = layers

    def finish_layer(self, layer: int, h):
        for i, norm in enumerate(self.norms):
            if i == layer:
                h = norm(h)
        if layer + 1 < self.layers:
            h = torch.relu(h)
        return self.drop(h)

    def embed_atoms(self, x):
        h = torch.zeros(x.size(0), self.hidden, dtype=torch.float32)
        for i, emb in enumerate(self.atom_emb):
            h = h + emb(x[:, i])
        return h


class GNNSparse(_Weights):
    def forward(self, x, edge_index, edge_attr, batch, num_graphs: int):
        h = self.embed_atoms(x)
        src, dst = edge_index[0], edge_index[1]
        for layer, (mlp, bonds) in enumerate(zip(self.mlps, self.bond_emb)):
            b = torch.zeros(edge_attr.size(0), self.hidden, dtype=torch.float32)
            for i, emb in enumerate(bonds):
                b = b + emb(edge_attr[:, i])
            agg = torch.zeros_like(h).index_add_(0, dst, h.index_select(0, src) + b)
            h = self.finish_layer(layer, mlp((1 + self.eps[layer]) * h + agg))
        g = torch.zeros(num_graphs, self.hidden, dtype=torch.float32).index_add_(0, batch, h)
        if self.mean_pool:
            n = torch.zeros(num_graphs, dtype=torch.float32).index_add_(0, batch, torch.ones(batch.size(0)))
            g = g / n.clamp(min=1.0).unsqueeze(1)
        return self.head(g)


class GNNDense(_Weights):
    def forward(self, x, edge_index, edge_attr, batch, num_graphs: int):
        n = x.size(0)
        h = self.embed_atoms(x)
        src, dst = edge_index[0], edge_index[1]
        # Block-diagonal adjacency of the whole batch: [n, n] float32, O(n^2) memory.
        adj = torch.zeros(n, n, dtype=torch.float32)
        adj.index_put_((dst, src), torch.ones(src.size(0), dtype=torch.float32), accumulate=True)
        for layer, (mlp, bonds) in enumerate(zip(self.mlps, self.bond_emb)):
            b = torch.zeros(edge_attr.size(0), self.hidden, dtype=torch.float32)
            for i, emb in enumerate(bonds):
                b = b + emb(edge_attr[:, i])
            agg = adj.mm(h) + torch.zeros_like(h).index_add_(0, dst, b)
            h = self.finish_layer(layer, mlp((1 + self.eps[layer]) * h + agg))
        pool = torch.zeros(num_graphs, n, dtype=torch.float32)
        pool[batch, torch.arange(n)] = 1.0
        if self.mean_pool:
            pool = pool / pool.sum(1, keepdim=True).clamp(min=1.0)
        return self.head(pool.mm(h))


def metadata(tasks, rank_by=None, higher_is_better=True, name="", **extra):
    meta = {
        "contract": CONTRACT,
        "kind": "gnn",
        "name": name,
        "featurizer": {"name": featurize.NAME, "version": featurize.VERSION},
        "tasks": list(tasks),
        "rank_by": rank_by or tasks[0],
        "higher_is_better": higher_is_better,
    }
    meta.update(extra)
    return meta


def save(model, path, meta):
    scripted = torch.jit.script(model.eval())
    torch.jit.save(scripted, path, _extra_files={"hpcscreen.json": json.dumps(meta, indent=2)})


def batch_graphs(graphs):
    """Concatenates featurize.smiles_to_graph() outputs into the contract's five inputs."""
    xs, srcs, dsts, attrs, batch = [], [], [], [], []
    base = 0
    for gi, (x, edges, edge_attr) in enumerate(graphs):
        xs += x
        srcs += [base + s for s, _ in edges]
        dsts += [base + d for _, d in edges]
        attrs += edge_attr
        batch += [gi] * len(x)
        base += len(x)
    return (torch.tensor(xs, dtype=torch.long).reshape(-1, 9),
            torch.tensor([srcs, dsts], dtype=torch.long).reshape(2, -1),
            torch.tensor(attrs, dtype=torch.long).reshape(-1, 3),
            torch.tensor(batch, dtype=torch.long),
            len(graphs))
