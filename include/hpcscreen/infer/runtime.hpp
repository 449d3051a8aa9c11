#pragma once
// The inference runtime every model kind shares: threads, the allocator's behaviour, versions.
// (Defined in src/infer/gnn_model.cpp, where they began.)
#include <string>

namespace hpcscreen::infer {

// Sets LibTorch's intra-op threads (its default here is 1) and OpenBLAS's to the same count,
// so neither starts more threads than the rank was given.
void configure_threads(int n_threads);

// Keeps the memory of freed tensors in the process instead of handing it back to the kernel
// after every batch, to be faulted in (and zeroed) again on the next: that halved the GNN's
// inference rate and cost BERT a quarter of its time here (bench/results.jsonl). Built with
// jemalloc (the default), its configuration does this; otherwise glibc's M_MMAP_THRESHOLD goes
// to its 32 MiB maximum and M_TRIM_THRESHOLD to 256 MiB, unless MALLOC_MMAP_THRESHOLD_ /
// MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_ are set (the user's choice wins).
void keep_freed_tensor_memory();
std::string libtorch_version();

// Single-precision matrix-multiply rate of this machine through LibTorch: a [n,n] x [n,n]
// torch::mm repeated `repeats` times, in GFLOP/s. The yardstick for the inference stages.
double measure_matmul_gflops(int n, int repeats);

}  // namespace hpcscreen::infer
