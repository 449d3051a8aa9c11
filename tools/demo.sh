#!/usr/bin/env bash
# Installs what is missing (not the test suite's tools), builds, packs the 4,999 NCI compounds Debian ships
# (rdkit-data) and screens them with the shipped HIV-activity GNN on 2 MPI ranks, then
# annotates four well-known proteins with the shipped secondary-structure model and embeds them
# with its encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh --no-test-tools
bash tools/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
demo=demo-run
rm -rf "$demo"
mkdir -p "$demo"
./build/hpcscreen pack compounds --input /usr/share/RDKit/Data/NCI/first_5K.smi --out "$demo/library"
mpirun -np 2 --oversubscribe --bind-to none ./build/hpcscreen screen \
  --library "$demo/library" --model models/hiv_gnn.pt --out "$demo/screen" --top-k 20 --threads 1
echo
echo "Top 20 of $(grep -c . /usr/share/RDKit/Data/NCI/first_5K.smi) NCI compounds by predicted HIV activity ($demo/screen/hits.csv):"
column -s, -t < "$demo/screen/hits.csv" | cut -c1-120

./build/hpcscreen pack proteins --input tools/demo/proteins.fa --out "$demo/proteins"
mpirun -np 2 --oversubscribe --bind-to none ./build/hpcscreen annotate \
  --library "$demo/proteins" --model models/ss3_bert.pt --out "$demo/annotate" --tsv --threads 1
echo
echo "Predicted secondary structure (C coil, E strand, H helix) of tools/demo/proteins.fa ($demo/annotate/annotations.tsv):"
cut -f1,4,5 "$demo/annotate/annotations.tsv" | column -t | cut -c1-150

# Embeddings: the same model's encoder without its head (64 dimensions), per sequence and per residue.
/usr/bin/python3 tools/make_encoder.py --source models/ss3_bert.pt --out "$demo/ss3_encoder.pt" 2>/dev/null
mpirun -np 2 --oversubscribe --bind-to none ./build/hpcscreen annotate \
  --library "$demo/proteins" --model "$demo/ss3_encoder.pt" --out "$demo/embed" --embeddings both --threads 1
./build/hpcscreen export embeddings "$demo/embed" --out "$demo/embeddings.h5"
echo
echo "Per-sequence embeddings of the same proteins ($demo/embed, read with tools/hpcscreen_py/embeddings.py):"
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "tools"); from hpcscreen_py import embeddings
ids, X = embeddings.load(sys.argv[1])
for i, x in zip(ids, X): print(f"  {i:12s} [{len(x)}] {x[:4]} ...")' "$demo/embed"
echo
echo "Reports for people: $demo/screen/report.html and $demo/annotate/report.html"
