// The image library kind: `hpcscreen pack images` turns files, folders (recursively) and lists
// (CSV/TSV with a path column) into shards holding each image's original bytes and what its
// header says (data_schemas/image_library.md). Every file is decoded once at pack time, so a
// truncated, corrupt or unsupported image is a pack reject with its reason, not a surprise in
// the run; the decode is repeated by the workload, which rejects as well.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hpcscreen/core/cli.hpp"
#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/image/decode.hpp"
#include "hpcscreen/image/image.hpp"
#include "hpcscreen/image/preprocess.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pack/compound_readers.hpp"
#include "hpcscreen/pack/pack_library.hpp"
#include "hpcscreen/pipeline/outcome.hpp"
#include "hpcscreen/pipeline/registry.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::image {
namespace {

namespace po = boost::program_options;
using json = nlohmann::json;

struct image_pack_settings {
  pack::pack_options o;
  std::string keep_columns, path_column, id_column;
  std::string image_dir;  // a list's relative paths are read from here (default: its folder)
  std::uint64_t max_pixels = default_max_pixels;
};

// A list is told by its name (.csv, .tsv); anything else that is a file is an image.
bool is_list(const std::string& path) {
  auto name = fs::path(path).filename().string();
  std::transform(name.begin(), name.end(), name.begin(), ::tolower);
  const auto ends = [&](const char* e) {
    const std::string x(e);
    return name.size() >= x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0;
  };
  return ends(".csv") || ends(".tsv");
}

bool is_tsv(const std::string& path) {
  auto ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".tsv";
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// A list's header row: its column names (a UTF-8 byte-order mark skipped).
std::vector<std::string> list_header(const std::string& list, char delimiter) {
  std::ifstream in(list, std::ios::binary);
  std::string header;
  std::getline(in, header);
  if (header.compare(0, 3, "\xEF\xBB\xBF") == 0) header.erase(0, 3);
  if (!header.empty() && header.back() == '\r') header.pop_back();
  std::vector<std::string> names;
  pack::split_csv_record(header, delimiter, names);
  return names;
}

bool has_column(const std::vector<std::string>& names, const std::string& want) {
  return std::any_of(names.begin(), names.end(), [&](const std::string& n) { return lower(n) == lower(want); });
}

// The first header column, any case, that commonly names an image's file.
std::string default_path_column(const std::string& list, char delimiter) {
  const auto names = list_header(list, delimiter);
  for (const char* want : {"path", "file", "filename", "file_name", "image", "image index",
                           "image_path", "dicom_path"}) {
    for (const auto& n : names) {
      if (lower(n) == want) return n;
    }
  }
  throw usage_error("pack images: list '" + list + "' has no column naming the images (looked for "
                    "path, file, filename, image, Image Index, ...); name it with --path-column");
}

// Before anything is written: the columns a list must have.
void check_list_columns(const std::string& list, const std::string& path_column,
                        const std::string& id_column, const std::vector<std::string>& keep) {
  const char delimiter = is_tsv(list) ? '\t' : ',';
  const auto names = list_header(list, delimiter);
  if (path_column.empty()) {
    default_path_column(list, delimiter);
  } else if (!has_column(names, path_column)) {
    throw usage_error("pack images: list '" + list + "' has no column '" + path_column + "' (--path-column)");
  }
  if (!id_column.empty() && !has_column(names, id_column))
    throw usage_error("pack images: list '" + list + "' has no column '" + id_column + "' (--id-column)");
  for (const auto& k : keep) {
    if (!has_column(names, k))
      throw usage_error("pack images: list '" + list + "' has no column '" + k + "' (--keep-columns)");
  }
}

class image_reader {
 public:
  explicit image_reader(const image_pack_settings& s) : s_(s) {}

  // One image file: decoded whole (which proves it readable), stored as its original bytes.
  void add_file(const fs::path& path, const std::string& id, const std::string& source,
                std::uint64_t line, const std::vector<std::string>& kept, pack::shard_sink& sink,
                pack::read_counts& counts, const std::string& if_missing = "") {
    ++counts.n_rows;
    // A list's row names its image in the reason; a file or folder input's reject is the file.
    const std::string where = source == path.string() ? "" : "'" + path.string() + "': ";
    if (path.filename().empty()) {  // an empty path cell, or one naming a folder
      sink.reject({source, line, "not_a_file: the row names no file ('" + path.string() + "')"});
      ++counts.n_rejects;
      return;
    }
    auto reject = [&](const std::string& reason) {
      const auto colon = reason.find(": ");
      sink.reject({source, line,
                   colon == std::string::npos ? reason
                                              : reason.substr(0, colon + 2) + where +
                                                    reason.substr(colon + 2)});
      ++counts.n_rejects;
    };
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (ec || !fs::exists(status)) return reject("missing: the file does not exist" + if_missing);
    if (!fs::is_regular_file(status)) return reject("not_a_file: not a regular file");
    std::string bytes;
    try {
      bytes = run::read_file(path.string());
    } catch (const std::exception& e) {
      return reject(std::string("unreadable: ") + e.what());
    }
    image_header h;
    try {
      decode(bytes, s_.max_pixels, &h);
    } catch (const image_reject& r) {
      return reject(r.reason() + ": " + r.what());
    }
    sink.add(id, {h.format, std::to_string(h.width), std::to_string(h.height),
                  std::to_string(h.channels), std::to_string(h.bit_depth), bytes},
             kept);
    ++counts.n_records;
  }

  // A folder: every regular file below it, in the byte order of their relative paths (the
  // same library whatever the file system lists first); ids are those relative paths.
  pack::read_counts read_folder(const std::string& root, pack::shard_sink& sink) {
    std::vector<std::string> files, linked_folders;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
      // Ids are paths as found below the root (a symbolic link keeps its own name).
      const auto rel = it->path().lexically_relative(root).generic_string();
      if (it->is_symlink() && it->is_directory()) {
        linked_folders.push_back(rel);  // not followed (a loop would never end): a reject row
      } else if (!it->is_directory()) {
        files.push_back(rel);
      }
    }
    std::sort(files.begin(), files.end());
    pack::read_counts counts;
    for (const auto& rel : linked_folders) {
      ++counts.n_rows;
      ++counts.n_rejects;
      sink.reject({(fs::path(root) / rel).string(), 0,
                   "not_followed: a symbolic link to a folder is not followed; give its target as an input"});
    }
    for (const auto& rel : files) {
      const auto path = fs::path(root) / rel;
      add_file(path, rel, path.string(), 0, {}, sink, counts);
    }
    return counts;
  }

  // A list: rows of a CSV/TSV whose path column names the image, relative to --image-dir or
  // else the list's folder, unless absolute; ids from --id-column or the path as written.
  pack::read_counts read_list(const std::string& list, pack::shard_sink& sink) {
    pack::reader_options r;
    if (is_tsv(list)) r.delimiter = '\t';
    r.smiles_column = s_.path_column.empty() ? default_path_column(list, r.delimiter) : s_.path_column;
    r.id_column = s_.id_column;
    r.keep_columns = s_.o.csv.keep_columns;
    r.max_line_bytes = s_.o.csv.max_line_bytes;
    const auto base = s_.image_dir.empty() ? fs::path(list).parent_path() : fs::path(s_.image_dir);
    pack::read_counts counts;
    const auto read = pack::read_csv(
        list, r,
        [&](pack::compound_record&& rec) {
          const fs::path p(rec.smiles);
          const auto id = s_.id_column.empty() ? rec.smiles : rec.id;
          add_file(p.is_absolute() ? p : base / p, id, list, rec.line, rec.kept, sink, counts,
                   p.is_absolute() || !s_.image_dir.empty()
                       ? ""
                       : " (a list's relative paths are read from its own folder; name the "
                         "images' folder with --image-dir)");
        },
        [&](pack::pack_reject&& rej) {
          sink.reject(std::move(rej));
          ++counts.n_rows;
          ++counts.n_rejects;
        });
    counts.n_header_lines = read.n_header_lines;
    return counts;
  }

 private:
  const image_pack_settings& s_;
};

class image_pack : public pipeline::pack_command {
 public:
  void add_options(po::options_description& desc) override {
    auto& o = s_.o;
    // Before the options: each shows its target's value as its default (cli::in_range).
    o.shard_records = 10000;
    o.shard_bytes = 1ULL << 30;
    desc.add_options()("input,i", po::value(&o.inputs)->required()->multitoken(),
                       "image files (PNG, JPEG, DICOM; told from the content), folders (every "
                       "file below them) or lists (.csv/.tsv with a path column)")(
        "out,o", po::value(&o.out_dir)->required(),
        "library folder to create (must not exist or be empty)")(
        "resume", po::bool_switch(&o.resume),
        "continue a pack of the same inputs into --out that did not complete")(
        "shard-size", cli::in_range(o.shard_records, "shard-size", 1, cli::rows_max),
        "images per shard, at most")(
        "shard-bytes", cli::in_range(o.shard_bytes, "shard-bytes", 1, 1LL << 40),
        "a shard is closed once its images hold this many bytes: a rank holds about two "
        "shards in memory")("path-column", po::value(&s_.path_column),
                            "a list's column naming each image, any case (default: 'path', "
                            "'file', 'filename', 'image', 'Image Index')")(
        "image-dir", po::value(&s_.image_dir),
        "folder a list's relative paths are read from (default: the list's own folder), e.g. "
        "ChestX-ray14's images/ beside Data_Entry_2017.csv")(
        "id-column", po::value(&s_.id_column),
        "a list's column holding ids (default: the path as written)")(
        "keep-columns", po::value(&s_.keep_columns),
        "a list's columns to carry to the outputs, e.g. 'Finding Labels,Patient ID'")(
        "max-pixels", cli::in_range(s_.max_pixels, "max-pixels", 1, 1LL << 40),
        "larger images (width x height, from the header) are rejects, refused before decoding")(
        "max-line-bytes", cli::in_range(o.csv.max_line_bytes, "max-line-bytes", 1, 1LL << 30),
        "a list's longer lines (or quoted records) are pack rejects");
    // The bytes are PNG, JPEG or DICOM files: deflating them again gained nothing on PNGs
    // (ratio 1.00) and made the pack 1.7x slower (384 1024 x 1024 PNGs: 8.6 s against 5.1 s).
    o.shard_writing.deflate_level = 0;
  }
  void check(const po::variables_map& vm) override {
    if (vm.count("image-dir") && s_.image_dir.empty())
      throw usage_error("pack images: --image-dir is empty; name the images' folder");
    s_.o.csv.keep_columns = cli::split_commas(s_.keep_columns);
    // Kept columns become shard fields and output columns: names of their own.
    std::vector<std::string> seen;
    for (const auto& k : s_.o.csv.keep_columns) {
      const auto name = lower(k);
      const auto& own = image_fields();
      if (k.empty() || std::find(own.begin(), own.end(), name) != own.end() ||
          pipeline::is_hit_list_column(name) || std::count(seen.begin(), seen.end(), name))
        throw usage_error("pack images: --keep-columns '" + k + "' is empty, given twice, or a name the "
                          "library or its outputs use (id, format, width, height, channels, "
                          "bit_depth, bytes, shard, row, rank, score)");
      seen.push_back(name);
    }
    auto config = json{{"max_pixels", s_.max_pixels},
                       {"path_column", s_.path_column},
                       {"id_column", s_.id_column}};
    if (!s_.image_dir.empty()) {  // (absent from packs made before the option: they resume)
      if (!fs::is_directory(s_.image_dir))
        throw usage_error("pack images: --image-dir '" + s_.image_dir + "' is not a folder");
      config["image_dir"] = fs::weakly_canonical(fs::absolute(s_.image_dir)).string();
    }
    s_.o.kind_config = config.dump();
  }
  std::string run(dist::context& ctx, std::function<bool()> stop_requested) override {
    s_.o.stop_requested = std::move(stop_requested);
    image_reader reader(s_);
    pack::pack_reader k;
    k.kind = image_library_kind;
    k.schema = image_shard_schema;
    k.fields = image_fields();
    k.fields.insert(k.fields.end(), s_.o.csv.keep_columns.begin(), s_.o.csv.keep_columns.end());
    k.folders = true;
    k.check_inputs = [&] {
      std::vector<std::string> formats;
      for (const auto& in : s_.o.inputs) {
        if (fs::is_directory(in)) {
          formats.push_back("folder");
        } else if (is_list(in)) {
          check_list_columns(in, s_.path_column, s_.id_column, s_.o.csv.keep_columns);
          formats.push_back("list");
        } else {
          if (!s_.o.csv.keep_columns.empty() || !s_.path_column.empty() || !s_.id_column.empty() ||
              !s_.image_dir.empty())
            throw usage_error(
                "pack images: --path-column, --id-column, --keep-columns and --image-dir are for "
                "lists (.csv/.tsv); '" +
                in + "' is an image");
          formats.push_back("file");
        }
      }
      if (!s_.o.csv.keep_columns.empty() &&
          std::count(formats.begin(), formats.end(), "list") != std::ptrdiff_t(formats.size()))
        throw usage_error("pack images: --keep-columns needs every input to be a list (.csv/.tsv)");
      if (!s_.image_dir.empty() && std::count(formats.begin(), formats.end(), "list") == 0)
        throw usage_error("pack images: --image-dir is for lists (.csv/.tsv); no input is one");
      return formats;
    };
    k.read_input = [&](std::size_t i, const std::string& format, pack::shard_sink& sink) {
      const auto& in = s_.o.inputs[i];
      if (format == "folder") return reader.read_folder(in, sink);
      if (format == "list") return reader.read_list(in, sink);
      pack::read_counts counts;
      reader.add_file(in, fs::path(in).lexically_normal().string(), in, 0, {}, sink, counts);
      return counts;
    };
    const auto s = pack::pack_library(ctx, s_.o, k);
    // (The path is added whole: a buffer would cut a long one.)
    auto text = "read " + std::to_string(s.n_rows_read) + " files: " + std::to_string(s.n_records) +
                " images packed into " + std::to_string(s.n_shards) + " shard(s) in " +
                s_.o.out_dir + ", " + std::to_string(s.n_pack_rejects) + " pack rejects\n";
    if (s.n_pack_rejects)
      text += "files that could not be packed, with reasons: " +
              (fs::path(s_.o.out_dir) / "pack_rejects.csv").string() + "\n";
    return text;
  }

 private:
  image_pack_settings s_;
};

// report.html's picture of a hit: the image from its shard, its longer side scaled to 128 pixels
// (Pillow's bilinear), as an <img> with a PNG data: URI.
std::string thumbnail_html(const std::map<std::string, std::string>& hit, const std::string& library_dir) {
  const auto shard = hit.find("shard"), row = hit.find("row");
  if (shard == hit.end() || row == hit.end() || library_dir.empty()) return "";
  // The shard named by hits.csv must be a file of this library, not a path elsewhere.
  if (shard->second.find('/') != std::string::npos || shard->second.find("..") != std::string::npos)
    return "";
  const auto& row_text = row->second;
  if (row_text.empty() || row_text.size() > 19 ||
      row_text.find_first_not_of("0123456789") != std::string::npos)
    throw error("row '" + row_text + "' is not a row number");
  const auto r = std::stoull(row_text);
  io::shard_reader reader((fs::path(library_dir) / shard->second).string(), image_shard_schema,
                          image_fields());
  // The library may have been packed again since the run: only the same record is drawn.
  const auto id = hit.find("id");
  if (r >= reader.n_records() || id == hit.end() || reader.read("id", r, r + 1)[0] != id->second)
    throw error("not drawn: row " + row_text + " of " + shard->second +
                " is not this hit's image any more (was the library packed again?)");
  const auto bytes = reader.read("bytes", r, r + 1);
  const auto img = decode(bytes[0]);
  const double scale = 128.0 / std::max(img.width, img.height);
  const auto h = std::max<std::uint32_t>(1, std::uint32_t(img.height * std::min(1.0, scale) + 0.5));
  const auto w = std::max<std::uint32_t>(1, std::uint32_t(img.width * std::min(1.0, scale) + 0.5));
  const auto small = resize_bilinear(img, h, w);
  return "<img alt=\"image\" width=\"" + std::to_string(w) + "\" height=\"" + std::to_string(h) +
         "\" src=\"data:image/png;base64," + base64(encode_png(small)) + "\">";
}

}  // namespace

const std::vector<std::string>& image_fields() {
  static const std::vector<std::string> fields = {"id",       "format",    "width", "height",
                                                  "channels", "bit_depth", "bytes"};
  return fields;
}

void register_image_library_kind() {
  pipeline::register_library_kind(
      {image_library_kind, image_shard_schema, image_fields(), {"format", "width", "height"},
       "pack PNG, JPEG and DICOM files, folders or lists (CSV/TSV) into HDF5 shards +\n"
       "manifest (original bytes kept)",
       "usage: hpcscreen pack images --input FILE|FOLDER|LIST.csv... --out DIR\n"
       "       mpirun -np N hpcscreen pack images ... (ranks take whole inputs)",
       [] { return std::make_unique<image_pack>(); }, thumbnail_html});
}

}  // namespace hpcscreen::image
