#include "hpcscreen/pack/text_source.hpp"

#include <zstd.h>

#include <algorithm>
#include <boost/iostreams/device/file_descriptor.hpp>
#include <boost/iostreams/filter/bzip2.hpp>
#include <boost/iostreams/filter/gzip.hpp>
#include <boost/iostreams/filter/lzma.hpp>
#include <boost/iostreams/filtering_streambuf.hpp>
#include <boost/iostreams/read.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "hpcscreen/core/error.hpp"

namespace bio = boost::iostreams;

namespace hpcscreen::pack {
namespace {

bool starts_with(const std::string& s, const char* magic, std::size_t n) {
  return s.size() >= n && std::memcmp(s.data(), magic, n) == 0;
}

compression compression_of(const std::string& head) {
  if (starts_with(head, "\x1f\x8b", 2)) return compression::gzip;
  if (head.size() >= 4 && starts_with(head, "BZh", 3) && head[3] >= '1' && head[3] <= '9')
    return compression::bzip2;
  if (starts_with(head,
                  "\xfd"
                  "7zXZ\0",
                  6))
    return compression::xz;
  if (starts_with(head, "\x28\xb5\x2f\xfd", 4)) return compression::zstd;
  // A zstd skippable frame (magic 0x184D2A50 to 0x184D2A5F), which pzstd writes first.
  if (head.size() >= 4 && (static_cast<unsigned char>(head[0]) & 0xf0) == 0x50 &&
      starts_with(head.substr(1), "\x2a\x4d\x18", 3))
    return compression::zstd;
  return compression::none;
}

// Names content that is not text, or returns "" when it may be text.
std::string non_text(const std::string& head) {
  if (compression_of(head) != compression::none)
    return std::string(compression_name(compression_of(head))) + "-compressed data";
  if (starts_with(head, "PK\x03\x04", 4)) return "a zip archive (unzip it first)";
  if (starts_with(head, "7z\xbc\xaf\x27\x1c", 6)) return "a 7-Zip archive (extract it first)";
  if (starts_with(head, "\x1f\x9d", 2)) return "Unix compress (.Z) data (decompress it first)";
  if (starts_with(head, "\x04\x22\x4d\x18", 4)) return "LZ4 data (decompress it first)";
  if (starts_with(head, "\x89HDF\r\n\x1a\n", 8)) return "an HDF5 file (a library shard?)";
  if (starts_with(head, "\xff\xfe", 2) || starts_with(head, "\xfe\xff", 2))
    return "UTF-16 text (convert it to UTF-8 or ASCII)";
  const auto nul = head.find('\0');
  if (nul != std::string::npos) {
    return "binary data (a NUL byte at byte " + std::to_string(nul) + " of the content)";
  }
  return "";
}

// zstd through libzstd's streaming API as a Boost.Iostreams input filter. Boost 1.74's own
// zstd_decompressor ends quietly at a truncated frame; this one throws, like the other three.
class zstd_input_filter {
 public:
  using char_type = char;
  struct category : bio::multichar_input_filter_tag {};

  zstd_input_filter() : state_(std::make_shared<state>()) {}

  template <class Source>
  std::streamsize read(Source& src, char* s, std::streamsize n) {
    auto& st = *state_;
    ZSTD_outBuffer out{s, static_cast<std::size_t>(n), 0};
    for (;;) {
      if (st.in.pos == st.in.size && !st.at_eof) {
        const auto got =
            bio::read(src, st.buffer.data(), static_cast<std::streamsize>(st.buffer.size()));
        if (got <= 0) {
          st.at_eof = true;
        } else {
          st.in = {st.buffer.data(), static_cast<std::size_t>(got), 0};
        }
      }
      const bool input_left = st.in.pos < st.in.size;
      if (!input_left && !st.frame_open)
        return out.pos > 0 ? static_cast<std::streamsize>(out.pos) : -1;
      const std::size_t hint = ZSTD_decompressStream(st.stream.get(), &out, &st.in);
      if (ZSTD_isError(hint))
        throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(hint));
      st.frame_open = hint != 0;
      if (out.pos > 0) return static_cast<std::streamsize>(out.pos);
      if (!input_left && st.at_eof && st.frame_open) {
        throw std::runtime_error("zstd: the data ends inside a frame (truncated file)");
      }
    }
  }

 private:
  struct state {
    std::unique_ptr<ZSTD_DStream, std::size_t (*)(ZSTD_DStream*)> stream{ZSTD_createDStream(),
                                                                         ZSTD_freeDStream};
    std::vector<char> buffer = std::vector<char>(ZSTD_DStreamInSize());
    ZSTD_inBuffer in{nullptr, 0, 0};
    bool at_eof = false;
    bool frame_open = false;
  };
  std::shared_ptr<state> state_;
};

std::string read_head(const std::string& path, std::size_t n) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw usage_error("cannot open input '" + path + "': " + std::strerror(errno));
  std::string head(n, '\0');
  f.read(head.data(), static_cast<std::streamsize>(n));
  head.resize(static_cast<std::size_t>(f.gcount()));
  return head;
}

// A decompressor's failure in words: Boost's own message is "iostream error" for most.
std::string codec_failure(const std::exception& e) {
  if (const auto* b = dynamic_cast<const bio::bzip2_error*>(&e)) {
    const int code = b->error();
    if (code == bio::bzip2::data_error) return "bzip2: data integrity (CRC) error";
    if (code == bio::bzip2::data_error_magic) return "bzip2: a stream does not start as bzip2";
    if (code == bio::bzip2::unexpected_eof) return "bzip2: the data ends inside a stream";
    return "bzip2: error " + std::to_string(code);
  }
  if (const auto* g = dynamic_cast<const bio::gzip_error*>(&e)) {
    switch (g->error()) {
      case bio::gzip::bad_crc:
        return "gzip: CRC mismatch";
      case bio::gzip::bad_length:
        return "gzip: length mismatch";
      case bio::gzip::bad_header:
        return "gzip: a member does not start as gzip (damage, or bytes after the last member)";
      case bio::gzip::bad_footer:
        return "gzip: malformed member trailer";
      case bio::gzip::zlib_error:
        return "gzip: invalid deflate data (zlib error " + std::to_string(g->zlib_error_code()) +
               ")";
      default:
        return "gzip: error " + std::to_string(g->error());
    }
  }
  if (const auto* x = dynamic_cast<const bio::lzma_error*>(&e)) {
    return x->error() == bio::lzma::data_error ? "xz: corrupt data"
                                               : "xz: error " + std::to_string(x->error());
  }
  return e.what();
}

}  // namespace

const char* compression_name(compression c) {
  switch (c) {
    case compression::none:
      return "plain";
    case compression::gzip:
      return "gzip";
    case compression::bzip2:
      return "bzip2";
    case compression::xz:
      return "xz";
    case compression::zstd:
      return "zstd";
  }
  return "?";
}

struct text_source::impl {
  compression kind = compression::none;
  bio::filtering_istreambuf chain;
  std::vector<char> buffer = std::vector<char>(1 << 18);
  std::size_t pos = 0;
  std::size_t end = 0;
  bool at_eof = false;
  bool pending_cr = false;  // the last line ended at '\r': a '\n' right after it belongs to it
  std::string head;         // the first bytes of the text, for probe_content

  // Compressed inputs are decompressed ahead on a thread of their own, so that decompression
  // (bzip2: the slowest stage of a pack) overlaps splitting and shard writing. At most
  // max_blocks_ahead blocks wait, so memory stays bounded.
  static constexpr std::size_t block_bytes = 1 << 20;
  static constexpr std::size_t max_blocks_ahead = 4;
  std::thread decompressor;
  std::mutex mutex;
  std::condition_variable block_ready, space_free;
  std::deque<std::string> blocks;
  bool decompressor_done = false;
  bool stop = false;
  std::string failure;  // the decompressor's error, reported when its blocks are used up

  // A block is read in pieces: where the data is damaged, what decompressed before the damage
  // is still handed out (so the error names the last line read whole), not lost with the block.
  static constexpr std::size_t piece_bytes = 1 << 14;

  void decompress_ahead() {
    for (;;) {
      std::string block(block_bytes, '\0');
      std::size_t filled = 0;
      std::string error;
      bool ended = false;
      while (filled < block.size()) {
        std::streamsize got = 0;
        try {
          got = chain.sgetn(block.data() + filled, static_cast<std::streamsize>(std::min(
                                                       piece_bytes, block.size() - filled)));
        } catch (const std::exception& e) {
          error = codec_failure(e);
          break;
        }
        if (got <= 0) {
          ended = true;
          break;
        }
        filled += static_cast<std::size_t>(got);
      }
      block.resize(filled);
      std::unique_lock<std::mutex> lock(mutex);
      if (filled > 0) {
        space_free.wait(lock, [&] { return stop || blocks.size() < max_blocks_ahead; });
        if (stop) return;
        blocks.push_back(std::move(block));
        block_ready.notify_one();
      }
      if (!error.empty() || ended) {
        failure = error;
        decompressor_done = true;
        block_ready.notify_all();
        return;
      }
    }
  }

  ~impl() {
    if (decompressor.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        stop = true;
      }
      space_free.notify_all();
      decompressor.join();
    }
  }
};

text_source::text_source(const std::string& path, const text_source_options& options)
    : impl_(std::make_unique<impl>()), path_(path), options_(options) {
  auto& s = *impl_;
  s.kind = compression_of(read_head(path, 8));
  switch (s.kind) {
    case compression::gzip:
      s.chain.push(bio::gzip_decompressor());
      break;
    case compression::bzip2:
      s.chain.push(bio::bzip2_decompressor());
      break;
    case compression::xz:
      s.chain.push(bio::lzma_decompressor());
      break;
    case compression::zstd:
      s.chain.push(zstd_input_filter());
      break;
    case compression::none:
      break;
  }
  try {
    s.chain.push(bio::file_descriptor_source(path, std::ios::binary));
  } catch (const std::exception& e) {
    throw usage_error("cannot open input '" + path + "': " + e.what());
  }
  if (s.kind != compression::none) s.decompressor = std::thread([&s] { s.decompress_ahead(); });
  // Look at a whole first block before handing out any line, so that a binary file is refused
  // rather than read as one garbage record.
  while (s.end < 4096 && fill()) {
  }
  std::string head(s.buffer.data(), std::min<std::size_t>(s.end, 1 << 16));
  if (starts_with(head, "\xef\xbb\xbf", 3)) {
    s.pos = 3;
    head.erase(0, 3);
  }
  const auto what = non_text(head);
  s.head = std::move(head);
  if (!what.empty() && s.kind != compression::none) {
    // Damaged compressed data decompresses to garbage until a check fails (bzip2 checks a
    // block's CRC at its end, up to 900 kB on): read on past the first block so the damage,
    // if that is what it is, is reported as damage (fill throws) rather than as binary content.
    for (std::size_t before = 0; s.end < (std::size_t(2) << 20) && s.end != before;) {
      before = s.end;
      if (s.end == s.buffer.size()) s.buffer.resize(2 * s.buffer.size());
      if (!fill()) break;
    }
  }
  if (!what.empty()) {
    throw usage_error("input '" + path + "' is not text: " +
                      (s.kind == compression::none
                           ? "found " + what
                           : std::string("found ") + compression_name(s.kind) +
                                 "-compressed data holding " + what));
  }
}

text_source::~text_source() = default;

compression text_source::kind() const {
  return impl_->kind;
}

// Appends decompressed bytes after s.end (moving unread bytes to the front when needed).
bool text_source::fill() {
  auto& s = *impl_;
  if (s.at_eof) return false;
  if (s.pos > 0 && s.pos == s.end) s.pos = s.end = 0;
  if (s.end == s.buffer.size()) {
    if (s.pos == 0) return true;  // full of unread bytes: the caller consumes them first
    std::memmove(s.buffer.data(), s.buffer.data() + s.pos, s.end - s.pos);
    s.end -= s.pos;
    s.pos = 0;
  }
  if (s.decompressor.joinable()) {
    std::string block;
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      s.block_ready.wait(lock, [&] { return !s.blocks.empty() || s.decompressor_done; });
      if (s.blocks.empty()) {
        if (!s.failure.empty()) {
          throw error(damaged_message(s.failure));
        }
        s.at_eof = true;
        return false;
      }
      block = std::move(s.blocks.front());
      s.blocks.pop_front();
    }
    s.space_free.notify_one();
    if (s.pos > 0) {
      std::memmove(s.buffer.data(), s.buffer.data() + s.pos, s.end - s.pos);
      s.end -= s.pos;
      s.pos = 0;
    }
    if (s.end + block.size() > s.buffer.size()) s.buffer.resize(s.end + block.size());
    std::memcpy(s.buffer.data() + s.end, block.data(), block.size());
    s.end += block.size();
    return true;
  }
  std::streamsize got = 0;
  try {
    got = s.chain.sgetn(s.buffer.data() + s.end,
                        static_cast<std::streamsize>(s.buffer.size() - s.end));
  } catch (const std::exception& e) {
    throw error(damaged_message(codec_failure(e)));
  }
  if (got <= 0) {
    s.at_eof = true;
    return false;
  }
  s.end += static_cast<std::size_t>(got);
  return true;
}

std::string text_source::damaged_message(const std::string& why) const {
  const std::string last = line_number_ == 0
                               ? std::string("before its first line")
                               : "after line " + std::to_string(line_number_) +
                                     " (the last line read whole)";
  return "input '" + path_ + "': the " + compression_name(impl_->kind) +
         " data is corrupt or truncated " + last +
         "; the damage lies within the next compressed block (" + why + ")";
}

bool text_source::next_line(std::string& line) {
  auto& s = *impl_;
  line.clear();
  line_too_long_ = false;
  const std::uint64_t limit = options_.max_line_bytes;
  bool got_any = false;
  for (;;) {
    if (s.pos == s.end && !fill()) {
      if (!got_any) return false;
      break;
    }
    if (s.pos == s.end) continue;
    if (s.pending_cr) {
      s.pending_cr = false;
      if (s.buffer[s.pos] == '\n') {
        ++s.pos;
        continue;
      }
    }
    got_any = true;
    const char* begin = s.buffer.data() + s.pos;
    const char* stop = s.buffer.data() + s.end;
    const char* p = begin;
    while (p != stop && *p != '\n' && *p != '\r') ++p;
    std::size_t n = static_cast<std::size_t>(p - begin);
    if (limit > 0 && line.size() + n > limit) {
      line_too_long_ = true;
      n = static_cast<std::size_t>(limit > line.size() ? limit - line.size() : 0);
    }
    line.append(begin, n);
    if (p == stop) {
      s.pos = s.end;
      continue;
    }
    s.pending_cr = *p == '\r';
    s.pos = static_cast<std::size_t>(p - s.buffer.data()) + 1;
    break;
  }
  ++line_number_;
  return true;
}

content_probe probe_content(const std::string& path, std::size_t sample_bytes) {
  content_probe probe;
  probe.kind = compression_of(read_head(path, 8));
  try {
    text_source in(path);
    probe.sample = in.impl_->head.substr(0, sample_bytes);
  } catch (const usage_error& e) {
    probe.refusal = e.what();
  }
  return probe;
}

}  // namespace hpcscreen::pack
