"""Python side of hpcscreen: the same featurization as the C++ pipeline, reference models and
their export to the TorchScript contracts in data_schemas/. Needs Debian's python3-torch,
python3-rdkit and python3-h5py (run with /usr/bin/python3)."""
