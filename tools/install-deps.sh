#!/usr/bin/env bash
# Installs what hpcscreen needs on Debian 12, from Debian's own packages. Safe to rerun: it
# calls apt-get only when a package is missing. Needs root (or sudo).
#   --no-test-tools  leave out what only the test suite uses (clang for the fuzz test, a Slurm
#                    cluster and munge, Chromium, GDCM's command-line tools): tools/demo.sh
set -euo pipefail
test_tools=(
  clang libclang-rt-dev                 # the fuzz test (libFuzzer)
  slurmctld slurmd slurm-client munge   # the Slurm end-to-end test runs a real single-node cluster
  chromium                              # the report test loads report.html in headless Chromium
  libgdcm-tools                         # the image tests' DICOM corpus
)
if [ "${1:-}" = "--no-test-tools" ]; then
  test_tools=()
elif [ -n "${1:-}" ]; then
  echo "install-deps: unknown argument '$1' (--no-test-tools leaves out the test suite's tools)" >&2
  exit 2
fi
packages=(
  build-essential cmake git pkg-config ca-certificates
  libopenmpi-dev openmpi-bin
  libtorch-dev libopenblas0-pthread
  libhdf5-openmpi-dev hdf5-tools
  librdkit-dev rdkit-data
  libmemkind-dev libjemalloc-dev
  libboost-program-options-dev libboost-iostreams-dev libbz2-dev liblzma-dev libzstd-dev
  bzip2 xz-utils zstd                   # the compressed-input tests and the pack benchmark
  libgtest-dev
  libpng-dev libjpeg62-turbo-dev libgdcm-dev  # image decoders (PNG, JPEG, DICOM)
  python3-pil python3-torchvision python3-pydicom  # image tools and tests' reference
  nlohmann-json3-dev zlib1g-dev
  python3 python3-torch python3-rdkit python3-h5py python3-numpy
  "${test_tools[@]}"
  ${HPCSCREEN_EXTRA_PACKAGES:-}
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
