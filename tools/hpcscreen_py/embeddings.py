"""A run's embeddings (hpcscreen annotate --embeddings) in Python, with h5py and numpy alone:

    from hpcscreen_py import embeddings
    ids, X = embeddings.load("RUN")                       # per sequence: X is [n, H]
    ids, per_res = embeddings.load("RUN", "per-residue")  # a list of [L_i, H] arrays
    v = embeddings.get("RUN", "sp|P69905|HBA_HUMAN")      # one id: [H] (or [L, H] per residue)

Records are in library order (shard, then row); rejected records are absent (see rejects.csv).
Values keep the run's dtype (float16 by default); `.astype("float32")` before arithmetic that
needs it. The layout is data_schemas/annotations.md."""
import json
import os

import h5py
import numpy as np

LEVELS = {"per-sequence": "embedding_per_sequence", "per-residue": "embedding_per_residue"}


def _manifest(run):
    with open(os.path.join(run, "annotations.json")) as f:
        m = json.load(f)
    if m.get("output_level") != "embedding":
        raise ValueError(f"{run}: output_level is {m.get('output_level')!r}, not 'embedding': no embeddings in this run")
    return m


def _files(run, level):
    if level not in LEVELS:
        raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
    m = _manifest(run)
    if not m["embeddings"]["per_" + level.split("-")[1]]:
        raise ValueError(f"{run} has no {level} embeddings")
    return sorted(m["files"], key=lambda f: (f["shard"], f["row_begin"]))


def _ids(h):
    data, off = h["id/bytes"][()].tobytes(), h["id/offsets"][()]
    return [data[off[i]:off[i + 1]].decode("utf-8", "surrogateescape") for i in range(len(off) - 1)]


def load(run, level="per-sequence"):
    """(ids, values): per-sequence values is one [n, H] array; per-residue a list of n arrays
    [L_i, H] (views into one [R, H] array read per chunk file)."""
    ids, parts = [], []
    for f in _files(run, level):
        with h5py.File(os.path.join(run, f["file"]), "r") as h:
            ids += _ids(h)
            x = h[LEVELS[level]][()]
            if level == "per-sequence":
                parts.append(x)
            else:
                o = h["residue_offsets"][()]
                parts += [x[o[i]:o[i + 1]] for i in range(len(o) - 1)]
    if level == "per-sequence":
        hidden = _manifest(run)["embeddings"]["hidden_size"]
        dtype = np.float16 if _manifest(run)["embeddings"]["dtype"] == "float16" else np.float32
        return ids, (np.concatenate(parts) if parts else np.zeros((0, hidden), dtype))
    return ids, parts


def get(run, ident, level="per-sequence"):
    """The embedding of one id: [H] per sequence, [L, H] per residue. KeyError if absent,
    ValueError if several records carry this id."""
    found = []
    for f in _files(run, level):
        with h5py.File(os.path.join(run, f["file"]), "r") as h:
            for i, x in enumerate(_ids(h)):
                if x != ident:
                    continue
                if level == "per-sequence":
                    found.append(h[LEVELS[level]][i])
                else:
                    o = h["residue_offsets"][i:i + 2]
                    found.append(h[LEVELS[level]][o[0]:o[1]])
    if not found:
        raise KeyError(ident)
    if len(found) > 1:
        raise ValueError(f"{len(found)} records have the id {ident!r}; use load() and pick by position")
    return found[0]
