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
import re
import sys
import types
import zipfile

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


class _SizedRecords:
    """The zip reader torch.load reads tensors from, refusing a record whose size is not its
    tensor's: torch reads the bytes a tensor needs whatever its record holds (past a short one)."""

    def __init__(self, reader, sizes):
        self._reader, self._sizes = reader, sizes

    def get_storage_from_record(self, name, nbytes, dtype):
        held = self._sizes.get(name)
        if held != nbytes:
            raise ValueError(f"damaged: the record {name} holds {held} bytes, its tensor needs {nbytes}")
        return self._reader.get_storage_from_record(name, nbytes, dtype)

    def __getattr__(self, name):
        return getattr(self._reader, name)


def restricted_torch_load(path):
    # torch.load(pickle_module=...) is what this does, but torch 1.13 (Debian 12) replaces any
    # pickle_module with the standard pickle unless weights_only is set, and weights_only refuses
    # every Chemprop class. Its two readers take the module as given.
    serialization = torch.serialization
    with open(path, "rb") as f:
        if serialization._is_zipfile(f):
            with zipfile.ZipFile(path) as z:  # record names below the archive's own folder
                sizes = {i.filename.split("/", 1)[-1]: i.file_size for i in z.infolist()}
            with serialization._open_zipfile_reader(f) as archive:
                return serialization._load(_SizedRecords(archive, sizes), "cpu", restricted_pickle,
                                           encoding="utf-8")
        return serialization._legacy_load(f, "cpu", restricted_pickle, encoding="utf-8")


def _tensors(obj, seen=None):
    """Every tensor reachable from obj (dicts, lists, tuples, Pickled records and their state)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if torch.is_tensor(obj):
        yield obj
        return
    if isinstance(obj, dict):
        children = list(obj.values())
        if isinstance(obj, Pickled):
            children += [obj.state, obj.args, obj.kwargs, obj.list_items]
    elif isinstance(obj, (list, tuple)):
        children = obj
    else:
        return
    for child in children:
        yield from _tensors(child, seen)


def check_archive(path, data):
    """torch.load trusts a zip file's records: a damaged one (its CRC wrong) or one shorter
    than its tensor (torch then reads past it) gives wrong weights without an error. The
    records must pass their CRCs and hold exactly the bytes of the tensors' storages."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
        if bad is not None:
            raise ValueError(f"damaged: the record {bad} fails its CRC check")
        held = sum(i.file_size for i in z.infolist() if re.fullmatch(r"[^/]+/data/\d+", i.filename))
    storages = {}
    for t in _tensors(data):
        storage = t.storage()
        storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
    need = sum(storages.values())
    if need != held:
        raise ValueError(f"damaged: its tensors take {need} bytes and its data records "
                         f"hold {held}")


def load(path):
    """The file's top-level dict, tensors on the CPU, other objects as Pickled records."""
    try:
        data = restricted_torch_load(path)
    except Exception as e:
        raise ValueError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from e
    check_archive(path, data)
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

# Ranges of the hyper-parameters a file may state ("within reason": a file outside them is
# malformed or hostile, not a model anyone trained).
MAX_DEPTH = 50
MAX_WIDTH = 1 << 16          # d_v, d_e, d_h, FFN widths
MAX_FFN_LAYERS = 50
MAX_TASKS = 1 << 16
MAX_CLASSES = 1 << 12

_MISSING = object()


def _type_name(value):
    return class_name(value) or type(value).__name__


def _hp(obj, where, key, default=_MISSING):
    value = field(obj, key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise ValueError(f"{where}.{key} is missing")
        return default
    return value


def _hp_int(obj, where, key, lo, hi, default=_MISSING):
    value = _hp(obj, where, key, default)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{where}.{key}: expected an integer in {lo}..{hi}, found {value!r} "
                         f"({_type_name(value)})")
    if not lo <= value <= hi:
        raise ValueError(f"{where}.{key}: expected an integer in {lo}..{hi}, found {value}")
    return int(value)


def _hp_bool(obj, where, key, default=_MISSING):
    value = _hp(obj, where, key, default)
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}.{key}: expected true or false (a bool), found {value!r} "
                         f"({_type_name(value)})")
    return bool(value)


def _hp_float(obj, where, key, default=_MISSING, lo=None, hi=None, lo_open=False,
              hi_open=False, what=None):
    value = _hp(obj, where, key, default)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise ValueError(f"{where}.{key}: expected a number, found {value!r} "
                         f"({_type_name(value)})")
    value = float(value)
    bad = not np.isfinite(value) \
        or (lo is not None and (value <= lo if lo_open else value < lo)) \
        or (hi is not None and (value >= hi if hi_open else value > hi))
    if bad:
        raise ValueError(f"{where}.{key}: expected {what or 'a finite number'}, found {value!r}")
    return value


def _state_dict(data, path):
    sd = data["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"state_dict: expected a dict of tensors, found {_type_name(sd)}")
    for key, value in sd.items():
        if not isinstance(key, str):
            raise ValueError(f"state_dict: expected string keys, found {key!r}")
        if not torch.is_tensor(value):
            raise ValueError(f"state_dict[{key!r}]: expected a tensor, found {_type_name(value)}")
    return dict(sd)


def _check_state_dict(sd, expected, optional=(), optional_patterns=()):
    """Chemprop's strict load_state_dict: exactly the keys in `expected` (key -> shape), plus
    any of `optional` (key -> shape, or a tuple of allowed shapes) or matching an optional
    pattern (regex -> allowed shapes); every shape as given; every float finite."""
    optional = dict(optional)
    patterns = [(re.compile(p), shapes) for p, shapes in optional_patterns]

    def allowed_shapes(key):
        if key in expected:
            return [expected[key]]
        if key in optional:
            s = optional[key]
            return list(s) if s and isinstance(s[0], tuple) else [s]
        for pattern, shapes in patterns:
            if pattern.fullmatch(key):
                return list(shapes)
        return None

    missing = [k for k in expected if k not in sd]
    if missing:
        raise ValueError(f"state_dict is missing {', '.join(missing)} (the hyper-parameters "
                         "describe a model that has them; Chemprop's load_state_dict refuses "
                         "the file too)")
    unexpected = [k for k in sd if allowed_shapes(k) is None]
    if unexpected:
        raise ValueError(f"state_dict has unexpected keys {', '.join(unexpected)} (the "
                         "hyper-parameters describe a model without them; Chemprop's "
                         "load_state_dict refuses the file too)")
    for key, value in sd.items():
        shapes = allowed_shapes(key)
        if tuple(value.shape) not in [tuple(s) for s in shapes]:
            want = " or ".join(str(list(s)) for s in shapes)
            raise ValueError(f"state_dict[{key!r}]: expected shape {want} from the "
                             f"hyper-parameters, found {list(value.shape)}")
        if key.endswith("num_batches_tracked"):
            continue
        if not value.is_floating_point():
            raise ValueError(f"state_dict[{key!r}]: expected floating-point weights, found "
                             f"{value.dtype}")
        if not bool(torch.isfinite(value).all()):
            n = int((~torch.isfinite(value)).sum())
            raise ValueError(f"state_dict[{key!r}]: {n} non-finite value(s) (NaN or inf); "
                             "the model would predict NaN")
        if key.endswith("running_var") and bool((value < 0).any()):
            raise ValueError(f"state_dict[{key!r}]: {int((value < 0).sum())} negative "
                             "variance(s); batch normalisation would take their square root "
                             "and the model would predict NaN")


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
    """A plain description of the model in `data` (from load()); raises ValueError, naming the
    field, on files that are not Chemprop models or that Chemprop itself would not load
    (missing or unexpected state_dict keys, shapes that contradict the hyper-parameters,
    hyper-parameters of the wrong type or out of range, non-finite weights). Models hpcscreen
    cannot run come back with reasons in 'refused'."""
    if "hyper_parameters" in data and "state_dict" in data:
        return _describe_v2(data, path)
    if "args" in data and "state_dict" in data:
        return _describe_v1(data, path)
    raise ValueError(f"{path}: not a Chemprop model file: expected the keys hyper_parameters and "
                     f"state_dict (v2) or args and state_dict (v1), found {sorted(map(str, data))}")


def _v2_ffn_keys(n_layers):
    """Chemprop's MLP.build: block 0 is Sequential(Linear); blocks 1.. are
    Sequential(activation, Dropout, Linear)."""
    return [f"predictor.ffn.{i}.{0 if i == 0 else 2}" for i in range(n_layers + 1)]


def _describe_v2(data, path):
    hp = data["hyper_parameters"]
    if not isinstance(hp, dict):
        raise ValueError(f"hyper_parameters: expected a dict, found {_type_name(hp)}")
    sd = _state_dict(data, path)
    refused = []
    fmt = "chemprop-v2-checkpoint" if "pytorch-lightning_version" in data else "chemprop-v2"
    desc = {"format": fmt, "file": str(path)}

    if field(hp, "atom_predictor") is not None or field(hp, "bond_predictor") is not None \
            or any(k.startswith(("atom_predictor.", "bond_predictor.")) for k in sd):
        refused.append("atom/bond-level predictions (MolAtomBondMPNN) are not supported")

    mp = _hp(hp, "hyper_parameters", "message_passing")
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

    where = "hyper_parameters.message_passing"
    d_h = _hp_int(mp, where, "d_h", 1, MAX_WIDTH)
    d_v = _hp_int(mp, where, "d_v", 1, MAX_WIDTH)
    d_e = _hp_int(mp, where, "d_e", 1, MAX_WIDTH)
    d_vd = field(mp, "d_vd")
    d_vd = 0 if d_vd is None else _hp_int(mp, where, "d_vd", 0, MAX_WIDTH)
    bias = _hp_bool(mp, where, "bias")
    desc["message_passing"] = {
        "kind": "bond" if mp_cls == "BondMessagePassing" else "atom",
        "depth": _hp_int(mp, where, "depth", 1, MAX_DEPTH),
        "d_h": d_h, "d_v": d_v, "d_e": d_e,
        "activation": enum_text(_hp(mp, where, "activation")),
        "bias": bias,
        "undirected": _hp_bool(mp, where, "undirected"),
        "dropout": _hp_float(mp, where, "dropout", 0.0, lo=0.0, hi=1.0, hi_open=True,
                             what="a number in [0, 1)"),
    }
    _check_activation(desc["message_passing"]["activation"], refused, where + ".activation")

    extras = {"V_d": d_vd, "E_d": 0, "x_d": 0, "extra_atom_features": 0}
    # The CLI always stores a GraphTransform; its V/E transforms are Identity unless the model
    # was trained with extra atom or bond features (which it then scales).
    graph_transform = field(mp, "graph_transform")
    modules = field(graph_transform, "_modules") or {}
    for part in ("V_transform", "E_transform"):
        sub = modules.get(part) if isinstance(modules, dict) else None
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
    default = "Chemprop's default (v2 files do not store it)"
    desc["molecule"] = {"keep_h": False, "add_h": False,
                        "source": {"keep_h": default, "add_h": default}}

    agg = _hp(hp, "hyper_parameters", "agg")
    agg_cls = class_name(field(agg, "cls"))
    agg_kinds = {"MeanAggregation": "mean", "SumAggregation": "sum", "NormAggregation": "norm"}
    desc["aggregation"] = {"kind": agg_kinds.get(agg_cls, agg_cls)}
    if agg_cls == "NormAggregation":
        desc["aggregation"]["norm"] = _hp_float(
            agg, "hyper_parameters.agg", "norm", 100.0, lo=0.0, lo_open=True,
            what="a finite number > 0 (the sum is divided by it)")
    elif agg_cls not in agg_kinds:
        refused.append(f"aggregation {agg_cls or agg!r} is not supported (mean, sum, norm are)")

    batch_norm = _hp_bool(hp, "hyper_parameters", "batch_norm", False)
    desc["batch_norm"] = {"eps": 1e-5, "affine": True} if batch_norm else None

    where = "hyper_parameters.predictor"
    pred = _hp(hp, "hyper_parameters", "predictor")
    pred_cls = class_name(field(pred, "cls"))
    kind, n_targets = PREDICTOR_KINDS.get(pred_cls, (pred_cls, 1))
    if kind not in SUPPORTED_PREDICTORS:
        refused.append(f"predictor {pred_cls or kind!r} is not supported")
        desc["refused"] = refused
        return desc
    n_tasks = _hp_int(pred, where, "n_tasks", 1, MAX_TASKS)
    n_classes = _hp_int(pred, where, "n_classes", 2, MAX_CLASSES) \
        if kind.startswith("multiclass") else 0
    input_dim = _hp_int(pred, where, "input_dim", 1, MAX_WIDTH)
    n_layers = _hp_int(pred, where, "n_layers", 0, MAX_FFN_LAYERS)
    hidden_dim = _hp_int(pred, where, "hidden_dim", 1, MAX_WIDTH) if n_layers else None
    n_out = n_tasks * n_targets * (n_classes or 1)
    dims = [input_dim] + [hidden_dim] * n_layers + [n_out]
    desc["ffn"] = {"layers": [[a, b] for a, b in zip(dims[:-1], dims[1:])],
                   "activation": enum_text(_hp(pred, where, "activation")),
                   "dropout": _hp_float(pred, where, "dropout", 0.0, lo=0.0, hi=1.0,
                                        hi_open=True, what="a number in [0, 1)")}
    _check_activation(desc["ffn"]["activation"], refused, where + ".activation")
    extras["x_d"] = input_dim - d_h - d_vd
    if extras["x_d"] > 0:
        refused.append(f"the model needs {extras['x_d']} extra molecule descriptors (x_d) per "
                       "molecule, which a compound library lacks")
    elif extras["x_d"] < 0:
        raise ValueError(f"{where}.input_dim: expected at least d_h + d_vd = {d_h + d_vd} (the "
                         f"fingerprint width), found {input_dim}")
    desc["extra_descriptors"] = extras

    desc["predictor"] = {"kind": kind, "n_tasks": n_tasks, "n_targets": n_targets}
    if n_classes:
        desc["predictor"]["n_classes"] = n_classes

    transform = field(pred, "output_transform", _MISSING)
    transform_cls = "" if transform is _MISSING or transform is None else class_name(transform)
    if transform_cls not in ("", "Identity", "UnscaleTransform"):
        refused.append(f"{where}.output_transform {transform_cls} is not supported")
    desc["output_columns"] = _output_columns(data.get("output_columns"), refused, n_tasks)
    if refused:
        desc["refused"] = refused
        return desc

    # Chemprop's strict load_state_dict: exactly these keys, with these shapes.
    expected = {}
    mp_in = d_v + d_e if desc["message_passing"]["kind"] == "bond" else d_v
    mp_h = d_h if desc["message_passing"]["kind"] == "bond" else d_h + d_e
    expected["message_passing.W_i.weight"] = (d_h, mp_in)
    if bias:
        expected["message_passing.W_i.bias"] = (d_h,)
    expected["message_passing.W_h.weight"] = (d_h, mp_h)
    if bias:
        expected["message_passing.W_h.bias"] = (d_h,)
    expected["message_passing.W_o.weight"] = (d_h, d_v + d_h)
    expected["message_passing.W_o.bias"] = (d_h,)
    if desc["message_passing"]["activation"] == "prelu":
        expected["message_passing.tau.weight"] = (1,)
    optional = {}
    if batch_norm:
        for name in ("weight", "bias", "running_mean", "running_var"):
            expected[f"bn.{name}"] = (d_h,)
        optional["bn.num_batches_tracked"] = ()
    for i, (key, (d_in, d_out)) in enumerate(zip(_v2_ffn_keys(n_layers), desc["ffn"]["layers"])):
        if i and desc["ffn"]["activation"] == "prelu":
            expected[f"predictor.ffn.{i}.0.weight"] = (1,)
        expected[key + ".weight"] = (d_out, d_in)
        expected[key + ".bias"] = (d_out,)
    unscale = transform_cls == "UnscaleTransform" or (
        transform is _MISSING and "predictor.output_transform.mean" in sd)
    if unscale:
        expected["predictor.output_transform.mean"] = (1, n_tasks)
        expected["predictor.output_transform.scale"] = (1, n_tasks)
    task_weight_shapes = ((1, n_tasks), (1, 1))
    optional["predictor.criterion.task_weights"] = task_weight_shapes
    _check_state_dict(sd, expected, optional,
                      [(r"metrics\.[0-9]+\.task_weights", task_weight_shapes)])
    prelus = [f"predictor.ffn.{i}.0.weight" for i in range(1, n_layers + 1)
              if f"predictor.ffn.{i}.0.weight" in expected]
    for key in prelus[1:]:
        if not torch.equal(sd[key], sd[prelus[0]]):
            raise ValueError(f"state_dict[{key!r}] differs from {prelus[0]!r}: Chemprop's FFN "
                             "shares one PReLU between its blocks")

    if unscale:
        desc["output_transform"] = {
            "kind": "unscale", "mean": tensor_list(sd["predictor.output_transform.mean"]),
            "scale": tensor_list(sd["predictor.output_transform.scale"])}
    else:
        desc["output_transform"] = None
    weights = sd.get("predictor.criterion.task_weights")
    desc["task_weights"] = None if weights is None else tensor_list(weights)
    desc["refused"] = refused
    return desc


V1_ACTIVATIONS = {"ReLU": "relu", "LeakyReLU": "leakyrelu", "PReLU": "prelu", "tanh": "tanh",
                  "SELU": "selu", "ELU": "elu"}


def _v1_str(args, where, key, default=_MISSING, allow_none=False):
    value = _hp(args, where, key, default)
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: expected a string, found {value!r} "
                         f"({_type_name(value)})")
    return value


def _describe_v1(data, path):
    args = data["args"]
    if not isinstance(args, dict):
        raise ValueError(f"args: expected a dict or Namespace, found {_type_name(args)}")
    sd = _state_dict(data, path)
    refused = []
    desc = {"format": "chemprop-v1", "file": str(path)}
    where = "args"

    def arg(name, default=None):
        return field(args, name, default)

    if arg("reaction", False) or arg("reaction_solvent", False):
        refused.append("a reaction model (v1 --reaction) needs reaction SMILES, not molecules")
    n_mol = _hp_int(args, where, "number_of_molecules", 1, 1000, 1)
    if n_mol > 1:
        refused.append(f"a multicomponent model ({n_mol} molecules per input) needs several "
                       "SMILES per record")
    if arg("is_atom_bond_targets", False):
        refused.append("atom/bond-level targets are not supported")
    if refused or "encoder.encoder.0.W_i.weight" not in sd:
        if not refused:
            refused.append("no encoder.encoder.0 weights: not a one-molecule v1 model")
        desc["refused"] = refused
        return desc

    d_h = _hp_int(args, where, "hidden_size", 1, MAX_WIDTH)
    depth = _hp_int(args, where, "depth", 1, MAX_DEPTH)
    bias = _hp_bool(args, where, "bias", False)
    atom_messages = _hp_bool(args, where, "atom_messages", False)
    activation_name = _v1_str(args, where, "activation", "ReLU")
    if activation_name not in V1_ACTIVATIONS:
        raise ValueError(f"{where}.activation: expected one of {', '.join(V1_ACTIVATIONS)}, "
                         f"found {activation_name!r}")
    # v1 stores no feature widths: they follow from W_o (d_v + d_h inputs) and W_i / W_h.
    for key in ("W_i.weight", "W_h.weight", "W_o.weight"):
        full = "encoder.encoder.0." + key
        if full not in sd:
            raise ValueError(f"state_dict is missing {full}")
        if sd[full].dim() != 2 or sd[full].shape[0] != d_h:
            raise ValueError(f"state_dict[{full!r}]: expected shape [{d_h}, ...] (hidden_size "
                             f"{d_h}), found {list(sd[full].shape)}")
    w_i = sd["encoder.encoder.0.W_i.weight"]
    w_h = sd["encoder.encoder.0.W_h.weight"]
    w_o = sd["encoder.encoder.0.W_o.weight"]
    d_v = int(w_o.shape[1] - d_h)
    d_e = int(w_h.shape[1] - d_h) if atom_messages else int(w_i.shape[1] - d_v)
    if d_v < 1 or d_e < 1:
        raise ValueError(f"state_dict['encoder.encoder.0.W_o.weight'] / W_i / W_h: widths "
                         f"{list(w_o.shape)}, {list(w_i.shape)}, {list(w_h.shape)} leave no atom "
                         f"or bond features beside hidden_size {d_h}")
    desc["message_passing"] = {
        "kind": "atom" if atom_messages else "bond",
        "depth": depth,
        "d_h": d_h, "d_v": d_v, "d_e": d_e,
        "activation": V1_ACTIVATIONS[activation_name],
        "bias": bias,
        "undirected": _hp_bool(args, where, "undirected", False),
        "dropout": _hp_float(args, where, "dropout", 0.0, lo=0.0, hi=1.0, hi_open=True,
                             what="a number in [0, 1)"),
    }
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
    desc["molecule"] = {
        "keep_h": _hp_bool(args, where, "explicit_h", False),
        "add_h": _hp_bool(args, where, "adding_h", False),
        "source": {"keep_h": "the file's args (explicit_h)" if field(args, "explicit_h") is not None
                   else "Chemprop v1's default (the file's args lack explicit_h)",
                   "add_h": "the file's args (adding_h)" if field(args, "adding_h") is not None
                   else "Chemprop v1's default (the file's args lack adding_h)"}}
    if _hp_bool(args, where, "keeping_atom_map", False):
        desc["molecule"]["keep_atom_map"] = True

    aggregation = _v1_str(args, where, "aggregation", "mean")
    desc["aggregation"] = {"kind": aggregation}
    if aggregation == "norm":
        desc["aggregation"]["norm"] = _hp_float(
            args, where, "aggregation_norm", 100.0, lo=0.0, lo_open=True,
            what="a finite number > 0 (the sum is divided by it)")
    elif aggregation not in ("mean", "sum"):
        refused.append(f"aggregation {aggregation!r} is not supported")
    desc["batch_norm"] = None

    dataset_type = _v1_str(args, where, "dataset_type")
    loss = _v1_str(args, where, "loss_function", "", allow_none=True) or ""
    n_tasks = _hp_int(args, where, "num_tasks", 1, MAX_TASKS)
    n_classes = _hp_int(args, where, "multiclass_num_classes", 2, MAX_CLASSES, 3) \
        if dataset_type == "multiclass" else 0
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

    prefix = "readout." if any(k.startswith("readout.") for k in sd) else "ffn."
    n_layers = _hp_int(args, where, "ffn_num_layers", 1, MAX_FFN_LAYERS, 2)
    ffn_hidden = field(args, "ffn_hidden_size")
    ffn_hidden = d_h if ffn_hidden is None else _hp_int(args, where, "ffn_hidden_size", 1,
                                                         MAX_WIDTH)
    first = f"{prefix}1.weight"
    if first not in sd:
        raise ValueError(f"state_dict is missing {first}")
    if sd[first].dim() != 2:
        raise ValueError(f"state_dict[{first!r}]: expected a matrix, found shape "
                         f"{list(sd[first].shape)}")
    first_in = int(sd[first].shape[1])
    x_d = first_in - d_h - d_vd
    n_out = n_tasks * n_targets * (n_classes or 1)
    dims = [first_in] + [ffn_hidden] * (n_layers - 1) + [n_out]
    desc["ffn"] = {"layers": [[a, b] for a, b in zip(dims[:-1], dims[1:])],
                   "activation": desc["message_passing"]["activation"],
                   "dropout": desc["message_passing"]["dropout"],
                   "v1_prefix": prefix}
    desc["extra_descriptors"] = {"V_d": d_vd, "E_d": 0, "x_d": x_d, "extra_atom_features": 0}
    if x_d or arg("features_generator") or arg("features_path"):
        refused.append(f"the model needs {x_d} extra molecule features (features_generator "
                       f"{arg('features_generator')}, features_path {arg('features_path')})")
    names = arg("task_names")
    if names is not None and not isinstance(names, (list, tuple)):
        raise ValueError(f"args.task_names: expected a list of names, found {_type_name(names)}")
    desc["output_columns"] = _output_columns(list(names) if names else None, refused, n_tasks,
                                             "args.task_names")
    if refused:
        desc["refused"] = refused
        return desc

    expected = {}
    mp_prefix = "encoder.encoder.0."
    expected[mp_prefix + "W_i.weight"] = (d_h, d_v if atom_messages else d_v + d_e)
    if bias:
        expected[mp_prefix + "W_i.bias"] = (d_h,)
    expected[mp_prefix + "W_h.weight"] = (d_h, d_h + d_e if atom_messages else d_h)
    if bias:
        expected[mp_prefix + "W_h.bias"] = (d_h,)
    expected[mp_prefix + "W_o.weight"] = (d_h, d_v + d_h)
    expected[mp_prefix + "W_o.bias"] = (d_h,)
    for i, (d_in, d_out) in enumerate(desc["ffn"]["layers"]):
        expected[f"{prefix}{i * 3 + 1}.weight"] = (d_out, d_in)
        expected[f"{prefix}{i * 3 + 1}.bias"] = (d_out,)
    _check_state_dict(sd, expected, {mp_prefix + "cached_zero_vector": (d_h,)})

    scaler = data.get("data_scaler")
    if dataset_type == "regression" and scaler is not None:
        desc["output_transform"] = {"kind": "unscale",
                                    "mean": _v1_scaler(scaler, "means", n_tasks),
                                    "scale": _v1_scaler(scaler, "stds", n_tasks)}
    else:
        desc["output_transform"] = None
    weights = arg("target_weights")
    if weights is not None:
        try:
            weights = [float(w) for w in weights]
        except (TypeError, ValueError) as e:
            raise ValueError(f"args.target_weights: expected {n_tasks} numbers, found "
                             f"{weights!r}") from e
        if len(weights) != n_tasks:
            raise ValueError(f"args.target_weights: expected {n_tasks} numbers (num_tasks), "
                             f"found {len(weights)}")
    desc["task_weights"] = weights
    desc["refused"] = refused
    return desc


def _v1_scaler(scaler, key, n_tasks):
    values = field(scaler, key)
    if values is None:
        raise ValueError(f"data_scaler.{key} is missing")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"data_scaler.{key}: expected {n_tasks} numbers, found "
                         f"{values!r}") from e
    if array.shape != (n_tasks,):
        raise ValueError(f"data_scaler.{key}: expected shape [{n_tasks}] (num_tasks), found "
                         f"{list(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"data_scaler.{key}: non-finite values {array.tolist()}")
    return [float(v) for v in array]


def weights(data, desc):
    """The model's tensors under names that do not depend on the file's version:
    W_i/W_h/W_o.weight|bias, tau.weight (PReLU), bn.*, ffn.{i}.weight|bias, ffn_act.weight
    (PReLU), output.mean|scale; float32. `desc` is describe()'s, which checked every key."""
    sd = {k: v for k, v in data["state_dict"].items() if torch.is_tensor(v)}
    out = {}
    n_layers = len(desc["ffn"]["layers"])
    if desc["format"] == "chemprop-v1":
        mp_prefix = "encoder.encoder.0."
        keys = [f"{desc['ffn']['v1_prefix']}{j * 3 + 1}" for j in range(n_layers)]
    else:
        mp_prefix = "message_passing."
        keys = _v2_ffn_keys(n_layers - 1)
        if "predictor.ffn.1.0.weight" in sd:
            out["ffn_act.weight"] = sd["predictor.ffn.1.0.weight"]
        for name in ("weight", "bias", "running_mean", "running_var"):
            if f"bn.{name}" in sd:
                out[f"bn.{name}"] = sd[f"bn.{name}"]
    for i, key in enumerate(keys):
        out[f"ffn.{i}.weight"] = sd[f"{key}.weight"]
        out[f"ffn.{i}.bias"] = sd[f"{key}.bias"]
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


def _check_activation(name, refused, where="activation"):
    if name not in ACTIVATIONS:
        refused.append(f"{where} {name!r} is not supported ({', '.join(sorted(ACTIVATIONS))} "
                       "are)")


def _output_columns(columns, refused, n_tasks, where="output_columns"):
    if columns is None:
        return None
    if isinstance(columns, (tuple, list)) and columns and isinstance(columns[0], (list, tuple)) \
            or isinstance(columns, tuple):
        refused.append("output_columns holds molecule/atom/bond column groups (MolAtomBondMPNN)")
        return None
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ValueError(f"{where}: expected a list of task names, found {columns!r}")
    if len(columns) != n_tasks:
        raise ValueError(f"{where}: expected {n_tasks} task names (n_tasks), found "
                         f"{len(columns)}: {columns}")
    return list(columns)


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
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    json.dump(desc, sys.stdout, indent=2)
    print()
    return 1 if desc.get("refused") else 0


if __name__ == "__main__":
    sys.exit(main())
