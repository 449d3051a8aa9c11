// The compound and protein library kinds, registered with pipeline/registry.hpp: their shard
// fields and `hpcscreen pack compounds|proteins` (options, then pack_library.cpp's pack).
#include <cstdio>
#include <filesystem>
#include <string>

#include "hpcscreen/chem/depict.hpp"
#include "hpcscreen/core/cli.hpp"
#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pack/pack_library.hpp"
#include "hpcscreen/pipeline/registry.hpp"

namespace hpcscreen::pack {
namespace {

namespace po = boost::program_options;

std::string summary_text(const pack_summary& s, const pack_options& o, int n_ranks) {
  char line[512];
  std::string text;
  // (Paths are added whole: a buffer would cut a long one.)
  text += "read " + std::to_string(s.n_rows_read) + " rows: " + std::to_string(s.n_records) +
          " records packed into " + std::to_string(s.n_shards) + " shard(s) in " + o.out_dir +
          ", " + std::to_string(s.n_pack_rejects) + " pack rejects";
  if (s.n_comments) {
    std::snprintf(line, sizeof line, "; %llu comment lines skipped",
                  static_cast<unsigned long long>(s.n_comments));
    text += line;
  }
  text += "\n";
  if (o.resume && (s.n_shards_kept || s.n_inputs_skipped)) {
    std::snprintf(line, sizeof line, "resumed: %zu input(s) finished earlier, %zu shard(s) kept\n",
                  s.n_inputs_skipped, s.n_shards_kept);
    text += line;
  }
  if (s.n_pack_rejects) {
    text += std::to_string(s.n_pack_rejects) + " input rows could not be packed; see " +
            (std::filesystem::path(o.out_dir) / "pack_rejects.csv").string() + "\n";
  }
  if (cli::launched_by_mpi()) text += "packed by " + std::to_string(n_ranks) + " ranks\n";
  return text;
}

// What packing text inputs of either kind takes.
void add_common_options(po::options_description& desc, pack_options& o, const char* input_help) {
  desc.add_options()("input,i", po::value(&o.inputs)->required()->multitoken(), input_help)(
      "out,o", po::value(&o.out_dir)->required(),
      "library folder to create (must not exist or be empty)")(
      "resume", po::bool_switch(&o.resume),
      "continue a pack of the same inputs into --out that did not complete")(
      "shard-size", cli::in_range(o.shard_records, "shard-size", 1, cli::rows_max),
      "records per shard");
}

class compound_pack : public pipeline::pack_command {
 public:
  void add_options(po::options_description& desc) override {
    add_common_options(desc, o_,
                       "input file(s): .smi, .csv, .tsv, .cxsmiles (Enamine REAL), .sdf; plain or "
                       "gzip/bzip2/xz/zstd-compressed (told from the content)");
    desc.add_options()("format", po::value(&o_.format),
                       "smi|csv|tsv|cxsmiles|sdf (default: from the name)")(
        "smiles-column", po::value(&o_.csv.smiles_column),
        "column holding SMILES, any case (default: 'smiles', 'cxsmiles', ...)")(
        "id-column", po::value(&o_.csv.id_column),
        "column holding ids, any case (default: 'id', 'idnumber', 'zinc_id', 'name', ... if "
        "present)")("keep-columns", po::value(&keep_columns_),
                    "comma-separated columns to store in the shards as well, e.g. MW,slogP")(
        "max-line-bytes", cli::in_range(o_.csv.max_line_bytes, "max-line-bytes", 1, 1LL << 30),
        "longer lines (or quoted records) are pack rejects")(
        "sdf-id-field", po::value(&o_.sdf_id_field),
        "SD property holding ids (default: the title line)");
  }
  void check(const po::variables_map&) override {
    o_.csv.keep_columns = cli::split_commas(keep_columns_);
  }
  std::string run(dist::context& ctx, std::function<bool()> stop_requested) override {
    o_.stop_requested = std::move(stop_requested);
    return summary_text(pack_compounds(ctx, o_), o_, ctx.size());
  }

 private:
  pack_options o_;
  std::string keep_columns_;
};

class protein_pack : public pipeline::pack_command {
 public:
  void add_options(po::options_description& desc) override {
    add_common_options(desc, o_, "FASTA file(s), plain or gzip/bzip2/xz/zstd-compressed");
  }
  std::string run(dist::context& ctx, std::function<bool()> stop_requested) override {
    o_.stop_requested = std::move(stop_requested);
    return summary_text(pack_proteins(ctx, o_), o_, ctx.size());
  }

 private:
  pack_options o_;
};

}  // namespace

void register_text_library_kinds() {
  pipeline::register_library_kind(
      {"compounds", io::compound_shard_schema, io::compound_fields, {"smiles"},
       "pack .smi/.csv/.tsv/.cxsmiles/.sdf (plain, gzip, bzip2, xz or zstd) into HDF5 shards + "
       "manifest",
       "usage: hpcscreen pack compounds --input FILE... --out DIR\n"
       "       mpirun -np N hpcscreen pack compounds --input FILE... --out DIR\n"
       "       (under MPI every rank packs whole input files; the library is the\n"
       "       same for any rank count)",
       [] { return std::make_unique<compound_pack>(); },
       [](const std::map<std::string, std::string>& hit, const std::string&) {
         const auto smiles = hit.find("smiles");
         return smiles == hit.end() ? std::string() : chem::smiles_to_svg(smiles->second, 220, 160);
       }});
  pipeline::register_library_kind(
      {"proteins", io::protein_shard_schema, io::protein_fields, {"description"},
       "pack FASTA (plain or compressed) into HDF5 shards + manifest",
       "usage: hpcscreen pack proteins --input FILE.fasta[.gz]... --out DIR",
       [] { return std::make_unique<protein_pack>(); },
       nullptr});  // report.html shows a protein hit by its fields alone
}

}  // namespace hpcscreen::pack
