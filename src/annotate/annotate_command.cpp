// `hpcscreen annotate` and `hpcscreen export embeddings` as the host sees them: their options
// and what they make, registered with pipeline/registry.hpp.
#include <cstdio>
#include <iostream>

#include "hpcscreen/annotate/annotate.hpp"
#include "hpcscreen/core/cli.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"
#include "hpcscreen/infer/precision.hpp"
#include "hpcscreen/io/embedding_export.hpp"
#include "hpcscreen/pipeline/registry.hpp"

namespace hpcscreen::annotate {
namespace {

namespace po = boost::program_options;
using cli::in_range;

class annotate_command : public pipeline::workload_command {
 public:
  void add_options(po::options_description& desc) override {
    desc.add_options()("model,m", po::value(&models_)->required()->composing(),
                       "TorchScript BERT with hpcscreen.json (data_schemas/bert_contract.md)")(
        "top-k,k", in_range(s_.top_k, "top-k", 1, cli::int32_max),
        "with a per-sequence model: rank by its rank_by label and keep this many in hits.csv");
    infer::add_precision_option(desc, s_.precision);
    desc.add_options()(
        "max-tokens", in_range(s_.budget.max_tokens, "max-tokens", 1, cli::int32_max),
        "padded tokens per inference batch, at most (a longer sequence or window is a batch "
        "of its own)")("max-sequences",
                       in_range(s_.budget.max_sequences, "max-sequences", 1, cli::int32_max),
                       "sequences per batch, at most (the batch size with --batching fixed)")(
        "batching", po::value(&batching_)->default_value(batching_),
        "length (sort by length, fill to --max-tokens) or fixed (input order)")(
        "long-sequences", po::value(&long_sequences_)->default_value(long_sequences_),
        "sequences longer than the model takes: reject, truncate or window")(
        "window-overlap", in_range(s_.window_overlap, "window-overlap", -1, cli::int32_max),
        "residues shared by consecutive windows (-1: a quarter of the window)")(
        "tsv", po::bool_switch(&s_.tsv),
        "also write annotations.tsv (id, shard, row, length, prediction) for small runs")(
        "embeddings", po::value(&embeddings_),
        "with an encoder (output_level 'embedding'): keep per-sequence (mean over residues), "
        "per-residue or both")("embedding-dtype",
                               po::value(&embedding_dtype_)->default_value(embedding_dtype_),
                               "float16 (2 bytes a value) or float32");
  }
  void check(const po::variables_map& vm) override {
    s_.long_sequences = parse_long_policy(long_sequences_);
    if (s_.long_sequences != long_policy::window && !vm["window-overlap"].defaulted())
      throw usage_error("--window-overlap is the overlap of --long-sequences window; give it too");
    if (!embeddings_.empty()) parse_embeddings(embeddings_, s_);
    if (embeddings_.empty() && !vm["embedding-dtype"].defaulted())
      throw usage_error("--embedding-dtype is the precision of --embeddings; give --embeddings too");
    parse_embedding_dtype(embedding_dtype_, s_);
    if (batching_ != "length" && batching_ != "fixed") {
      throw usage_error("the argument ('" + batching_ +
                        "') for option '--batching' is invalid: expected length or fixed");
    }
    s_.length_aware = batching_ == "length";
    s_.hits = vm.count("top-k") && !vm["top-k"].defaulted();
    if (models_.size() != 1) throw usage_error("annotate takes exactly one --model");
    s_.model_path = models_.front();
  }
  std::unique_ptr<pipeline::workload> make(int threads) override {
    return make_annotate_workload(s_, threads);
  }

 private:
  annotate_settings s_;
  std::vector<std::string> models_;
  std::string long_sequences_ = "reject", batching_ = "length";
  std::string embeddings_, embedding_dtype_ = "float16";
};

// export embeddings RUN --out FILE.h5: an annotate run's embeddings, one dataset per id.
int export_main(const std::vector<std::string>& args, int, char**) {
  io::embedding_export_options o;
  std::string what, max_bytes = "4G";
  po::options_description desc("export embeddings options");
  desc.add_options()("help,h", "show this help")("what", po::value(&what), "embeddings")(
      "run", po::value(&o.run_dir), "a finished annotate run with --embeddings")(
      "out,o", po::value(&o.out_path), "HDF5 file to write: one dataset per id, named by id")(
      "level", po::value(&o.level),
      "per-sequence ([H] per id) or per-residue ([L, H] per id); default: per-sequence if the "
      "run has it")("max-bytes", po::value(&max_bytes)->default_value(max_bytes),
                    "refuse runs whose embeddings take more (e.g. 500M, 8G)");
  po::positional_options_description pos;
  pos.add("what", 1).add("run", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: hpcscreen export embeddings RUN --out FILE.h5 [--level per-residue]\n\n"
              << desc << '\n';
    return 0;
  }
  po::notify(vm);
  if (what != "embeddings")
    throw usage_error("export needs a kind: 'hpcscreen export embeddings RUN --out FILE.h5'");
  if (o.run_dir.empty() || o.out_path.empty())
    throw usage_error("export embeddings needs a run folder and --out FILE.h5");
  o.max_bytes = parse_bytes(max_bytes, "max-bytes");
  const auto s = io::export_embeddings(o);
  std::printf("wrote %llu %s embeddings of %llu dimensions (%s, %llu bytes of values) to %s\n",
              static_cast<unsigned long long>(s.n_records), s.level.c_str(),
              static_cast<unsigned long long>(s.hidden_size), s.float16 ? "float16" : "float32",
              static_cast<unsigned long long>(s.payload_bytes), o.out_path.c_str());
  return 0;
}

}  // namespace

void register_annotate() {
  pipeline::register_workload(
      {"annotate", "proteins", "annotated",
       "annotate a protein library with a TorchScript BERT; every result kept",
       "usage: hpcscreen annotate --library DIR --model M.pt --out RUN [--top-k K]",
       [] { return std::make_unique<annotate_command>(); }});
  pipeline::register_tool({"export",
                           "embeddings RUN --out FILE.h5: an annotate run's embeddings, one "
                           "dataset per id (bio_embeddings)",
                           export_main});
}

}  // namespace hpcscreen::annotate
