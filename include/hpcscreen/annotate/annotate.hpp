#pragma once
// `hpcscreen annotate`: protein rows → tokens (vocabulary from the model) → length-aware
// batches → TorchScript BERT → every result kept in per-chunk HDF5 files.
#include <cstdint>
#include <memory>
#include <string>

#include "hpcscreen/batch/token_batch.hpp"
#include "hpcscreen/pipeline/pipeline.hpp"

namespace hpcscreen::annotate {

enum class long_policy { reject, truncate, window };
long_policy parse_long_policy(const std::string& text);  // throws usage_error

struct annotate_settings {
  std::string model_path;
  std::size_t top_k = 100;  // with hits: records in hits.csv
  batch::token_budget budget;
  bool length_aware = true;  // false: fixed batches of budget.max_sequences in input order
  long_policy long_sequences = long_policy::reject;
  std::int64_t window_overlap = -1;  // residues; -1: a quarter of the model's window
  bool hits = false;                 // per-sequence models: rank and write hits.csv
  bool tsv = false;                  // also write annotations.tsv (small runs)
  // --embeddings with an encoder model (output_level "embedding"): what to keep, and in which
  // precision (data_schemas/annotations.md).
  bool embed_per_sequence = false, embed_per_residue = false;
  bool embed_float16 = true;
  std::string precision = "fp32";    // fp32, bf16, int8, auto (infer/precision.hpp)
};

// --embeddings per-sequence|per-residue|both and --embedding-dtype float16|float32; throw
// usage_error naming the option.
void parse_embeddings(const std::string& text, annotate_settings& s);
void parse_embedding_dtype(const std::string& text, annotate_settings& s);

// Registers the annotate workload and its export command (src/app/registrations.cpp).
void register_annotate();

std::unique_ptr<pipeline::workload> make_annotate_workload(const annotate_settings& settings,
                                                           int threads);

}  // namespace hpcscreen::annotate
