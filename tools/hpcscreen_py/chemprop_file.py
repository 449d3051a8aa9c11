"""Reads a Chemprop model file without Chemprop installed and without running pickled code.

Chemprop v2 saves `torch.save({"hyper_parameters", "state_dict", "output_columns"})` (save_model,
`.pt`) or a Lightning checkpoint (`.ckpt`, the same two keys among others); Chemprop v1 saves
`{"args", "state_dict", "data_scaler", "features_scaler", ...}`. The hyper-parameters and v1's
`args` pickle Chemprop's (and Lightning's, and torch.nn's) classes. Here every class outside a
short allow-list of data types becomes a `Pickled` record of the name it stood for and the
arguments and state it was built with; no named module is imported.

describe() turns a loaded file into a plain dict (JSON-ready) of what the model computes, and
lists in "refused" every reason hpcscreen cannot run it.

  /usr/bin/python3 -m hpcscreen_py.chemprop_file MODEL.pt      (from tools/)
"""
import _compat_pickle
import collections
import json
import pickle
import sys
import types

import numpy as np
import torch

# Feature widths of Chemprop's molecule featurizers (featurizers/atom.py, bond.py): the file
# does not name its featurizer, so it is recognised by these.
ATOM_FEATURIZER_BY_WIDTH = {72: "v2", 133: "v1", 44: "organic"}
RIGR_WIDTHS = (52, 2)
BOND_FEATURE_WIDTH = 14


class Pickled(dict):
    """An object of a class that was not imported: the class name and what built it.

    A dict subclass so that dict subclasses (Lightning's AttributeDict) keep their items; list
    items (APPENDS) go to `list_items`.
    """

    pickled_module = ""
    pickled_name = ""

    def __new__(cls, *args, **kwargs):
        self = dict.__new__(cls)
        self.args = args
        self.kwargs = kwargs
        self.state = None
        self.list_items = []
        return self

    def __init__(self, *args, **kwargs):
        pass  # __new__ recorded the arguments; REDUCE calls cls(*args) and lands here too

    def __setstate__(self, state):
        self.state = state

    def append(self, item):
        self.list_items.append(item)

    def extend(self, items):
        self.list_items.extend(items)

    def __repr__(self):
        return f"<{self.pickled_module}.{self.pickled_name}>"


_stub_classes = {}


def stub_class(module, name):
    key = (module, name)
    if key not in _stub_classes:
        _stub_classes[key] = type(name.replace(".", "_"), (Pickled,),
                                  {"pickled_module": module, "pickled_name": name})
    return _stub_classes[key]


def is_stub_class(obj, name=None):
    return isinstance(obj, type) and issubclass(obj, Pickled) and (
        name is None or obj.pickled_name == name)


def class_name(obj):
    """The class name a pickled class or instance stood for ('' for anything else)."""
    if is_stub_class(obj):
        return obj.pickled_name
    if isinstance(obj, Pickled):
        return type(obj).pickled_name
    return ""


def _getattr_record(obj, name):
    # Python's Enum pickles members as getattr(EnumClass, "MEMBER"): record, never resolve.
    if is_stub_class(obj):
        return stub_class(obj.pickled_module, f"{obj.pickled_name}.{name}")()
    raise pickle.UnpicklingError(f"getattr({obj!r}, {name!r}) in a model file")


def _rebuild_from_type_v2(func, new_type, args, state):
    # torch's version calls new_type's __setstate__; keep only the tensor data.
    return func(*args)


def _latin1_bytes(text, encoding="latin1"):
    # protocol-2 pickles write bytes (numpy array data) as _codecs.encode(str, "latin1")
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} in a model file")
    return text.encode("latin1")


def _allowed():
    table = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("builtins", "getattr"): _getattr_record,
        ("_codecs", "encode"): _latin1_bytes,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for name in ("set", "frozenset", "list", "dict", "tuple", "int", "float", "complex", "str",
                 "bool", "bytes", "bytearray", "slice", "range"):
        table[("builtins", name)] = getattr(__import__("builtins"), name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = np.core.multiarray._reconstruct
        table[(module, "scalar")] = np.core.multiarray.scalar
    for name in ("_rebuild_parameter_with_state", "_rebuild_tensor_v3"):
        if hasattr(torch._utils, name):
            table[("torch._utils", name)] = getattr(torch._utils, name)
    for name in dir(torch):
        value = getattr(torch, name)
        if isinstance(value, torch.dtype):
            table[("torch", name)] = value
    return table


_ALLOWED = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        # protocol-2 pickles name Python 2 modules (__builtin__.set); pickle's own find_class
        # maps them, and this one replaces it
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage") and hasattr(torch, name):
            return getattr(torch, name)  # torch's own loader maps these before asking us
        return stub_class(module, name)


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


# What torch.load needs of a pickle module.
restricted_pickle = types.ModuleType("restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.__name__ = "restricted_pickle"


def _torch_load(path):
    # torch.load(pickle_module=...) is what this does, but torch 1.13 (Debian 12) replaces any
    # pickle_module with the standard pickle unless weights_only is set, and weights_only refuses
    # every Chemprop class. Its two readers take the module as given.
    serialization = torch.serialization
    with open(path, "rb") as f:
        if serialization._is_zipfile(f):
            with serialization._open_zipfile_reader(f) as archive:
                return serialization._load(archive, "cpu", restricted_pickle, encoding="utf-8")
        return serialization._legacy_load(f, "cpu", restricted_pickle, encoding="utf-8")


def load(path):
    """The file's top-level dict, tensors on the CPU, other objects as Pickled records."""
    try:
        data = _torch_load(path)
    except Exception as e:
        raise ValueError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict at the top (a Chemprop model file), "
                         f"found {type(data).__name__}")
    return data


def field(obj, key, default=None):
    """obj[key] for a dict, or the attribute `key` a pickled object was built with."""
    if isinstance(obj, dict) and dict.__contains__(obj, key):
        return dict.__getitem__(obj, key)
    if isinstance(obj, Pickled):
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, __slots__ values)
            for part in state:
                if isinstance(part, dict) and key in part:
                    return part[key]
        elif isinstance(state, dict) and key in state:
            return state[key]
        if key in obj.kwargs:
            return obj.kwargs[key]
    return default


def module_buffer(obj, name):
    """A buffer of a pickled torch.nn.Module (e.g. UnscaleTransform's mean)."""
    buffers = field(obj, "_buffers") or {}
    return buffers.get(name)


def enum_text(value):
    """'relu' for 'relu', Activation('relu') or getattr(Activation, 'RELU')."""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, Pickled):
        if value.args:
            return enum_text(value.args[0])
        name = type(value).pickled_name
        if "." in name:
            return name.rsplit(".", 1)[1].lower()
    return class_name(value).lower() or repr(value)


def tensor_list(t):
    return [float(v) for v in torch.as_tensor(t, dtype=torch.float64).reshape(-1)]


# Chemprop predictor class -> (kind, targets per task)
PREDICTOR_KINDS = {
    "RegressionFFN": ("regression", 1),
    "MveFFN": ("regression-mve", 2),
    "EvidentialFFN": ("regression-evidential", 4),
    "QuantileFFN": ("regression-quantile", 2),
    "BinaryClassificationFFN": ("classification", 1),
    "BinaryDirichletFFN": ("classification-dirichlet", 2),
    "MulticlassClassificationFFN": ("multiclass", 1),
    "MulticlassDirichletFFN": ("multiclass-dirichlet", 1),
    "SpectralFFN": ("spectral", 1),
}
SUPPORTED_PREDICTORS = {"regression", "regression-mve", "regression-evidential",
                        "regression-quantile", "classification", "classification-dirichlet",
                        "multiclass", "multiclass-dirichlet"}
ACTIVATIONS = {"relu", "leakyrelu", "prelu", "tanh", "elu", "selu"}


def _ffn_layers(state_dict, prefix):
    """The Linear layers `prefix{i}.{j}.weight` of Chemprop's MLP, in order (a block's other
    weight, if any, is its PReLU activation's)."""
    layers = []
    i = 0
    while True:
        keys = [k for k in state_dict if k.startswith(f"{prefix}{i}.") and k.endswith(".weight")
                and state_dict[k].dim() == 2]
        if not keys:
            return layers
        if len(keys) != 1:
            raise ValueError(f"FFN block {prefix}{i} has several linear weights: {keys}")
        w = state_dict[keys[0]]
        layers.append({"weight": keys[0], "bias": keys[0][:-len("weight")] + "bias",
                       "in": int(w.shape[1]), "out": int(w.shape[0])})
        i += 1


def _featurizer_from_widths(d_v, d_e, refused):
    if d_e != BOND_FEATURE_WIDTH:
        if (d_v, d_e) == RIGR_WIDTHS:
            refused.append("the RIGR atom/bond featurizer (d_v 52, d_e 2) is not supported")
        else:
            refused.append(f"d_e = {d_e} is not Chemprop's bond featurizer width "
                           f"{BOND_FEATURE_WIDTH}: the model needs extra bond features "
                           "(E_d) or a reaction (CGR) featurizer, which a compound library lacks")
        return None
    name = ATOM_FEATURIZER_BY_WIDTH.get(d_v)
    if name is None:
        refused.append(f"d_v = {d_v} matches none of Chemprop's atom featurizers (V2 72, V1 133, "
                       "organic 44): the model needs extra atom features or was trained on "
                       "reactions (CGR), which a compound library lacks")
    return name


def describe(data, path=""):
    """A plain description of the model in `data` (from load()); raises ValueError on files
    that are not Chemprop models at all. Models hpcscreen cannot run come back with reasons in
    'refused'."""
    if "hyper_parameters" in data and "state_dict" in data:
        return _describe_v2(data, path)
    if "args" in data and "state_dict" in data:
        return _describe_v1(data, path)
    raise ValueError(f"{path}: not a Chemprop model file: expected the keys hyper_parameters and "
                     f"state_dict (v2) or args and state_dict (v1), found {sorted(data)}")


def _describe_v2(data, path):
    hp = data["hyper_parameters"]
    sd = {k: v for k, v in data["state_dict"].items() if torch.is_tensor(v)}
    refused = []
    fmt = "chemprop-v2-checkpoint" if "pytorch-lightning_version" in data else "chemprop-v2"
    desc = {"format": fmt, "file": str(path)}

    if field(hp, "atom_predictor") is not None or field(hp, "bond_predictor") is not None \
            or any(k.startswith(("atom_predictor.", "bond_predictor.")) for k in sd):
        refused.append("atom/bond-level predictions (MolAtomBondMPNN) are not supported")

    mp = field(hp, "message_passing")
    mp_cls = class_name(field(mp, "cls"))
    if mp_cls == "MulticomponentMessagePassing":
        n = field(mp, "n_components")
        refused.append(f"a multicomponent model ({n} molecules or reactions per input) needs "
                       "several SMILES per record; hpcscreen screens one molecule per record")
        desc["refused"] = refused
        return desc
    if mp_cls not in ("BondMessagePassing", "AtomMessagePassing"):
        refused.append(f"message passing class {mp_cls or mp!r} is not supported")
        desc["refused"] = refused
        return desc

    w_i = sd["message_passing.W_i.weight"]
    w_h = sd["message_passing.W_h.weight"]
    w_o = sd["message_passing.W_o.weight"]
    d_h = int(w_i.shape[0])
    d_v = int(field(mp, "d_v", w_o.shape[1] - d_h))
    if mp_cls == "BondMessagePassing":
        d_e = int(field(mp, "d_e", w_i.shape[1] - d_v))
    else:
        d_e = int(field(mp, "d_e", w_h.shape[1] - d_h))
    d_vd = int(field(mp, "d_vd") or 0)
    desc["message_passing"] = {
        "kind": "bond" if mp_cls == "BondMessagePassing" else "atom",
        "depth": int(field(mp, "depth", 3)),
        "d_h": d_h, "d_v": d_v, "d_e": d_e,
        "activation": enum_text(field(mp, "activation", "relu")),
        "bias": "message_passing.W_i.bias" in sd,
        "undirected": bool(field(mp, "undirected", False)),
        "dropout": float(field(mp, "dropout", 0.0)),
    }
    _check_activation(desc["message_passing"]["activation"], refused)

    extras = {"V_d": d_vd, "E_d": 0, "x_d": 0, "extra_atom_features": 0}
    # The CLI always stores a GraphTransform; its V/E transforms are Identity unless the model
    # was trained with extra atom or bond features (which it then scales).
    graph_transform = field(mp, "graph_transform")
    for part in ("V_transform", "E_transform"):
        sub = (field(graph_transform, "_modules") or {}).get(part)
        if sub is not None and class_name(sub) != "Identity":
            refused.append(f"the model scales extra {'atom' if part[0] == 'V' else 'bond'} "
                           f"features ({part} is {class_name(sub)}): it needs descriptors a "
                           "compound library lacks")
    if d_vd:
        refused.append(f"the model needs {d_vd} extra atom descriptors per atom (V_d), which a "
                       "compound library lacks")

    desc["atom_featurizer"] = _featurizer_from_widths(d_v, d_e, refused)
    desc["atom_featurizer_source"] = (
        f"inferred from d_v = {d_v} (Chemprop does not store the featurizer in the file)")
    desc["bond_featurizer"] = "multihot" if d_e == BOND_FEATURE_WIDTH else None
    # keep_h / add_h / ignore_stereo / reorder_atoms are `chemprop predict` options, not stored
    desc["molecule"] = {"keep_h": False, "add_h": False, "source": "Chemprop's defaults"}

    agg = field(hp, "agg")
    agg_cls = class_name(field(agg, "cls"))
    agg_kinds = {"MeanAggregation": "mean", "SumAggregation": "sum", "NormAggregation": "norm"}
    desc["aggregation"] = {"kind": agg_kinds.get(agg_cls, agg_cls)}
    if agg_cls == "NormAggregation":
        desc["aggregation"]["norm"] = float(field(agg, "norm", 100.0))
    elif agg_cls not in agg_kinds:
        refused.append(f"aggregation {agg_cls or agg!r} is not supported (mean, sum, norm are)")

    desc["batch_norm"] = _batch_norm(sd, "bn.")

    pred = field(hp, "predictor")
    pred_cls = class_name(field(pred, "cls"))
    kind, n_targets = PREDICTOR_KINDS.get(pred_cls, (pred_cls, 1))
    layers = _ffn_layers(sd, "predictor.ffn.")
    if not layers:
        raise ValueError(f"{path}: no predictor.ffn weights in the state_dict")
    n_out = layers[-1]["out"]
    n_classes = int(field(pred, "n_classes") or 0) if kind.startswith("multiclass") else 0
    n_tasks = n_out // (n_targets * (n_classes or 1))
    desc["ffn"] = {"layers": [[l["in"], l["out"]] for l in layers],
                   "activation": enum_text(field(pred, "activation", "relu")),
                   "dropout": float(field(pred, "dropout", 0.0))}
    _check_activation(desc["ffn"]["activation"], refused)
    fingerprint_dim = d_h + d_vd
    extras["x_d"] = layers[0]["in"] - fingerprint_dim
    if extras["x_d"]:
        refused.append(f"the model needs {extras['x_d']} extra molecule descriptors (x_d) per "
                       "molecule, which a compound library lacks")
    desc["extra_descriptors"] = extras

    desc["predictor"] = {"kind": kind, "n_tasks": n_tasks, "n_targets": n_targets}
    if n_classes:
        desc["predictor"]["n_classes"] = n_classes
    if kind not in SUPPORTED_PREDICTORS:
        refused.append(f"predictor {pred_cls or kind!r} is not supported")

    mean = sd.get("predictor.output_transform.mean")
    scale = sd.get("predictor.output_transform.scale")
    if mean is None:
        ot = field(pred, "output_transform")
        mean, scale = module_buffer(ot, "mean"), module_buffer(ot, "scale")
    desc["output_transform"] = None if mean is None else {
        "kind": "unscale", "mean": tensor_list(mean), "scale": tensor_list(scale)}
    weights = sd.get("predictor.criterion.task_weights")
    desc["task_weights"] = None if weights is None else tensor_list(weights)
    desc["output_columns"] = _output_columns(data.get("output_columns"), refused)
    desc["refused"] = refused
    return desc


def _describe_v1(data, path):
    args = data["args"]
    sd = {k: v for k, v in data["state_dict"].items() if torch.is_tensor(v)}
    refused = []
    desc = {"format": "chemprop-v1", "file": str(path)}

    def arg(name, default=None):
        return field(args, name, default)

    if arg("reaction", False) or arg("reaction_solvent", False):
        refused.append("a reaction model (v1 --reaction) needs reaction SMILES, not molecules")
    if int(arg("number_of_molecules", 1) or 1) > 1:
        refused.append(f"a multicomponent model ({arg('number_of_molecules')} molecules per "
                       "input) needs several SMILES per record")
    if arg("is_atom_bond_targets", False):
        refused.append("atom/bond-level targets are not supported")
    if refused or "encoder.encoder.0.W_i.weight" not in sd:
        if not refused:
            refused.append("no encoder.encoder.0 weights: not a one-molecule v1 model")
        desc["refused"] = refused
        return desc

    w_i = sd["encoder.encoder.0.W_i.weight"]
    w_h = sd["encoder.encoder.0.W_h.weight"]
    w_o = sd["encoder.encoder.0.W_o.weight"]
    atom_messages = bool(arg("atom_messages", False))
    d_h = int(w_i.shape[0])
    d_v = int(w_o.shape[1] - d_h)
    d_e = int(w_h.shape[1] - d_h) if atom_messages else int(w_i.shape[1] - d_v)
    desc["message_passing"] = {
        "kind": "atom" if atom_messages else "bond",
        "depth": int(arg("depth", 3)),
        "d_h": d_h, "d_v": d_v, "d_e": d_e,
        "activation": enum_text(arg("activation", "ReLU")),
        "bias": "encoder.encoder.0.W_i.bias" in sd,
        "undirected": bool(arg("undirected", False)),
        "dropout": float(arg("dropout", 0.0)),
    }
    _check_activation(desc["message_passing"]["activation"], refused)
    if desc["message_passing"]["activation"] == "prelu":
        refused.append("PReLU in a v1 model is not supported (convert it with `chemprop convert`)")
    d_vd = int(arg("atom_descriptors_size", 0) or 0) if arg("atom_descriptors") == "descriptor" \
        else 0
    if arg("atom_descriptors") is not None:
        refused.append(f"the model needs atom descriptors ({arg('atom_descriptors')}), which a "
                       "compound library lacks")
    if arg("bond_descriptors") is not None or arg("bond_features_path") is not None:
        refused.append("the model needs extra bond features, which a compound library lacks")
    desc["atom_featurizer"] = _featurizer_from_widths(d_v, d_e, refused)
    desc["atom_featurizer_source"] = f"inferred from d_v = {d_v} (v1 files do not name it)"
    desc["bond_featurizer"] = "multihot" if d_e == BOND_FEATURE_WIDTH else None
    desc["molecule"] = {"keep_h": bool(arg("explicit_h", False)),
                        "add_h": bool(arg("adding_h", False)),
                        "source": "the file's args (explicit_h, adding_h)"}
    if arg("keeping_atom_map", False):
        desc["molecule"]["keep_atom_map"] = True

    aggregation = str(arg("aggregation", "mean"))
    desc["aggregation"] = {"kind": aggregation}
    if aggregation == "norm":
        desc["aggregation"]["norm"] = float(arg("aggregation_norm", 100))
    elif aggregation not in ("mean", "sum"):
        refused.append(f"aggregation {aggregation!r} is not supported")
    desc["batch_norm"] = None

    prefix = "readout." if "readout.1.weight" in sd else "ffn."
    n_layers = int(arg("ffn_num_layers", 2))
    layers = []
    for i in range(n_layers):
        w = sd[f"{prefix}{i * 3 + 1}.weight"]
        layers.append([int(w.shape[1]), int(w.shape[0])])
    desc["ffn"] = {"layers": layers, "activation": desc["message_passing"]["activation"],
                   "dropout": float(arg("dropout", 0.0)),
                   "v1_prefix": prefix}

    dataset_type = str(arg("dataset_type", "regression"))
    loss = str(arg("loss_function", "") or "")
    n_tasks = int(arg("num_tasks", 1))
    n_classes = int(arg("multiclass_num_classes", 3)) if dataset_type == "multiclass" else 0
    if dataset_type == "regression":
        kind = {"mve": "regression-mve", "evidential": "regression-evidential"}.get(
            loss, "regression")
    elif dataset_type == "classification":
        kind = "classification-dirichlet" if loss == "dirichlet" else "classification"
    elif dataset_type == "multiclass":
        kind = "multiclass-dirichlet" if loss == "dirichlet" else "multiclass"
    else:
        kind = dataset_type
        refused.append(f"dataset type {dataset_type!r} is not supported")
    n_targets = {"regression-mve": 2, "regression-evidential": 4,
                 "classification-dirichlet": 2}.get(kind, 1)
    desc["predictor"] = {"kind": kind, "n_tasks": n_tasks, "n_targets": n_targets}
    if n_classes:
        desc["predictor"]["n_classes"] = n_classes
    if layers[-1][1] != n_tasks * n_targets * (n_classes or 1):
        refused.append(f"the last FFN layer has {layers[-1][1]} outputs; {kind} with {n_tasks} "
                       f"tasks needs {n_tasks * n_targets * (n_classes or 1)}")

    x_d = layers[0][0] - d_h - d_vd
    desc["extra_descriptors"] = {"V_d": d_vd, "E_d": 0, "x_d": x_d, "extra_atom_features": 0}
    if x_d or arg("features_generator") or arg("features_path"):
        refused.append(f"the model needs {x_d} extra molecule features (features_generator "
                       f"{arg('features_generator')}, features_path {arg('features_path')})")

    scaler = data.get("data_scaler")
    if dataset_type == "regression" and scaler is not None:
        means = field(scaler, "means")
        stds = field(scaler, "stds")
        desc["output_transform"] = {"kind": "unscale",
                                    "mean": [float(v) for v in np.asarray(means).reshape(-1)],
                                    "scale": [float(v) for v in np.asarray(stds).reshape(-1)]}
    else:
        desc["output_transform"] = None
    weights = arg("target_weights")
    desc["task_weights"] = [float(w) for w in weights] if weights is not None else None
    names = arg("task_names")
    desc["output_columns"] = _output_columns(list(names) if names else None, refused)
    desc["refused"] = refused
    return desc


def weights(data, desc):
    """The model's tensors under names that do not depend on the file's version:
    W_i/W_h/W_o.weight|bias, tau.weight (PReLU), bn.*, ffn.{i}.weight|bias, ffn_act.weight
    (PReLU), output.mean|scale; float32."""
    sd = {k: v for k, v in data["state_dict"].items() if torch.is_tensor(v)}
    out = {}
    if desc["format"] == "chemprop-v1":
        mp_prefix = "encoder.encoder.0."
        for i, key in enumerate(f"{desc['ffn']['v1_prefix']}{j * 3 + 1}"
                                for j in range(len(desc["ffn"]["layers"]))):
            out[f"ffn.{i}.weight"] = sd[f"{key}.weight"]
            out[f"ffn.{i}.bias"] = sd[f"{key}.bias"]
    else:
        mp_prefix = "message_passing."
        for i, layer in enumerate(_ffn_layers(sd, "predictor.ffn.")):
            out[f"ffn.{i}.weight"] = sd[layer["weight"]]
            out[f"ffn.{i}.bias"] = sd[layer["bias"]]
        act = [k for k in sd if k.startswith("predictor.ffn.") and k.endswith(".0.weight")
               and sd[k].dim() == 1]
        if act:
            out["ffn_act.weight"] = sd[act[0]]
        for name in ("weight", "bias", "running_mean", "running_var"):
            if f"bn.{name}" in sd:
                out[f"bn.{name}"] = sd[f"bn.{name}"]
    for name in ("W_i.weight", "W_i.bias", "W_h.weight", "W_h.bias", "W_o.weight", "W_o.bias"):
        if mp_prefix + name in sd:
            out[name] = sd[mp_prefix + name]
    for key in (mp_prefix + "tau.weight", mp_prefix + "act_func.weight"):
        if key in sd:
            out["tau.weight"] = sd[key]
    transform = desc.get("output_transform")
    if transform is not None:
        out["output.mean"] = torch.tensor(transform["mean"], dtype=torch.float64)
        out["output.scale"] = torch.tensor(transform["scale"], dtype=torch.float64)
    return {k: v.detach().to(torch.float32).clone() for k, v in out.items()}


def column_names(desc, task_names=None):
    """hpcscreen's output columns, in the order the imported model writes them:
    regression: one per task; regression-mve: the means, then `<task>_var`;
    regression-evidential: the means, then `<task>_unc_total`, `_unc_aleatoric`,
    `_unc_epistemic`; regression-quantile: the means, then `<task>_interval`;
    classification: the probabilities; classification-dirichlet: the probabilities, then
    `<task>_unc`; multiclass(-dirichlet): `<task>_class_<k>`, task-major."""
    pred = desc["predictor"]
    n_tasks = pred["n_tasks"]
    names = list(task_names or desc.get("output_columns") or [f"pred_{i}" for i in range(n_tasks)])
    if len(names) != n_tasks:
        raise ValueError(f"{len(names)} task names given for a model of {n_tasks} tasks")
    extra = {"regression-mve": ["_var"],
             "regression-evidential": ["_unc_total", "_unc_aleatoric", "_unc_epistemic"],
             "regression-quantile": ["_interval"],
             "classification-dirichlet": ["_unc"]}.get(pred["kind"], [])
    if pred["kind"].startswith("multiclass"):
        return [f"{n}_class_{k}" for n in names for k in range(pred["n_classes"])]
    return names + [n + suffix for suffix in extra for n in names]


def _batch_norm(sd, prefix):
    if f"{prefix}running_mean" not in sd:
        return None
    return {"eps": 1e-5, "affine": f"{prefix}weight" in sd}


def _check_activation(name, refused):
    if name not in ACTIVATIONS:
        refused.append(f"activation {name!r} is not supported ({', '.join(sorted(ACTIVATIONS))} "
                       "are)")


def _output_columns(columns, refused):
    if columns is None:
        return None
    if isinstance(columns, (tuple, list)) and columns and isinstance(columns[0], (list, tuple)) \
            or isinstance(columns, tuple):
        refused.append("output_columns holds molecule/atom/bond column groups (MolAtomBondMPNN)")
        return None
    return [str(c) for c in columns]


def read(path):
    """load() and describe() in one step."""
    return describe(load(path), path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        desc = read(argv[0])
    except (ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    json.dump(desc, sys.stdout, indent=2)
    print()
    return 1 if desc.get("refused") else 0


if __name__ == "__main__":
    sys.exit(main())
