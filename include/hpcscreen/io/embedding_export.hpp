#pragma once
// `hpcscreen export embeddings RUN --out FILE.h5`: a finished annotate run's embeddings in the
// layout bio_embeddings users read (one dataset per id, named by id, at the file's root), for
// runs small enough that one dataset per record is reasonable.
#include <cstdint>
#include <string>

namespace hpcscreen::io {

struct embedding_export_options {
  std::string run_dir, out_path;
  std::string level;  // "per-sequence" or "per-residue"; empty: per-sequence if the run has it
  std::uint64_t max_bytes = 4ull << 30;  // refuse runs whose values exceed this
};

struct embedding_export_summary {
  std::string level;
  std::uint64_t n_records = 0, payload_bytes = 0, hidden_size = 0;
  bool float16 = true;
};

// Throws run_error (not an embedding run, incomplete, too large, duplicate ids) with what to do.
embedding_export_summary export_embeddings(const embedding_export_options& o);

// A record id as an HDF5 link name: '/' and '%' are written %2F and %25 ("." and ".." too, as
// %2E and %2E%2E); other ids unchanged. The original id is kept in the `original_id` attribute.
std::string dataset_name_for_id(const std::string& id);

}  // namespace hpcscreen::io
