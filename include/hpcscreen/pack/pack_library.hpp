#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hpcscreen/pack/compound_readers.hpp"

namespace hpcscreen::pack {

struct pack_options {
  std::vector<std::string> inputs;
  std::string out_dir;
  std::uint64_t shard_records = 1'000'000;  // records per shard; one shard is buffered at a time
  std::string format;                       // smi|csv|tsv|sdf; empty: from each file's extension
  csv_options csv;
  std::string sdf_id_field;
};

struct pack_summary {
  std::uint64_t n_records = 0;       // packed into shards
  std::uint64_t n_pack_rejects = 0;  // written to pack_rejects.csv
  std::uint64_t n_comments = 0;      // '#' lines of .smi inputs
  std::size_t n_shards = 0;
};

// Writes protein shards (fields id, description, sequence) from FASTA inputs, as below.
pack_summary pack_proteins(const pack_options& options);

// Writes shards and manifest.json into out_dir, which must not exist or be empty.
// Records that cannot be packed (SDF records RDKit cannot read, CSV rows with the wrong
// field count) go to out_dir/pack_rejects.csv with file, line and reason.
pack_summary pack_compounds(const pack_options& options);

// The id given to a record packed without one: "<shard file stem>:<row>".
std::string derived_id(const std::string& shard_file, std::uint64_t row);

// Formats a record count as a shard file name: shard-00000.h5.
std::string shard_file_name(std::size_t index);

}  // namespace hpcscreen::pack
