#pragma once
// A chunk's ledger: what the run folder keeps of one chunk (counts, reject rows in row order,
// the score sample, the chunk's best hits), made from its outcomes by the conductor alone.
#include <string>
#include <vector>

#include "hpcscreen/pipeline/outcome.hpp"
#include "hpcscreen/run/chunk_record.hpp"

namespace hpcscreen::pipeline {

// A chunk's record before its outcomes: where it lies and every row counted as read.
run::chunk_record open_record(const plan::chunk& c);

// The chunk's ledger: counts, rejects in row order, the score sample, and the chunk's best
// layout.top_k per ranking key (with the fields shown beside each hit). Every row must have an
// outcome.
run::chunk_record close_chunk(const chunk_input& input, const chunk_outcomes& outcomes,
                              const score_layout& layout,
                              const std::vector<std::string>& hit_fields);

}  // namespace hpcscreen::pipeline
