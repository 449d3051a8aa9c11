"""Chemprop's D-MPNN as a TorchScript-able module, loaded with a Chemprop model file's weights.

forward(V, E, edge_index, rev_edge_index, batch, num_graphs) takes the tensors of the `chemprop`
featurizer (data_schemas/chemprop_features.md) and returns float32 [B, T], T columns as
chemprop_file.column_names() lists them. Written independently of chemprop_ref.Reference
(index_add_ where Chemprop and the reference use scatter_reduce_) so that the two check each
other.
"""
import torch
from torch import Tensor, nn
from torch.nn import functional as F

ACTIVATIONS = ["relu", "leakyrelu", "prelu", "tanh", "elu", "selu"]
PREDICTORS = ["regression", "regression-mve", "regression-evidential", "regression-quantile",
              "classification", "classification-dirichlet", "multiclass", "multiclass-dirichlet"]


def _linear(weight, bias=None):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


class ChempropMPNN(nn.Module):
    def __init__(self, desc, w):
        """desc: chemprop_file.describe(); w: chemprop_file.weights()."""
        super().__init__()
        mp = desc["message_passing"]
        self.bond_messages = mp["kind"] == "bond"
        self.depth = int(mp["depth"])
        self.undirected = bool(mp["undirected"])
        self.d_h = int(mp["d_h"])
        self.mp_activation = ACTIVATIONS.index(mp["activation"])
        self.ffn_activation = ACTIVATIONS.index(desc["ffn"]["activation"])
        self.W_i = _linear(w["W_i.weight"], w.get("W_i.bias"))
        self.W_h = _linear(w["W_h.weight"], w.get("W_h.bias"))
        self.W_o = _linear(w["W_o.weight"], w.get("W_o.bias"))
        self.register_buffer("mp_prelu", w.get("tau.weight", torch.ones(1)))
        self.register_buffer("ffn_prelu", w.get("ffn_act.weight", torch.ones(1)))

        agg = desc["aggregation"]
        self.mean_aggregation = agg["kind"] == "mean"
        self.norm = float(agg.get("norm", 1.0)) if agg["kind"] == "norm" else 1.0
        self.use_norm = agg["kind"] == "norm"

        bn = desc["batch_norm"]
        self.batch_norm = bn is not None
        self.bn_eps = float(bn["eps"]) if bn is not None else 1e-5
        d_fp = self.d_h
        self.register_buffer("bn_mean", w.get("bn.running_mean", torch.zeros(d_fp)))
        self.register_buffer("bn_var", w.get("bn.running_var", torch.ones(d_fp)))
        self.register_buffer("bn_weight", w.get("bn.weight", torch.ones(d_fp)))
        self.register_buffer("bn_bias", w.get("bn.bias", torch.zeros(d_fp)))

        self.ffn = nn.ModuleList(
            _linear(w[f"ffn.{i}.weight"], w[f"ffn.{i}.bias"])
            for i in range(len(desc["ffn"]["layers"])))

        pred = desc["predictor"]
        self.predictor = PREDICTORS.index(pred["kind"])
        self.n_tasks = int(pred["n_tasks"])
        self.n_classes = int(pred.get("n_classes", 1))
        self.unscale = "output.mean" in w
        self.register_buffer("out_mean", w.get("output.mean", torch.zeros(1, self.n_tasks)))
        self.register_buffer("out_scale", w.get("output.scale", torch.ones(1, self.n_tasks)))

    def _act(self, x: Tensor, kind: int, prelu: Tensor) -> Tensor:
        if kind == 0:
            return torch.relu(x)
        if kind == 1:
            return F.leaky_relu(x, 0.1)
        if kind == 2:
            return F.prelu(x, prelu)
        if kind == 3:
            return torch.tanh(x)
        if kind == 4:
            return F.elu(x)
        return F.selu(x)

    def _sum_into(self, values: Tensor, index: Tensor, n: int) -> Tensor:
        out = torch.zeros(n, values.shape[1], dtype=values.dtype, device=values.device)
        return out.index_add_(0, index, values)

    def encode(self, V: Tensor, E: Tensor, edge_index: Tensor, rev_edge_index: Tensor,
               batch: Tensor, num_graphs: int) -> Tensor:
        src = edge_index[0]
        dst = edge_index[1]
        n_atoms = V.shape[0]
        if self.bond_messages:
            H_0 = self.W_i(torch.cat([V.index_select(0, src), E], dim=1))  # [E, d_h]
        else:
            H_0 = self.W_i(V.index_select(0, src))  # [E, d_h]: each edge carries its source atom
        H = self._act(H_0, self.mp_activation, self.mp_prelu)
        for _ in range(1, self.depth):
            if self.undirected:
                H = (H + H.index_select(0, rev_edge_index)) / 2
            if self.bond_messages:
                # into u->v: everything that reaches u, less what came back from v
                M = self._sum_into(H, dst, n_atoms).index_select(0, src) \
                    - H.index_select(0, rev_edge_index)
            else:
                M = self._sum_into(torch.cat([H, E], dim=1), dst, n_atoms).index_select(0, src)
            H = self._act(H_0 + self.W_h(M), self.mp_activation, self.mp_prelu)
        M_v = self._sum_into(H, dst, n_atoms)  # [N, d_h]
        H_v = self._act(self.W_o(torch.cat([V, M_v], dim=1)), self.mp_activation, self.mp_prelu)

        H_g = self._sum_into(H_v, batch, num_graphs)  # [B, d_h]
        if self.mean_aggregation:
            counts = torch.zeros(num_graphs, dtype=H_v.dtype, device=H_v.device)
            counts = counts.index_add_(0, batch, torch.ones_like(batch, dtype=H_v.dtype))
            H_g = H_g / counts.clamp(min=1.0).unsqueeze(1)
        elif self.use_norm:
            H_g = H_g / self.norm
        if self.batch_norm:
            H_g = F.batch_norm(H_g, self.bn_mean, self.bn_var, self.bn_weight, self.bn_bias,
                               training=False, eps=self.bn_eps)
        return H_g

    def forward(self, V: Tensor, E: Tensor, edge_index: Tensor, rev_edge_index: Tensor,
                batch: Tensor, num_graphs: int) -> Tensor:
        Y = self.encode(V, E, edge_index, rev_edge_index, batch, num_graphs)
        first = True
        for layer in self.ffn:
            if not first:
                Y = self._act(Y, self.ffn_activation, self.ffn_prelu)
            Y = layer(Y)
            first = False
        return self._columns(Y)

    def _unscaled(self, x: Tensor) -> Tensor:
        if self.unscale:
            return x * self.out_scale + self.out_mean
        return x

    def _unscaled_variance(self, x: Tensor) -> Tensor:
        if self.unscale:
            return x * self.out_scale * self.out_scale
        return x

    def _columns(self, Y: Tensor) -> Tensor:
        t = self.n_tasks
        B = Y.shape[0]
        p = self.predictor
        if p == 0:
            return self._unscaled(Y)
        if p == 1:
            return torch.cat([self._unscaled(Y[:, :t]),
                              self._unscaled_variance(F.softplus(Y[:, t:]))], dim=1)
        if p == 2:
            v = F.softplus(Y[:, t:2 * t])
            alpha = F.softplus(Y[:, 2 * t:3 * t]) + 1
            beta = self._unscaled_variance(F.softplus(Y[:, 3 * t:]))
            aleatoric = beta / (alpha - 1)
            return torch.cat([self._unscaled(Y[:, :t]), (1 + 1 / v) * aleatoric, aleatoric,
                              (1 / v) * aleatoric], dim=1)
        if p == 3:
            lower = self._unscaled(Y[:, :t])
            upper = self._unscaled(Y[:, t:])
            return torch.cat([(lower + upper) / 2, upper - lower], dim=1)
        if p == 4:
            return torch.sigmoid(Y)
        if p == 5:
            alpha = F.softplus(Y.reshape(B, t, 2)) + 1
            total = alpha.sum(-1)
            return torch.cat([alpha[:, :, 1] / total, 2 / total], dim=1)
        if p == 6:
            return torch.softmax(Y.reshape(B, t, self.n_classes), -1).reshape(B, -1)
        alpha = F.softplus(Y.reshape(B, t, self.n_classes)) + 1
        return (alpha / alpha.sum(-1, keepdim=True)).reshape(B, -1)
