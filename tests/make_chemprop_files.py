#!/usr/bin/python3
"""Writes small Chemprop model files with seeded random weights, in the layout `chemprop train`
saves (v2 save_model `.pt`, a Lightning-style `.ckpt`, a v1 `.pt`), for the predictor kinds and
options the two shared Chemprop files do not cover. No Chemprop is needed: the hyper-parameters
pickle stand-in classes that carry Chemprop's module and class names (registered in
sys.modules only while this script runs), so a reader sees the names a real file has.

  /usr/bin/python3 tests/make_chemprop_files.py OUTDIR

Writes OUTDIR/<name>.pt|.ckpt for each entry of VARIANTS (and prints the names); files whose
name starts with refuse_ must be refused by tools/import_chemprop.py.
"""
import collections
import os
import sys
import types

import torch

HIDDEN = 24
BOND_WIDTH = 14
ATOM_WIDTHS = {"v2": 72, "v1": 133, "organic": 44}


def _fake_module(name, *classes):
    parts = name.split(".")
    for i in range(1, len(parts)):  # pickle imports the module, so its parents must exist
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    module = sys.modules.get(name) or types.ModuleType(name)
    for cls in classes:
        cls.__module__ = name
        setattr(module, cls.__name__, cls)
    sys.modules[name] = module


class AttributeDict(dict):
    pass


class _Marker:
    """A class Chemprop stores by reference (hparams "cls")."""


def _classes(module, *names):
    made = [type(name, (_Marker,), {}) for name in names]
    _fake_module(module, *made)
    return {cls.__name__: cls for cls in made}


class _ModuleState:
    """Pickles like a torch.nn.Module subclass: NEWOBJ of the class, then its __dict__."""

    def __init__(self, buffers=None, modules=None):
        self.training = False
        self._parameters = collections.OrderedDict()
        self._buffers = collections.OrderedDict(buffers or {})
        self._modules = collections.OrderedDict(modules or {})


class UnscaleTransform(_ModuleState):
    pass


class GraphTransform(_ModuleState):
    pass


class TrainArgs:
    """Chemprop v1's argument object (chemprop.args.TrainArgs), pickled with its __dict__."""


_fake_module("lightning.fabric.utilities.data", AttributeDict)
_fake_module("chemprop.nn.transforms", UnscaleTransform, GraphTransform)
_fake_module("chemprop.args", TrainArgs)
MP = _classes("chemprop.nn.message_passing.base", "BondMessagePassing", "AtomMessagePassing")
MP.update(_classes("chemprop.nn.message_passing.multi", "MulticomponentMessagePassing"))
AGG = _classes("chemprop.nn.agg", "MeanAggregation", "SumAggregation", "NormAggregation")
PRED = _classes("chemprop.nn.predictors", "RegressionFFN", "MveFFN", "EvidentialFFN",
                "BinaryClassificationFFN", "BinaryDirichletFFN", "MulticlassClassificationFFN")

# name -> options; defaults in make_v2()
VARIANTS = {
    "mve_2tasks": dict(predictor="MveFFN", n_tasks=2, columns=["logD", "logS"]),
    "evidential_norm": dict(predictor="EvidentialFFN", agg="NormAggregation", norm=50.0,
                            batch_norm=False),
    "multiclass_sum": dict(predictor="MulticlassClassificationFFN", n_tasks=2, n_classes=3,
                           agg="SumAggregation", columns=["colour", "shape"]),
    "dirichlet_binary": dict(predictor="BinaryDirichletFFN", n_tasks=3, scaled=False),
    "atom_messages": dict(mp="AtomMessagePassing", bias=True, depth=4, activation="LEAKYRELU"),
    "undirected_tanh": dict(undirected=True, activation="TANH", ffn_layers=3),
    "prelu_elu": dict(activation="PRELU", depth=2),
    "v1_features": dict(atom_featurizer="v1", predictor="BinaryClassificationFFN", n_tasks=2,
                        scaled=False, activation="ELU"),
    "organic_features": dict(atom_featurizer="organic", agg="SumAggregation"),
    "checkpoint": dict(checkpoint=True, agg="NormAggregation", norm=100.0),
    "refuse_x_d": dict(x_d=5),
    "refuse_multicomponent": dict(multicomponent=True),
    "refuse_extra_atom_features": dict(d_v=72 + 3),
}


def _weight(generator, rows, cols):
    return torch.randn(rows, cols, generator=generator) / cols ** 0.5


def make_v2(seed, mp="BondMessagePassing", agg="MeanAggregation", norm=100.0, batch_norm=True,
            predictor="RegressionFFN", n_tasks=1, n_classes=0, atom_featurizer="v2", d_v=None,
            bias=False, depth=3, activation="RELU", undirected=False, ffn_layers=2,
            scaled=True, columns=None, x_d=0, checkpoint=False, multicomponent=False):
    g = torch.Generator().manual_seed(seed)
    d_v = d_v or ATOM_WIDTHS[atom_featurizer]
    d_e, d_h = BOND_WIDTH, HIDDEN
    sd = collections.OrderedDict()
    w_i_in = d_v + d_e if mp == "BondMessagePassing" else d_v
    w_h_in = d_h if mp == "BondMessagePassing" else d_h + d_e
    sd["message_passing.W_i.weight"] = _weight(g, d_h, w_i_in)
    if bias:
        sd["message_passing.W_i.bias"] = 0.1 * torch.randn(d_h, generator=g)
    sd["message_passing.W_h.weight"] = _weight(g, d_h, w_h_in)
    if bias:
        sd["message_passing.W_h.bias"] = 0.1 * torch.randn(d_h, generator=g)
    sd["message_passing.W_o.weight"] = _weight(g, d_h, d_v + d_h)
    sd["message_passing.W_o.bias"] = 0.1 * torch.randn(d_h, generator=g)
    if activation == "PRELU":
        sd["message_passing.tau.weight"] = torch.tensor([0.2])
    if batch_norm:
        sd["bn.weight"] = 1 + 0.1 * torch.randn(d_h, generator=g)
        sd["bn.bias"] = 0.1 * torch.randn(d_h, generator=g)
        sd["bn.running_mean"] = 0.1 * torch.randn(d_h, generator=g)
        sd["bn.running_var"] = 0.5 + torch.rand(d_h, generator=g)
        sd["bn.num_batches_tracked"] = torch.tensor(42)

    n_targets = {"MveFFN": 2, "EvidentialFFN": 4, "BinaryDirichletFFN": 2}.get(predictor, 1)
    n_out = n_tasks * n_targets * (n_classes or 1)
    dims = [d_h + x_d] + [HIDDEN] * (ffn_layers - 1) + [n_out]
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        j = 0 if i == 0 else 2
        if i > 0 and activation == "PRELU":
            sd[f"predictor.ffn.{i}.0.weight"] = torch.tensor([0.3])
        sd[f"predictor.ffn.{i}.{j}.weight"] = _weight(g, d_out, d_in)
        sd[f"predictor.ffn.{i}.{j}.bias"] = 0.1 * torch.randn(d_out, generator=g)
    sd["predictor.criterion.task_weights"] = torch.ones(1, n_tasks)

    output_transform = None
    if scaled:
        mean = torch.randn(1, n_tasks, generator=g) * 3
        scale = 0.5 + torch.rand(1, n_tasks, generator=g) * 2
        sd["predictor.output_transform.mean"] = mean
        sd["predictor.output_transform.scale"] = scale
        output_transform = UnscaleTransform({"mean": mean, "scale": scale})

    identity = torch.nn.Identity()
    mp_hparams = AttributeDict(
        d_v=d_v, d_e=d_e, d_h=d_h, bias=bias, depth=depth, dropout=0.0, activation=activation,
        undirected=undirected, d_vd=None, V_d_transform=None,
        graph_transform=GraphTransform(modules={"V_transform": identity,
                                                "E_transform": identity}),
        cls=MP[mp])
    if multicomponent:
        mp_hparams = AttributeDict(blocks=[mp_hparams, mp_hparams], n_components=2,
                                   shared=False, cls=MP["MulticomponentMessagePassing"])
    agg_hparams = {"dim": 0, "cls": AGG[agg]}
    if agg == "NormAggregation":
        agg_hparams["norm"] = norm
    pred_hparams = AttributeDict(
        n_tasks=n_tasks, input_dim=d_h + x_d, hidden_dim=HIDDEN, n_layers=ffn_layers - 1,
        dropout=0.0, activation=activation, task_weights=None, threshold=None,
        cls=PRED[predictor], criterion=None, output_transform=output_transform)
    if n_classes:
        pred_hparams["n_classes"] = n_classes
    hparams = AttributeDict(
        batch_norm=batch_norm, metrics=None, warmup_epochs=2, init_lr=1e-4, max_lr=1e-3,
        final_lr=1e-4, X_d_transform=None, message_passing=mp_hparams, agg=agg_hparams,
        predictor=pred_hparams)
    data = {"hyper_parameters": hparams, "state_dict": sd, "output_columns": columns}
    if checkpoint:
        data = {"epoch": 2, "global_step": 30, "pytorch-lightning_version": "2.5.0",
                "state_dict": sd, "loops": {}, "callbacks": {}, "optimizer_states": [],
                "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": hparams}
    return data


def make_v1(seed):
    """A Chemprop v1 file: bond messages, V1 atom features, 3-layer FFN, regression with a
    data scaler, two tasks."""
    g = torch.Generator().manual_seed(seed)
    d_v, d_e, d_h, n_tasks = ATOM_WIDTHS["v1"], BOND_WIDTH, HIDDEN, 2
    args = TrainArgs()
    args.__dict__.update(
        dataset_type="regression", num_tasks=n_tasks, task_names=["solubility", "logP"],
        atom_messages=False, hidden_size=d_h, depth=3, bias=False, activation="ReLU",
        undirected=False, dropout=0.0, aggregation="norm", aggregation_norm=30,
        ffn_num_layers=3, ffn_hidden_size=HIDDEN, features_generator=None, features_path=None,
        atom_descriptors=None, bond_descriptors=None, reaction=False, number_of_molecules=1,
        explicit_h=False, adding_h=False, loss_function="mse", multiclass_num_classes=3)
    sd = collections.OrderedDict()
    sd["encoder.encoder.0.cached_zero_vector"] = torch.zeros(d_h)
    sd["encoder.encoder.0.W_i.weight"] = _weight(g, d_h, d_v + d_e)
    sd["encoder.encoder.0.W_h.weight"] = _weight(g, d_h, d_h)
    sd["encoder.encoder.0.W_o.weight"] = _weight(g, d_h, d_v + d_h)
    sd["encoder.encoder.0.W_o.bias"] = 0.1 * torch.randn(d_h, generator=g)
    dims = [d_h, HIDDEN, HIDDEN, n_tasks]
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        sd[f"readout.{i * 3 + 1}.weight"] = _weight(g, d_out, d_in)
        sd[f"readout.{i * 3 + 1}.bias"] = 0.1 * torch.randn(d_out, generator=g)
    scaler = {"means": [1.5, -0.25], "stds": [2.0, 0.75]}
    return {"args": args, "state_dict": sd, "data_scaler": scaler, "features_scaler": None}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for seed, (name, options) in enumerate(VARIANTS.items(), start=1):
        suffix = ".ckpt" if options.get("checkpoint") else ".pt"
        torch.save(make_v2(seed, **options), os.path.join(out, name + suffix))
        print(name + suffix)
    torch.save(make_v1(100), os.path.join(out, "v1_regression.pt"))
    print("v1_regression.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
