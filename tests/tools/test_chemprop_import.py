#!/usr/bin/python3
"""Chemprop model files (issue 21), Python side: the restricted reader, the reference against
Chemprop's published predictions, the imported TorchScript model against the reference, and
refusals. Needs ../shared/data/chemprop/ (skips, exit 77, without it); no hpcscreen binary.

  /usr/bin/python3 tests/tools/test_chemprop_import.py
"""
import csv
import json
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch  # noqa: E402

from hpcscreen_py import chemprop_dump, chemprop_file, chemprop_ref  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data", "chemprop")
REGRESSION = os.path.join(DATA, "example_model_v2_regression_mol.pt")
CLASSIFICATION = os.path.join(DATA, "example_model_v2_classification_mol.pt")

# Chemprop's published predictions of example_model_v2_regression_mol (.ckpt of the same run in
# examples/predicting.ipynb, rows of tests/data/regression/mol/mol.csv = regression_mol.csv;
# examples/shapley_value_with_customized_featurizers.ipynb: row 0 = 2.25354147)
PUBLISHED_ROWS = {0: 2.253542, 1: 2.235016, 2: 2.245891, 3: 2.249847, 4: 2.228097,
                  95: 2.233408, 96: 2.236931, 97: 2.237789, 98: 2.252625, 99: 2.235702}
# examples/interpreting_monte_carlo_tree_search.ipynb scores these fragments with the .pt
PUBLISHED_FRAGMENTS = {
    "c1ccc2c(c1)n[cH:1][nH:1]2": 2.275024, "O=[SH:1]c1c[cH:1][cH:1]cc1[OH:1]": 2.252582,
    "c1cc[cH:1]c([CH2:1][CH2:1][OH:1])c1": 2.249289, "c1c([CH3:1])[nH]c2s[cH:1]cc12": 2.267990,
    "c1cc(C[CH2:1][NH2:1])c[cH:1]c1": 2.247070,
    "c1c([OH:1])c([S:1][NH2:1])c[cH:1][cH:1]1": 2.252185,
    "O=[CH:1][CH2:1]c1cccc[cH:1]1": 2.249207, "Clc1cc2c[cH:1][nH]c2s1": 2.267004,
    "c1cc(C[CH2:1][CH3:1])c[cH:1]c1": 2.245314,
    "c1c(N[CH3:1])[cH:1]c[cH:1]c1[SH:1]": 2.251067,
    "c1cc[cH:1]c([C@@H]([CH3:1])[NH2:1])c1": 2.247827,
    "O=C1N(C[CH3:1])[CH:1]=[CH:1]C[CH2:1]1": 2.211323,
    "Cn1nc([CH3:1])cc1[CH2:1][NH2:1]": 2.225729,
    "c1c([S:1][NH2:1])[cH:1]cc([OH:1])[cH:1]1": 2.250288,
    "Clc1ccccc1[CH2:1][NH2:1]": 2.245391, "C[CH2:1]c1cc([CH2:1][NH2:1])[nH:1]n1": 2.223793,
    "c1c([NH2:1])[cH:1]c[cH:1]c1[S:1][NH2:1]": 2.249267, "Clc1ccccc1[CH2:1][CH3:1]": 2.243280,
    "c1c([CH3:1])n[nH:1]c1[CH2:1]N[CH3:1]": 2.223478,
}
ODD_SMILES = ["", "C", "[Na+].[Cl-]", "[2H]C([2H])([2H])O", "F/C=C/F", "C[C@@H](N)C(=O)O",
              "*C(=O)O", "[Fe+2]", "C->[Fe]", "[H][H]", "c1ccccc1.O", "C#N", "[U]", "[I-]",
              "CCO ethanol", "[13CH3]C", "C1CC1", "[NH4+]", "[O-][n+]1ccccc1"]

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def training_smiles():
    out = []
    for name in ("regression_mol.csv", "classification_mol.csv"):
        with open(os.path.join(DATA, name), newline="") as f:
            out += [row[0] for row in list(csv.reader(f))[1:]]
    return out


def test_published():
    ref = chemprop_ref.Reference(REGRESSION)
    with open(os.path.join(DATA, "regression_mol.csv"), newline="") as f:
        smiles = [row[0] for row in list(csv.reader(f))[1:]]
    out, rejected = ref.predict_smiles(smiles)
    worst = max(abs(out[i, 0].item() - v) for i, v in PUBLISHED_ROWS.items())
    check(not rejected and worst <= 1e-6,
          f"published predictions (6 decimals) of 10 rows: max |diff| {worst:.2g}")
    check(abs(out[0, 0].item() - 2.25354147) <= 5e-8, "row 0 = 2.25354147 (8 digits)")
    out, rejected = ref.predict_smiles(list(PUBLISHED_FRAGMENTS))
    worst = max(abs(out[i, 0].item() - v) for i, v in enumerate(PUBLISHED_FRAGMENTS.values()))
    check(not rejected and worst <= 1e-6,
          f"published MCTS fragment scores ({len(PUBLISHED_FRAGMENTS)}): max |diff| {worst:.2g}")


def test_features():
    v2 = chemprop_ref.ATOM_FEATURIZERS
    check([v2[k].width for k in ("v2", "v1", "organic")] == [72, 133, 44], "d_v 72 / 133 / 44")
    g = chemprop_ref.featurize("")
    check(g.V.shape == (1, 72) and not g.V.any() and g.E.shape == (0, 14),
          "empty SMILES: one zero atom row, no edges (as Chemprop)")
    g = chemprop_ref.featurize("CI")  # iodine: V2's 37th atomic-number choice, SP3
    check(g.V[1, 36] == 1 and g.V[1, 66] == 1 and g.V[1, 71] == torch.tensor(1.26904).item(),
          "iodine: atomic-number slot 36, SP3 slot 66, mass 1.26904")
    check(g.edge_index.tolist() == [[0, 1], [1, 0]] and g.rev_edge_index.tolist() == [1, 0],
          "edge 2i = begin->end, 2i+1 = end->begin, rev = e ^ 1")
    g = chemprop_ref.featurize("C->[Fe]")
    check(not g.E[:, 1:5].any(), "dative bond: no bond-type bit (no 'other' slot)")
    line = chemprop_dump.dump_line("c1cccc1", "v2", False, False)
    check(line == {**line, "ok": False, "reason": "invalid_smiles"},
          "kekulization failure rejected")


def test_import(path, smiles, tasks=None):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m.pt")
        cmd = [sys.executable, os.path.join(ROOT, "tools", "import_chemprop.py"), path,
               "--out", out]
        if tasks:
            cmd += ["--tasks", tasks]
        smi_file = os.path.join(tmp, "smiles.txt")
        with open(smi_file, "w") as f:
            f.write("".join(s + "\n" for s in smiles if s and " " not in s))
        result = subprocess.run(cmd + ["--check", smi_file], capture_output=True, text=True)
        name = os.path.basename(path)
        if os.path.basename(path).startswith("refuse_"):
            check(result.returncode == 1 and "cannot run this model" in result.stderr
                  and not os.path.exists(out), f"{name} refused: {result.stderr.strip()[-90:]}")
            return
        last = result.stdout.strip().splitlines()[-1:] or [""]
        check(result.returncode == 0,
              f"{name}: {last[0] if result.returncode == 0 else result.stderr.strip()[-300:]}")
        if result.returncode:
            return
        with zipfile.ZipFile(out) as z:
            meta = json.loads(z.read(next(n for n in z.namelist()
                                          if n.endswith("extra/hpcscreen.json"))))
        desc = meta["chemprop"]
        check(meta["contract"] == "hpcscreen.gnn/1" and meta["featurizer"]["name"] == "chemprop"
              and meta["tasks"] == chemprop_file.column_names(desc, tasks and tasks.split(","))
              and meta["rank_by"] == meta["tasks"][0],
              f"{name}: hpcscreen.json {meta['featurizer']['atom_featurizer']} {meta['tasks'][:4]}")



# Files Chemprop's own strict load_state_dict (or its hyper-parameter types) would refuse, and
# what the refusal must name. Written by `--make-malformed DIR` in a subprocess (it imports
# tests/make_chemprop_files.py, which registers stand-in chemprop modules).
MALFORMED = {
    "no_output_layer": "predictor.ffn.1.2.weight",
    "tasks_1_rows_3": "predictor.ffn.1.2.weight",
    "tasks_2_rows_1": "predictor.ffn.1.2.weight",
    "bn_weights_missing": "bn.weight",
    "bn_weights_unexpected": "bn.weight",
    "extra_key": "predictor.extra.weight",
    "d_h_30": "d_h",
    "undirected_yes": "undirected",
    "bias_int": "bias",
    "depth_negative": "depth",
    "depth_str": "depth",
    "depth_float": "depth",
    "depth_huge": "depth",
    "n_tasks_str": "n_tasks",
    "scaler_mean_3": "predictor.output_transform.mean",
    "nan_weight": "message_passing.W_h.weight",
    "inf_bn": "bn.running_var",
    "norm_0": "norm",
    "not_a_tensor": "['message_passing.W_h.weight']: expected a tensor",
    "hyper_parameters_int": "hyper_parameters",
    "output_columns_3": "output_columns",
    "v1_missing_readout": "missing readout.7.weight",
    "v1_scaler_3": "data_scaler.means",
    "v1_depth_str": "depth",
    "v1_norm_0": "aggregation_norm",
    "v1_extra_key": "encoder.encoder.0.W_x.weight",
    "negative_variance": "bn.running_var",
    "record_crc_wrong": "fails its CRC check",
    "record_short": "its tensor needs",
    "records_shifted": "its tensor needs",
}


def make_malformed(out):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import make_chemprop_files as m

    def v2(name, change, **options):
        data = m.make_v2(7, **options)
        change(data, data["hyper_parameters"], data["state_dict"])
        torch.save(data, os.path.join(out, name + ".pt"))

    def v1(name, change):
        data = m.make_v1(8)
        change(data, data["args"].__dict__, data["state_dict"])
        torch.save(data, os.path.join(out, name + ".pt"))

    def setitem(d, key, value):
        d[key] = value

    v2("good", lambda d, hp, sd: None)
    v2("no_output_layer", lambda d, hp, sd: sd.pop("predictor.ffn.1.2.weight"))
    v2("tasks_1_rows_3", lambda d, hp, sd: setitem(hp["predictor"], "n_tasks", 1), n_tasks=3,
       scaled=False)
    v2("tasks_2_rows_1", lambda d, hp, sd: setitem(hp["predictor"], "n_tasks", 2), scaled=False)
    v2("bn_weights_missing", lambda d, hp, sd: [sd.pop(k) for k in list(sd) if k.startswith("bn.")])
    v2("bn_weights_unexpected", lambda d, hp, sd: setitem(hp, "batch_norm", False))
    v2("extra_key", lambda d, hp, sd: setitem(sd, "predictor.extra.weight", torch.ones(3)))
    v2("d_h_30", lambda d, hp, sd: setitem(hp["message_passing"], "d_h", 30))
    v2("undirected_yes", lambda d, hp, sd: setitem(hp["message_passing"], "undirected", "yes"))
    v2("bias_int", lambda d, hp, sd: setitem(hp["message_passing"], "bias", 0))
    for name, depth in (("negative", -2), ("str", "3"), ("float", 3.5), ("huge", 100000)):
        v2("depth_" + name, lambda d, hp, sd, x=depth: setitem(hp["message_passing"], "depth", x))
    v2("n_tasks_str", lambda d, hp, sd: setitem(hp["predictor"], "n_tasks", "1"))
    v2("scaler_mean_3", lambda d, hp, sd: setitem(sd, "predictor.output_transform.mean",
                                                  torch.zeros(1, 3)))
    v2("nan_weight", lambda d, hp, sd: sd["message_passing.W_h.weight"].view(-1).__setitem__(
        0, float("nan")))
    v2("inf_bn", lambda d, hp, sd: sd["bn.running_var"].__setitem__(2, float("inf")))
    v2("norm_0", lambda d, hp, sd: setitem(hp["agg"], "norm", 0), agg="NormAggregation")
    v2("not_a_tensor", lambda d, hp, sd: setitem(sd, "message_passing.W_h.weight", [[1.0]]))
    v2("hyper_parameters_int", lambda d, hp, sd: setitem(d, "hyper_parameters", 3))
    v2("output_columns_3", lambda d, hp, sd: setitem(d, "output_columns", ["a", "b", "c"]))
    # finite weights whose outputs overflow float32: --check must fail on the inf / NaN
    v2("overflow", lambda d, hp, sd: (
        sd["predictor.ffn.1.2.bias"].fill_(1e4),
        sd["predictor.output_transform.scale"].fill_(3e38)))
    v1("v1_good", lambda d, args, sd: None)
    v1("v1_adding_h", lambda d, args, sd: setitem(args, "adding_h", True))
    v1("v1_missing_readout", lambda d, args, sd: sd.pop("readout.7.weight"))
    v1("v1_scaler_3", lambda d, args, sd: setitem(d, "data_scaler",
                                                  {"means": [1, 2, 3], "stds": [1, 1, 1]}))
    v1("v1_depth_str", lambda d, args, sd: setitem(args, "depth", "3"))
    v1("v1_norm_0", lambda d, args, sd: setitem(args, "aggregation_norm", 0))
    v1("v1_extra_key", lambda d, args, sd: setitem(sd, "encoder.encoder.0.W_x.weight",
                                                   torch.ones(2, 2)))
    v2("negative_variance", lambda d, hp, sd: sd["bn.running_var"].__setitem__(1, -1.0))
    # Damage torch.load does not notice: a record's bytes changed (its CRC now wrong), and a
    # record 8 bytes short written into a fresh zip with right CRCs (torch reads past it).
    good = os.path.join(out, "good.pt")
    with zipfile.ZipFile(good) as z:
        records = [(i, z.read(i.filename)) for i in z.infolist()]
    largest = max((i for i, _ in records if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(good, "rb") as f:
        raw = bytearray(f.read())
    start = largest.header_offset + 30 + len(largest.filename.encode()) + len(largest.extra)
    for k in range(start + 8, start + 24):
        raw[k] ^= 0xFF
    with open(os.path.join(out, "record_crc_wrong.pt"), "wb") as f:
        f.write(raw)
    with zipfile.ZipFile(os.path.join(out, "record_short.pt"), "w", zipfile.ZIP_STORED) as z:
        for info, data in records:
            z.writestr(info.filename, data[:-8] if info is largest else data)
    # 8 bytes moved from one record to another: the total is right, each record is not.
    other = next(i for i, _ in records if "/data/" in i.filename and i is not largest)
    with zipfile.ZipFile(os.path.join(out, "records_shifted.pt"), "w", zipfile.ZIP_STORED) as z:
        for info, data in records:
            z.writestr(info.filename, data[:-8] if info is largest else data + bytes(8) if info is other else data)


def run_import(path, out, *options):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "import_chemprop.py"), path, "--out", out]
    return subprocess.run(cmd + list(options), capture_output=True, text=True)


def refused_cleanly(result, out, needle=""):
    """Exit 1, one line on stderr naming `needle`, no traceback, nothing written."""
    err = result.stderr.strip()
    message = err.split(".pt: ", 1)[-1]  # "error: FILE.pt: message": not the file's name
    return (result.returncode == 1 and "Traceback" not in err and len(err.splitlines()) == 1
            and needle in message and not os.path.exists(out))


def read_meta(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read(next(n for n in z.namelist()
                                      if n.endswith("extra/hpcscreen.json"))))


def test_hostile(smiles):
    """The defects a hostile tester found (overwriting --out, files Chemprop would refuse,
    NaN passing --check, v1 settings contradicted, names hpcscreen screen refuses)."""
    from concurrent.futures import ThreadPoolExecutor
    with tempfile.TemporaryDirectory() as tmp:
        made = os.path.join(tmp, "made")
        os.mkdir(made)
        subprocess.run([sys.executable, os.path.abspath(__file__), "--make-malformed", made],
                       check=True)
        good = os.path.join(made, "good.pt")
        v1 = os.path.join(made, "v1_good.pt")
        out = os.path.join(tmp, "out.pt")

        # 2, 3 (read time): malformed files, each refused naming the key / field
        outs = {name: os.path.join(tmp, name + ".out.pt") for name in MALFORMED}
        with ThreadPoolExecutor(2) as pool:
            results = dict(zip(MALFORMED, pool.map(
                lambda n: run_import(os.path.join(made, n + ".pt"), outs[n]), MALFORMED)))
        for name, needle in MALFORMED.items():
            r = results[name]
            check(refused_cleanly(r, outs[name], needle),
                  f"malformed {name}: exit 1 naming {needle!r}: {r.stderr.strip()[-150:]}")

        # 1: never overwrite; clean messages; nothing left behind by a failed import
        copy = os.path.join(tmp, "self.pt")
        with open(good, "rb") as f:
            original = f.read()
        with open(copy, "wb") as f:
            f.write(original)
        r = run_import(copy, copy)
        with open(copy, "rb") as f:
            check(r.returncode == 1 and "exists" in r.stderr and f.read() == original,
                  f"--out the input itself refused, input untouched: {r.stderr.strip()[-90:]}")
        with open(out, "w") as f:
            f.write("precious")
        r = run_import(good, out)
        with open(out) as f:
            check(r.returncode == 1 and f.read() == "precious",
                  "--out an existing file refused, file untouched")
        os.unlink(out)
        r = run_import(good, os.path.join(tmp, "nodir", "x.pt"))
        check(refused_cleanly(r, os.path.join(tmp, "nodir", "x.pt"), "does not exist"),
              f"--out in a missing folder: {r.stderr.strip()[-90:]}")
        r = run_import(good, made)
        check(r.returncode == 1 and "Traceback" not in r.stderr and "directory" in r.stderr,
              f"--out a directory: {r.stderr.strip()[-90:]}")

        # 3 (--check): inf / NaN outputs fail the check; the failed import leaves nothing
        smi_file = os.path.join(tmp, "smiles.txt")
        with open(smi_file, "w") as f:
            f.write("".join(s + "\n" for s in smiles[:40] if s and " " not in s))
        before = sorted(os.listdir(tmp))
        r = run_import(os.path.join(made, "overflow.pt"), out, "--check", smi_file)
        check(r.returncode == 1 and "non-finite" in r.stdout and not os.path.exists(out)
              and sorted(os.listdir(tmp)) == before,
              f"--check with inf outputs fails, nothing written: {r.stdout.strip()[-110:]}")
        sys.path.insert(0, os.path.join(ROOT, "tools"))
        import import_chemprop

        class NaNModel:
            def __call__(self, V, E, edge_index, rev, batch, num_graphs):
                return torch.full((num_graphs, 1), float("nan"))

        reference = chemprop_ref.Reference(good)
        verdict = import_chemprop.check(NaNModel(), reference, ["C", "CC"])
        check(getattr(verdict, "ok", True) is False,
              "check(): a model that predicts NaN fails the check")

        # 4: a v1 file's explicit_h / adding_h cannot be contradicted
        for option, field_ in (("--add-h", "adding_h"), ("--keep-h", "explicit_h")):
            r = run_import(v1, out, option)
            check(refused_cleanly(r, out, field_ + " = False"),
                  f"v1 file with {field_} False and {option}: {r.stderr.strip()[-110:]}")
        def sources(path, *options):
            if os.path.exists(out):
                os.unlink(out)
            r = run_import(path, out, *options)
            mol = read_meta(out)["chemprop"]["molecule"] if r.returncode == 0 else {}
            source = mol.get("source")
            if os.path.exists(out):
                os.unlink(out)
            return mol.get("add_h"), source if isinstance(source, dict) else {"": source}

        add_h, source = sources(os.path.join(made, "v1_adding_h.pt"), "--add-h")
        check(add_h is True and "adding_h" in str(source.get("add_h"))
              and "explicit_h" in str(source.get("keep_h")),
              f"v1 adding_h True with --add-h agrees; each setting's source: {source}")
        add_h, source = sources(good, "--add-h")
        check(add_h is True and "--add-h" in str(source.get("add_h"))
              and "--add-h" not in str(source.get("keep_h")),
              f"v2 --add-h: add_h's source the option, keep_h's the default: {source}")

        # 5: names hpcscreen screen would refuse
        bad_names = [(good, ["--name", n]) for n in ("mean", "sd", "lcb", "ucb", "a:b", "")]
        # v1_good has two tasks
        bad_names += [(v1, ["--tasks", t]) for t in ("", "a,a", "a,", " a,b", "a\tb,c")]
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(
                lambda k: run_import(bad_names[k][0], os.path.join(tmp, f"name{k}.pt"),
                                     *bad_names[k][1]), range(len(bad_names))))
        for k, ((_, options), r) in enumerate(zip(bad_names, results)):
            check(refused_cleanly(r, os.path.join(tmp, f"name{k}.pt")),
                  f"{' '.join(map(repr, options))} refused: {r.stderr.strip()[-100:]}")
        r = run_import(good, os.path.join(tmp, "mean.pt"))
        check(refused_cleanly(r, os.path.join(tmp, "mean.pt"), "--name"),
              f"--out mean.pt (default name 'mean') refused: {r.stderr.strip()[-90:]}")
        named = os.path.join(tmp, "lipo_a.pt")
        r = run_import(good, named)
        check(r.returncode == 0 and read_meta(named)["name"] == "lipo_a",
              "the default model name is the --out file's stem")

def main():
    if sys.argv[1:2] == ["--make-malformed"]:
        make_malformed(sys.argv[2])
        return 0
    if not os.path.isdir(DATA):
        print(f"skip: no {DATA}")
        return 77
    test_published()
    test_features()
    check("chemprop" not in sys.modules and "lightning" not in sys.modules,
          "reading Chemprop files imported neither chemprop nor lightning")
    smiles = training_smiles() + ODD_SMILES
    test_hostile(smiles)
    test_import(REGRESSION, smiles, tasks="lipo")
    test_import(CLASSIFICATION, smiles, tasks="NR-AhR,NR-ER,SR-ARE,SR-MMP")
    with tempfile.TemporaryDirectory() as made:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "make_chemprop_files.py"),
                        made], check=True, capture_output=True)
        for name in sorted(os.listdir(made)):
            test_import(os.path.join(made, name), smiles[:120] + ODD_SMILES)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
