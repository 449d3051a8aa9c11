// PNG (libpng), JPEG (libjpeg-turbo) and DICOM (GDCM) to the decoded 8-bit image of
// data_schemas/image_library.md. The C decoders report errors and warnings through callbacks:
// both end the decode (setjmp/longjmp inside this file only) and become an image_reject, so a
// warning such as libjpeg's "premature end of data" never yields a grey-filled image.
#include "hpcscreen/image/decode.hpp"

#include <gdcmAttribute.h>
#include <gdcmImageReader.h>
#include <gdcmReader.h>
#include <gdcmTrace.h>
#include <gdcmVersion.h>
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <sstream>

namespace hpcscreen::image {
namespace {

void check_pixels(std::uint64_t w, std::uint64_t h, std::uint64_t max_pixels, const char* what) {
  if (w == 0 || h == 0)
    throw image_reject("corrupt", std::string(what) + " header gives a size of 0");
  if (w * h > max_pixels) {
    throw image_reject("too_many_pixels", std::string(what) + " header says " + std::to_string(w) +
                                              " x " + std::to_string(h) + " = " +
                                              std::to_string(w * h) + " pixels, over the limit of " +
                                              std::to_string(max_pixels) +
                                              " (--max-pixels); refused before decoding");
  }
}

// ---------------------------------------------------------------------------------------- PNG

struct png_state {
  std::string_view bytes;
  std::size_t pos = 0;
  bool ran_out = false;
  std::string message;
  std::jmp_buf jump;
};

void png_fail(png_structp png, png_const_charp message) {
  auto* s = static_cast<png_state*>(png_get_error_ptr(png));
  if (s->message.empty()) s->message = message ? message : "libpng error";
  std::longjmp(s->jump, 1);
}

// Any warning ends the decode: libpng warns about data a strict reader must refuse (an
// ancillary chunk's CRC, extra compressed data).
void png_warn(png_structp png, png_const_charp message) { png_fail(png, message); }

void png_read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* s = static_cast<png_state*>(png_get_io_ptr(png));
  if (s->bytes.size() - s->pos < n) {
    s->ran_out = true;
    png_fail(png, "the file ends early");
  }
  std::memcpy(out, s->bytes.data() + s->pos, n);
  s->pos += n;
}

image_u8 decode_png(std::string_view bytes, std::uint64_t max_pixels, image_header* header) {
  png_state s;
  s.bytes = bytes;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s, png_fail, png_warn);
  if (!png) throw image_reject("corrupt", "libpng could not start");
  png_infop info = png_create_info_struct(png);
  image_u8 img;
  std::vector<png_bytep> rows;
  std::vector<std::uint8_t> raw;
  std::string failure;
  png_colorp palette = nullptr;
  int n_palette = 0;
  volatile int bad_index = -1;
  volatile bool too_many = false;
  std::string too_many_text;
  if (setjmp(s.jump) == 0) {
    png_set_read_fn(png, &s, png_read_bytes);
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_set_benign_errors(png, 0);
    // Chunks the decode does not use (colour management, text, time, transparency: alpha is
    // dropped) are skipped unread, CRC still checked: libpng would otherwise warn about their
    // contents (a gamma of 0, an sRGB beside an iCCP), and a warning is a reject.
    static const png_byte unused[] =
        "gAMA\0cHRM\0sRGB\0iCCP\0iTXt\0tEXt\0zTXt\0tIME\0pHYs\0"
        "sBIT\0bKGD\0hIST\0sPLT\0oFFs\0pCAL\0sCAL\0eXIf\0tRNS";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, unused, (sizeof unused) / 5);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    const auto w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    const int file_channels = color == PNG_COLOR_TYPE_PALETTE ? 3 : png_get_channels(png, info);
    if (header) *header = {"png", w, h, file_channels, depth};
    if (static_cast<std::uint64_t>(w) * h > max_pixels) {
      too_many = true;
      too_many_text = std::to_string(w) + " x " + std::to_string(h);
    } else {
      // Palette indices are read as they are and expanded below: libpng would give an index
      // beyond PLTE black, where it is an error (PNG spec 11.2.3).
      if (color == PNG_COLOR_TYPE_PALETTE) {
        png_get_PLTE(png, info, &palette, &n_palette);
        if (depth < 8) png_set_packing(png);
      }
      if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
      // Alpha is dropped, never composited: an alpha channel, and tRNS however it expands.
      png_set_strip_alpha(png);
      png_set_interlace_handling(png);
      png_read_update_info(png, info);
      const int channels = png_get_channels(png, info);
      const int out_depth = png_get_bit_depth(png, info);
      const auto row_bytes = png_get_rowbytes(png, info);
      raw.resize(row_bytes * h);
      rows.resize(h);
      for (png_uint_32 y = 0; y < h; ++y) rows[y] = raw.data() + y * row_bytes;
      png_read_image(png, rows.data());
      png_read_end(png, nullptr);
      img.width = w;
      img.height = h;
      img.channels = channels;
      img.pixels.resize(static_cast<std::size_t>(w) * h * channels);
      if (palette) {
        img.channels = 3;
        img.pixels.resize(static_cast<std::size_t>(w) * h * 3);
        for (std::size_t i = 0; i < raw.size(); ++i) {
          if (raw[i] >= n_palette) {
            bad_index = raw[i];
            break;
          }
          img.pixels[3 * i] = palette[raw[i]].red;
          img.pixels[3 * i + 1] = palette[raw[i]].green;
          img.pixels[3 * i + 2] = palette[raw[i]].blue;
        }
      } else if (out_depth == 16) {  // THE rule: round(v / 257), never a tie
        for (std::size_t i = 0; i < img.pixels.size(); ++i) {
          const unsigned v = (unsigned(raw[2 * i]) << 8) | raw[2 * i + 1];
          img.pixels[i] = static_cast<std::uint8_t>((v + 128) / 257);
        }
      } else {
        img.pixels.assign(raw.begin(), raw.end());
      }
    }
  } else {
    failure = s.message;
  }
  png_destroy_read_struct(&png, &info, nullptr);
  if (too_many) check_pixels(header->width, header->height, max_pixels, "PNG");
  if (failure.empty() && bad_index >= 0)
    failure = "palette index " + std::to_string(bad_index) + " beyond the PLTE's " +
              std::to_string(n_palette) + " entries";
  if (!failure.empty()) {
    if (s.ran_out) throw image_reject("truncated", "PNG: the file ends early (" + failure + ")");
    throw image_reject("corrupt", "PNG: " + failure);
  }
  return img;
}

// --------------------------------------------------------------------------------------- JPEG

struct jpeg_failure {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  std::string message;
  int code = 0;
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* f = reinterpret_cast<jpeg_failure*>(cinfo->err);
  char text[JMSG_LENGTH_MAX];
  cinfo->err->format_message(cinfo, text);
  if (f->message.empty()) {
    f->message = text;
    f->code = cinfo->err->msg_code;
  }
  std::longjmp(f->jump, 1);
}

// Warnings (level -1: corrupt data, premature end of data) end the decode; trace messages
// (levels >= 0) are ignored.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_fail(cinfo);
}

image_u8 decode_jpeg(std::string_view bytes, std::uint64_t max_pixels, image_header* header,
                     const char* what = "JPEG") {
  jpeg_decompress_struct cinfo;
  jpeg_failure f;
  cinfo.err = jpeg_std_error(&f.mgr);
  f.mgr.error_exit = jpeg_fail;
  f.mgr.emit_message = jpeg_message;
  image_u8 img;
  std::string reason, detail;
  if (setjmp(f.jump) == 0) {
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()),
                 static_cast<unsigned long>(bytes.size()));
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK) {
      reason = "corrupt";
      detail = std::string(what) + ": no image in the stream";
    } else {
      if (header) {
        *header = {"jpeg", cinfo.image_width, cinfo.image_height, cinfo.num_components,
                   cinfo.data_precision};
      }
      const std::uint64_t w = cinfo.image_width, h = cinfo.image_height;
      if (w == 0 || h == 0 || w * h > max_pixels) {
        reason = "too_many_pixels";
      } else if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        reason = "unsupported";
        detail = std::string(what) + ": CMYK/YCCK colour is not supported (convert to RGB with "
                                     "a colour-managed tool; data_schemas/image_library.md)";
      } else if (cinfo.data_precision != 8) {
        reason = "unsupported";
        detail = std::string(what) + ": " + std::to_string(cinfo.data_precision) +
                 "-bit JPEG is not read (8-bit only)";
      } else if (cinfo.num_components != 1 && cinfo.num_components != 3) {
        reason = "unsupported";
        detail = std::string(what) + ": " + std::to_string(cinfo.num_components) + " components";
      } else {
        cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
        jpeg_start_decompress(&cinfo);
        img.width = cinfo.output_width;
        img.height = cinfo.output_height;
        img.channels = cinfo.output_components;
        const std::size_t stride = std::size_t(img.width) * img.channels;
        img.pixels.resize(stride * img.height);
        while (cinfo.output_scanline < cinfo.output_height) {
          JSAMPROW row = img.pixels.data() + stride * cinfo.output_scanline;
          jpeg_read_scanlines(&cinfo, &row, 1);
        }
        jpeg_finish_decompress(&cinfo);
      }
    }
  } else {
    const bool ended = f.code == JWRN_JPEG_EOF || f.code == JERR_INPUT_EOF ||
                       f.code == JERR_INPUT_EMPTY;
    reason = ended ? "truncated" : "corrupt";
    detail = std::string(what) + ": " + f.message;
  }
  jpeg_destroy_decompress(&cinfo);
  if (reason == "too_many_pixels")
    check_pixels(header->width, header->height, max_pixels, what);
  if (!reason.empty()) throw image_reject(reason, detail);
  return img;
}

// -------------------------------------------------------------------------------------- DICOM

std::string element_text(const gdcm::DataSet& ds, gdcm::Tag tag) {
  if (!ds.FindDataElement(tag)) return "";
  const auto* bv = ds.GetDataElement(tag).GetByteValue();
  if (!bv) return "";
  std::string s(bv->GetPointer(), bv->GetLength());
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(s.begin());
  return s;
}

// The first value of a multi-valued DS ("40\\400"); false when absent or empty.
bool first_decimal(const gdcm::DataSet& ds, gdcm::Tag tag, double& out) {
  auto s = element_text(ds, tag);
  s = s.substr(0, s.find('\\'));
  if (s.empty()) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  if (end == s.c_str()) throw image_reject("corrupt", "DICOM: " + tag.PrintAsPipeSeparatedString() + " is not a number ('" + s + "')");
  return true;
}

[[noreturn]] void dicom_reject(const std::string& reason, const std::string& detail) {
  throw image_reject(reason, "DICOM: " + detail);
}

bool is_jpeg_lossy(const gdcm::TransferSyntax& ts) {
  return ts == gdcm::TransferSyntax::JPEGBaselineProcess1 ||
         ts == gdcm::TransferSyntax::JPEGExtendedProcess2_4;
}

// --- GDCM on hostile files. Debian's GDCM keeps its assertions, and some malformed files make
// it divide by zero or read out of bounds. While a thread decodes a DICOM file, an assertion
// (our __assert_fail below replaces glibc's for the process) or SIGFPE/SIGSEGV/SIGBUS jumps back
// to the decode, which rejects the file; what GDCM had allocated for it is leaked (a few times
// the file's size). Anywhere else both behave as before: message and abort, or the default
// action of the signal.
thread_local sigjmp_buf* gdcm_escape = nullptr;
thread_local const char* gdcm_failure = nullptr;

void on_fault(int sig) {
  if (gdcm_escape) {
    gdcm_failure = sig == SIGFPE ? "an arithmetic fault" : "an invalid memory access";
    siglongjmp(*gdcm_escape, 1);
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void install_fault_handlers() {
  static const bool installed = [] {
    for (int sig : {SIGFPE, SIGSEGV, SIGBUS}) {
      struct sigaction sa {};
      sa.sa_handler = on_fault;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_NODEFER;
      sigaction(sig, &sa, nullptr);
    }
    return true;
  }();
  (void)installed;
}

// Unsigned 16- and 32-bit values at b[p], in either byte order (the caller checks the bounds).
std::uint32_t read_u16(std::string_view b, std::size_t p, bool big) {
  const auto* u = reinterpret_cast<const unsigned char*>(b.data() + p);
  return big ? (u[0] << 8 | u[1]) : (u[1] << 8 | u[0]);
}
std::uint32_t read_u32(std::string_view b, std::size_t p, bool big) {
  const auto* u = reinterpret_cast<const unsigned char*>(b.data() + p);
  return big ? (std::uint32_t(u[0]) << 24 | u[1] << 16 | u[2] << 8 | u[3])
             : (std::uint32_t(u[3]) << 24 | u[2] << 16 | u[1] << 8 | u[0]);
}

// The declared lengths of the last PixelData element (and of its fragments when encapsulated)
// must fit in the file: GDCM allocates what a length field claims before reading it. Returns the
// bytes the file holds after a native PixelData's header (GDCM pads a PixelData the file cuts
// short, so the decode compares this with what the image needs); SIZE_MAX when encapsulated or
// not found. (Out of line: no local of it lives across the sigsetjmp of decode_dicom.)
[[gnu::noinline]] std::size_t check_pixel_data_lengths(std::string_view bytes) {
  for (const bool big : {false, true}) {
    const std::string_view tag = big ? std::string_view("\x7f\xe0\x00\x10", 4)
                                     : std::string_view("\xe0\x7f\x10\x00", 4);
    const auto at = bytes.rfind(tag);
    if (at == std::string_view::npos) continue;
    auto u32 = [&](std::size_t p) -> std::uint64_t {
      return p + 4 > bytes.size() ? UINT64_MAX : read_u32(bytes, p, big);
    };
    const auto vr = bytes.substr(at + 4, 2);
    const bool explicit_vr = vr == "OB" || vr == "OW";
    const std::size_t value = at + (explicit_vr ? 12 : 8);
    const auto length = u32(at + (explicit_vr ? 8 : 4));
    if (length == UINT64_MAX) dicom_reject("truncated", "the file ends inside the PixelData header");
    const std::size_t held = bytes.size() - std::min(bytes.size(), value);
    if (length != 0xffffffffu) {
      if (value + length > bytes.size() + 1)  // (an odd length padded by one byte is tolerated)
        dicom_reject("truncated", "PixelData says " + std::to_string(length) +
                                      " bytes, the file holds " + std::to_string(held));
      return held;
    }
    // Encapsulated: items (FFFE,E000) with their lengths, up to the delimiter (FFFE,E0DD).
    for (std::size_t p = value; p + 8 <= bytes.size();) {
      const auto item_tag = u32(p);
      const auto item_length = u32(p + 4);
      const bool item = big ? item_tag == 0xfffee000u : item_tag == 0xe000fffeu;
      if (!item) return SIZE_MAX;  // the delimiter, or something GDCM will judge
      if (item_length == 0xffffffffu || p + 8 + item_length > bytes.size())
        dicom_reject("truncated", "a PixelData fragment says " + std::to_string(item_length) +
                                      " bytes, more than the file holds");
      p += 8 + item_length;
    }
    return SIZE_MAX;
  }
  return SIZE_MAX;
}

// GDCM parses nested sequences by recursion: a file of a few hundred KB nesting thousands of
// levels overflows the thread's stack, which no handler survives. The nesting is counted here
// first, without recursion, and a file nesting deeper than any real one is a reject. Reads
// explicit and implicit VR, either byte order, and a deflated data set (inflated with zlib);
// where the structure stops making sense the count stops and GDCM judges the file.
constexpr int max_sequence_depth = 64;

bool is_long_vr(std::string_view vr) {
  for (const char* v :
       {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
    if (vr == v) return true;
  return false;
}

bool looks_like_vr(std::string_view vr) {
  return vr.size() == 2 && vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z';
}

// The raw deflate stream in `in`, inflated; nullopt when it is damaged. Stops at `limit` bytes
// (then `*over` is set).
std::optional<std::string> inflate_raw(std::string_view in, std::size_t limit, bool* over) {
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return std::nullopt;
  std::string out;
  char buf[1 << 16];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK && out.size() < limit) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;
  }
  inflateEnd(&z);
  *over = rc != Z_STREAM_END && out.size() >= limit;
  if (rc != Z_STREAM_END && !*over) return std::nullopt;
  return out;
}

[[gnu::noinline]] void check_sequence_depth(std::string_view bytes, std::uint64_t max_pixels) {
  std::size_t pos = bytes.size() >= 132 && bytes.substr(128, 4) == "DICM" ? 132 : 0;
  const auto u16 = read_u16;
  const auto u32 = read_u32;
  const auto too_long = [](std::size_t length, std::size_t held) {
    dicom_reject("truncated", "an element says " + std::to_string(length) +
                                  " bytes, the data set holds " + std::to_string(held) +
                                  " after it");
  };
  // The file meta group (explicit VR, little endian) names the transfer syntax.
  std::string syntax;
  while (pos + 8 <= bytes.size() && u16(bytes, pos, false) == 0x0002) {
    const auto vr = bytes.substr(pos + 4, 2);
    if (!looks_like_vr(vr)) return;
    const bool long_vr = is_long_vr(vr);
    if (long_vr && pos + 12 > bytes.size()) return;
    const std::size_t length = long_vr ? u32(bytes, pos + 8, false) : u16(bytes, pos + 6, false);
    const std::size_t value = pos + (long_vr ? 12 : 8);
    if (length > bytes.size() - std::min(bytes.size(), value)) return;
    if (u16(bytes, pos + 2, false) == 0x0010) syntax = std::string(bytes.substr(value, length));
    pos = value + length;
  }
  while (!syntax.empty() && (syntax.back() == '\0' || syntax.back() == ' ')) syntax.pop_back();
  bool explicit_vr = true, big = false;
  std::string inflated;
  std::string_view data = bytes;
  if (syntax == "1.2.840.10008.1.2") {
    explicit_vr = false;
  } else if (syntax == "1.2.840.10008.1.2.2") {
    big = true;
  } else if (syntax == "1.2.840.10008.1.2.1.99") {
    // Room for the largest image --max-pixels lets through (3 samples of 2 bytes) and its
    // attributes: a deflated data set inflating past it is a bomb.
    const std::size_t limit = 6 * max_pixels + (std::size_t(64) << 20);
    bool over = false;
    auto whole = inflate_raw(bytes.substr(pos), limit, &over);
    if (over)
      dicom_reject("too_many_pixels", "the deflated data set inflates past " +
                                          std::to_string(limit) + " bytes (--max-pixels)");
    if (!whole) return;  // damaged: GDCM judges it
    inflated = std::move(*whole);
    data = inflated;
    pos = 0;
  } else if (syntax.empty()) {  // no meta group: the VR's place says which
    explicit_vr = pos + 6 <= bytes.size() && looks_like_vr(bytes.substr(pos + 4, 2));
  }
  const bool native = syntax.empty() || syntax == "1.2.840.10008.1.2" ||
                      syntax == "1.2.840.10008.1.2.1" || syntax == "1.2.840.10008.1.2.2" ||
                      syntax == "1.2.840.10008.1.2.1.99";
  constexpr std::size_t open = SIZE_MAX;
  struct frame {
    bool sequence;
    std::size_t end;   // `open`: undefined length, closed by a delimiter
    bool explicit_vr;  // how the elements inside are encoded: the data set's own way, except
    bool big;          // inside a UN of undefined length (implicit VR little endian, PS3.5 6.2.2)
  };
  std::vector<frame> frames{{false, data.size(), explicit_vr, big}};
  int depth = 0;
  while (pos + 8 <= data.size() && !frames.empty()) {
    const auto top = frames.back();
    if (top.end != open && pos >= top.end) {
      depth -= top.sequence;
      frames.pop_back();
      continue;
    }
    const auto group = u16(data, pos, top.big), element = u16(data, pos + 2, top.big);
    const bool delimiter = group == 0xfffe;
    const std::size_t held = data.size() - pos - 8;  // after an 8-byte header
    if (top.sequence) {  // items, up to the sequence's end or its delimiter
      if (delimiter && element == 0xe000) {
        const std::size_t length = u32(data, pos + 4, top.big);
        pos += 8;
        if (length != 0xffffffffu && length > held) too_long(length, held);
        frames.push_back(
            {false, length == 0xffffffffu ? open : pos + length, top.explicit_vr, top.big});
      } else if (delimiter && element == 0xe0dd) {
        pos += 8;
        --depth;
        frames.pop_back();
      } else {
        return;
      }
      continue;
    }
    if (delimiter) {  // in a data set only an item's delimiter may stand
      if (element == 0xe00d && top.end == open) {
        pos += 8;
        frames.pop_back();
        continue;
      }
      dicom_reject("corrupt", "an item or delimiter where an element belongs");
    }
    std::string_view vr;
    std::size_t length, value;
    if (top.explicit_vr && !looks_like_vr(data.substr(pos + 4, 2))) {
      // No VR where explicit VR needs one: GDCM reads on as implicit VR, and so does this.
      frames.back().explicit_vr = false;
      continue;
    }
    if (top.explicit_vr) {
      vr = data.substr(pos + 4, 2);
      const bool long_vr = is_long_vr(vr);
      if (long_vr && pos + 12 > data.size()) return;
      length = long_vr ? u32(data, pos + 8, top.big) : u16(data, pos + 6, top.big);
      value = pos + (long_vr ? 12 : 8);
    } else {
      length = u32(data, pos + 4, top.big);
      value = pos + 8;
    }
    const bool pixel_data = group == 0x7fe0 && element == 0x0010;
    const bool undefined = length == 0xffffffffu;
    if (!undefined && length > data.size() - value) {
      if (pixel_data && length == data.size() - value + 1) return;  // an odd length's pad byte
      too_long(length, data.size() - value);
    }
    // A sequence: SQ, or (implicit VR, UN) an undefined length, or a value that starts with an
    // item.
    const bool un = vr == "UN";
    const bool sequence = !pixel_data && (vr == "SQ" || (undefined && (vr.empty() || un)) ||
                                          (!undefined && (vr.empty() || un) && length >= 8 &&
                                           u16(data, value, top.big && !un) == 0xfffe &&
                                           u16(data, value + 2, top.big && !un) == 0xe000));
    if (sequence) {
      if (++depth > max_sequence_depth)
        dicom_reject("corrupt", "sequences nested deeper than " +
                                    std::to_string(max_sequence_depth) + " levels");
      pos = value;
      // A UN sequence holds implicit VR little endian items.
      frames.push_back({true, undefined ? open : value + length, un ? false : top.explicit_vr,
                        un ? false : top.big});
    } else if (undefined) {  // encapsulated pixel data: fragments up to the delimiter
      if (!pixel_data || native)
        dicom_reject("corrupt", pixel_data ? "encapsulated PixelData under a native transfer syntax"
                                           : "an element of undefined length that is no sequence");
      pos = value;
      while (pos + 8 <= data.size() &&
             !(u16(data, pos, top.big) == 0xfffe && u16(data, pos + 2, top.big) == 0xe0dd))
        pos += 8 + std::size_t(u32(data, pos + 4, top.big));
      pos += 8;
    } else {
      pos = value + length;
    }
  }
}

// GDCM decodes a compressed frame into a buffer sized from Rows, Columns, SamplesPerPixel and
// BitsAllocated, whatever the codestream itself holds: a JPEG 2000 frame larger than the header
// says overruns the buffer. So the codestream's own header (JPEG SOFn, JPEG-LS SOF55, JPEG 2000
// SIZ, the RLE segment count) must agree with the attributes before GDCM decodes it.
struct frame_header {
  std::uint32_t width = 0, height = 0, components = 0, precision = 0;
};

// The codestreams' fields are big-endian.
std::uint32_t be16(std::string_view b, std::size_t p) { return read_u16(b, p, true); }
std::uint32_t be32(std::string_view b, std::size_t p) { return read_u32(b, p, true); }

std::optional<frame_header> jpeg_frame_header(std::string_view b) {
  std::size_t p = 2;  // after SOI
  while (p + 4 <= b.size()) {
    if (static_cast<unsigned char>(b[p]) != 0xff) return std::nullopt;
    const unsigned m = static_cast<unsigned char>(b[p + 1]);
    if (m == 0xff) {  // fill byte
      ++p;
      continue;
    }
    if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {  // no length
      p += 2;
      continue;
    }
    const std::size_t length = be16(b, p + 2);
    const bool sof = (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) || m == 0xf7;
    if (sof) {
      if (p + 10 > b.size()) return std::nullopt;
      return frame_header{be16(b, p + 7), be16(b, p + 5), static_cast<unsigned char>(b[p + 9]),
                          static_cast<unsigned char>(b[p + 4])};
    }
    if (m == 0xda || m == 0xd9 || length < 2) return std::nullopt;  // a scan before any frame
    p += 2 + length;
  }
  return std::nullopt;
}

std::optional<frame_header> j2k_frame_header(std::string_view b) {
  // A raw codestream starts with SOC SIZ; a JP2 file holds one in its jp2c box.
  const auto at = b.substr(0, std::min<std::size_t>(b.size(), 1 << 16)).find("\xff\x4f\xff\x51");
  if (at == std::string_view::npos || at + 4 + 38 + 1 > b.size()) return std::nullopt;
  const std::size_t siz =
      at + 4;  // Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz Ssiz
  const auto x = be32(b, siz + 4), y = be32(b, siz + 8), x0 = be32(b, siz + 12),
             y0 = be32(b, siz + 16);
  if (x < x0 || y < y0) return std::nullopt;
  return frame_header{x - x0, y - y0, be16(b, siz + 36),
                      (static_cast<unsigned char>(b[siz + 38]) & 0x7fu) + 1};
}

[[gnu::noinline]] void check_frame_header(std::string_view stream, bool rle, unsigned cols,
                                          unsigned rows, unsigned samples, unsigned allocated) {
  if (rle) {  // a 64-byte header: the segment count, then their offsets
    if (stream.size() < 64) dicom_reject("corrupt", "an RLE frame without its 64-byte header");
    const auto* u = reinterpret_cast<const unsigned char*>(stream.data());
    const unsigned segments = u[0] | u[1] << 8 | u[2] << 16 | unsigned(u[3]) << 24;
    if (segments != samples * (allocated / 8))
      dicom_reject("corrupt", "the RLE frame has " + std::to_string(segments) + " segments, " +
                                  std::to_string(samples * (allocated / 8)) +
                                  " for the header's samples and BitsAllocated");
    return;
  }
  const bool jpeg = stream.size() >= 2 && static_cast<unsigned char>(stream[0]) == 0xff &&
                    static_cast<unsigned char>(stream[1]) == 0xd8;
  const auto f = jpeg ? jpeg_frame_header(stream) : j2k_frame_header(stream);
  if (!f) dicom_reject("corrupt", "no JPEG, JPEG-LS or JPEG 2000 frame header in the pixel data");
  if (f->width != cols || f->height != rows || f->components != samples || f->precision == 0 ||
      f->precision > allocated || (f->precision + 7) / 8 != allocated / 8) {
    dicom_reject("corrupt", "the compressed frame is " + std::to_string(f->width) + " x " +
                                std::to_string(f->height) + ", " + std::to_string(f->components) +
                                " components of " + std::to_string(f->precision) +
                                " bits; the header says " + std::to_string(cols) + " x " +
                                std::to_string(rows) + ", " + std::to_string(samples) + " of " +
                                std::to_string(allocated) + " bits allocated");
  }
}

// The single frame of an encapsulated PixelData: its fragments joined. `what` names the kind in
// the reject when there are none.
std::string compressed_frame(const gdcm::DataSet& ds, const char* what) {
  const auto* frags = ds.GetDataElement(gdcm::Tag(0x7fe0, 0x0010)).GetSequenceOfFragments();
  if (!frags || frags->GetNumberOfFragments() == 0)
    dicom_reject("corrupt", std::string("no ") + what + " fragments");
  std::string stream;
  for (unsigned i = 0; i < frags->GetNumberOfFragments(); ++i) {
    const auto* bv = frags->GetFragment(i).GetByteValue();
    if (bv) stream.append(bv->GetPointer(), bv->GetLength());
  }
  return stream;
}

// A required attribute (US) of the image pixel module; throws a reject when absent.
template <std::uint16_t G, std::uint16_t E>
unsigned required_us(const gdcm::DataSet& ds, const char* name) {
  if (!ds.FindDataElement(gdcm::Tag(G, E)) || ds.GetDataElement(gdcm::Tag(G, E)).IsEmpty())
    dicom_reject("unsupported", std::string("the required attribute ") + name + " is missing");
  gdcm::Attribute<G, E> a;
  a.SetFromDataSet(ds);
  return a.GetValue();
}

image_u8 decode_dicom_unguarded(std::string_view bytes, std::uint64_t max_pixels,
                                image_header* header, std::size_t pixel_bytes_held);

image_u8 decode_dicom(std::string_view bytes, std::uint64_t max_pixels, image_header* header) {
  const auto pixel_bytes_held = check_pixel_data_lengths(bytes);
  check_sequence_depth(bytes, max_pixels);
  install_fault_handlers();
  sigjmp_buf escape;
  struct guard {
    sigjmp_buf* previous;
    ~guard() { gdcm_escape = previous; }
  } restore{gdcm_escape};
  if (sigsetjmp(escape, 1) != 0) {
    gdcm_escape = restore.previous;
    throw image_reject("corrupt", std::string("DICOM: GDCM could not read the file (") +
                                      (gdcm_failure ? gdcm_failure : "it gave up") + ")");
  }
  gdcm_escape = &escape;
  return decode_dicom_unguarded(bytes, max_pixels, header, pixel_bytes_held);
}

image_u8 decode_dicom_unguarded(std::string_view bytes, std::uint64_t max_pixels,
                                image_header* header, std::size_t pixel_bytes_held) {
  static const bool quiet = [] {
    gdcm::Trace::WarningOff();
    gdcm::Trace::ErrorOff();
    gdcm::Trace::DebugOff();
    return true;
  }();
  (void)quiet;
  // The attributes first, from a plain read: GDCM's image reader asserts on some it dislikes.
  auto* plain_in = new std::istringstream(std::string(bytes));  // leaked only if GDCM faults
  auto* plain = new gdcm::Reader;
  plain->SetStream(*plain_in);
  const bool parsed = plain->Read();
  const gdcm::DataSet& header_ds = plain->GetFile().GetDataSet();
  const bool has_pixels = header_ds.FindDataElement(gdcm::Tag(0x7fe0, 0x0010));
  unsigned a_rows = 0, a_cols = 0, a_samples = 0, a_allocated = 0, a_stored = 0, a_high = 0, a_rep = 0;
  std::string a_photometric;
  auto cleanup = [&] {
    delete plain;
    delete plain_in;
  };
  try {
    if (!has_pixels) dicom_reject(parsed ? "unsupported" : "corrupt", "no PixelData");
    if (!parsed) dicom_reject("truncated", "the file could not be read whole (truncated or damaged)");
    a_rows = required_us<0x0028, 0x0010>(header_ds, "Rows");
    a_cols = required_us<0x0028, 0x0011>(header_ds, "Columns");
    a_samples = required_us<0x0028, 0x0002>(header_ds, "SamplesPerPixel");
    a_allocated = required_us<0x0028, 0x0100>(header_ds, "BitsAllocated");
    a_stored = required_us<0x0028, 0x0101>(header_ds, "BitsStored");
    a_high = required_us<0x0028, 0x0102>(header_ds, "HighBit");
    a_rep = required_us<0x0028, 0x0103>(header_ds, "PixelRepresentation");
    a_photometric = element_text(header_ds, gdcm::Tag(0x0028, 0x0004));
    if (a_photometric.empty()) dicom_reject("unsupported", "the required attribute PhotometricInterpretation is missing");
    if (header) *header = {"dicom", a_cols, a_rows, int(a_samples), int(a_stored)};
    check_pixels(a_cols, a_rows, max_pixels, "DICOM");
    if (a_allocated != 8 && a_allocated != 16)
      dicom_reject("unsupported", "BitsAllocated " + std::to_string(a_allocated) + " (8 or 16 read)");
    if (a_stored < 1 || a_stored > a_allocated || a_high != a_stored - 1)
      dicom_reject("unsupported", "BitsStored " + std::to_string(a_stored) + " with BitsAllocated " +
                                      std::to_string(a_allocated) + " and HighBit " +
                                      std::to_string(a_high) + " (HighBit must be BitsStored - 1)");
    if (a_rep > 1) dicom_reject("unsupported", "PixelRepresentation " + std::to_string(a_rep));
    if (a_samples != 1 && a_samples != 3)
      dicom_reject("unsupported", std::to_string(a_samples) + " samples per pixel (1 or 3 read)");
    if (a_samples == 1 && a_photometric != "MONOCHROME1" && a_photometric != "MONOCHROME2")
      dicom_reject("unsupported", "photometric interpretation '" + a_photometric + "' with 1 sample");
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();

  std::istringstream in{std::string(bytes)};
  gdcm::ImageReader reader;
  reader.SetStream(in);
  const bool read = reader.Read();
  const auto& ds = reader.GetFile().GetDataSet();
  if (!read) dicom_reject("truncated", "the file could not be read whole (truncated or damaged)");
  const auto& im = reader.GetImage();
  const unsigned cols = a_cols, rows = a_rows;
  const int samples = int(a_samples);
  const int allocated = int(a_allocated), stored = int(a_stored);
  const bool is_signed = a_rep == 1;
  const auto frames_text = element_text(ds, gdcm::Tag(0x0028, 0x0008));
  if (!frames_text.empty() && std::atoi(frames_text.c_str()) != 1)
    dicom_reject("unsupported", frames_text + " frames; only single-frame images are read");
  if (ds.FindDataElement(gdcm::Tag(0x0028, 0x3000)))
    dicom_reject("unsupported", "a Modality LUT Sequence");
  const auto& photometric = a_photometric;
  const auto& ts = im.GetTransferSyntax();
  const bool jpeg_lossy = is_jpeg_lossy(ts);
  if (samples == 3) {
    const bool ok = allocated == 8 &&
                    (photometric == "RGB" ||
                     (jpeg_lossy && (photometric == "YBR_FULL_422" || photometric == "YBR_FULL")));
    if (!ok) {
      dicom_reject("unsupported", "colour as '" + photometric + "' with " +
                                      std::to_string(allocated) + " bits (8-bit RGB read)");
    }
  }
  const auto voi_function = element_text(ds, gdcm::Tag(0x0028, 0x1056));
  if (!voi_function.empty() && voi_function != "LINEAR")
    dicom_reject("unsupported", "VOILUTFunction " + voi_function + " (LINEAR read)");

  // A JPEG baseline frame is decoded by libjpeg itself: the stream, not the label, decides its
  // colour transform (GDCM returns YCbCr samples labelled RGB).
  std::vector<char> frame;  // a JPEG frame decoded above, else the native or GDCM-decoded buffer
  if (jpeg_lossy) {
    auto img = decode_jpeg(compressed_frame(ds, "JPEG"), max_pixels, nullptr, "DICOM JPEG frame");
    if (img.width != cols || img.height != rows || img.channels != samples)
      dicom_reject("corrupt", "the JPEG frame's size or components differ from the header");
    if (samples == 3) return img;
    // Grey: the frame's samples are stored values, for the LUT chain below.
    frame.assign(img.pixels.begin(), img.pixels.end());
    if (allocated != 8) dicom_reject("unsupported", "an 8-bit JPEG frame in a 16-bit container");
  }

  if (ts.IsEncapsulated() && !jpeg_lossy) {
    check_frame_header(compressed_frame(ds, "compressed"), ts == gdcm::TransferSyntax::RLELossless,
                       cols, rows, samples, allocated);
  }

  const std::size_t n = std::size_t(cols) * rows * samples;
  const std::size_t need = n * (allocated / 8);
  const auto& pixel_data = ds.GetDataElement(gdcm::Tag(0x7fe0, 0x0010));
  const auto* native = pixel_data.GetByteValue();
  if (frame.empty()) {
    if (im.GetBufferLength() < need || (native && native->GetLength() < need) ||
        (native && std::size_t(pixel_data.GetVL()) < need) ||
        (native && ts != gdcm::TransferSyntax::DeflatedExplicitVRLittleEndian &&
         pixel_bytes_held < need)) {
      dicom_reject("truncated", "pixel data shorter than Rows x Columns x samples x bytes (" +
                                    std::to_string(need) + " bytes)");
    }
    frame.resize(im.GetBufferLength());
    if (!im.GetBuffer(frame.data()))
      dicom_reject("truncated", "pixel data could not be decoded (truncated or damaged)");
  }
  const auto& buffer = frame;

  image_u8 img;
  img.width = cols;
  img.height = rows;
  img.channels = samples;
  img.pixels.resize(n);
  if (samples == 3) {  // 8-bit RGB as stored; rescale and window do not apply
    const auto* p = reinterpret_cast<const std::uint8_t*>(buffer.data());
    const std::size_t plane = std::size_t(cols) * rows;
    for (std::size_t i = 0; i < plane; ++i) {
      for (int c = 0; c < 3; ++c) {
        img.pixels[i * 3 + c] = im.GetPlanarConfiguration() == 1 ? p[c * plane + i] : p[i * 3 + c];
      }
    }
    return img;
  }

  // Stored values: the low BitsStored bits, two's complement when PixelRepresentation is 1.
  const std::uint32_t mask = stored >= 32 ? 0xffffffffu : ((1u << stored) - 1u);
  std::vector<double> x(n);
  double slope = 1, intercept = 0;
  const bool rescale = first_decimal(ds, gdcm::Tag(0x0028, 0x1053), slope) &
                       first_decimal(ds, gdcm::Tag(0x0028, 0x1052), intercept);
  if (rescale && !(std::isfinite(slope) && std::isfinite(intercept)))
    dicom_reject("unsupported", "RescaleSlope/RescaleIntercept not finite");
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t v = allocated == 8
                          ? std::uint8_t(buffer[i])
                          : std::uint32_t(std::uint8_t(buffer[2 * i])) |
                                (std::uint32_t(std::uint8_t(buffer[2 * i + 1])) << 8);
    v &= mask;
    double value = v;
    if (is_signed && (v >> (stored - 1)) & 1u) value = double(v) - double(std::uint64_t(1) << stored);
    x[i] = rescale ? value * slope + intercept : value;
  }
  double c = 0, w = 0;
  const bool window = first_decimal(ds, gdcm::Tag(0x0028, 0x1050), c) &
                      first_decimal(ds, gdcm::Tag(0x0028, 0x1051), w);
  if (window && !(std::isfinite(c) && std::isfinite(w)))
    dicom_reject("unsupported", "WindowCenter/WindowWidth not finite");
  if (window && w < 1) dicom_reject("unsupported", "WindowWidth " + std::to_string(w) + " below 1");
  double lo = 0, hi = 0;
  if (!window) {
    const auto [mn, mx] = std::minmax_element(x.begin(), x.end());
    lo = *mn;
    hi = *mx;
  }
  const bool invert = photometric == "MONOCHROME1";
  for (std::size_t i = 0; i < n; ++i) {
    double v;
    if (window) {
      if (x[i] <= c - 0.5 - (w - 1) / 2) {
        v = 0;
      } else if (x[i] > c - 0.5 + (w - 1) / 2) {
        v = 255;
      } else {
        v = ((x[i] - (c - 0.5)) / (w - 1) + 0.5) * 255;
      }
    } else {
      v = hi == lo ? 0 : (x[i] - lo) / (hi - lo) * 255;
    }
    if (invert) v = 255 - v;
    img.pixels[i] = static_cast<std::uint8_t>(std::clamp(std::floor(v + 0.5), 0.0, 255.0));
  }
  return img;
}

}  // namespace

std::string sniff_format(std::string_view bytes) {
  if (bytes.empty()) throw image_reject("empty_file", "the file is empty (0 bytes)");
  static const char png_sig[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), png_sig, 8) == 0) return "png";
  if (bytes.size() >= 3 && std::uint8_t(bytes[0]) == 0xff && std::uint8_t(bytes[1]) == 0xd8 &&
      std::uint8_t(bytes[2]) == 0xff)
    return "jpeg";
  if (bytes.size() >= 132 && bytes.substr(128, 4) == "DICM") return "dicom";
  throw image_reject("unknown_format", "not a PNG, JPEG or DICOM file (from its first bytes)");
}

image_u8 decode(std::string_view bytes, std::uint64_t max_pixels, image_header* header) {
  image_header local;
  if (!header) header = &local;
  const auto format = sniff_format(bytes);
  if (format == "png") return decode_png(bytes, max_pixels, header);
  if (format == "jpeg") return decode_jpeg(bytes, max_pixels, header);
  return decode_dicom(bytes, max_pixels, header);
}

std::string encode_png(const image_u8& img) {
  png_image out{};
  out.version = PNG_IMAGE_VERSION;
  out.width = img.width;
  out.height = img.height;
  out.format = img.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&out, nullptr, &size, 0, img.pixels.data(), 0, nullptr))
    throw image_reject("corrupt", std::string("PNG encoding failed: ") + out.message);
  std::string bytes(size, '\0');
  if (!png_image_write_to_memory(&out, bytes.data(), &size, 0, img.pixels.data(), 0, nullptr))
    throw image_reject("corrupt", std::string("PNG encoding failed: ") + out.message);
  bytes.resize(size);
  return bytes;
}

std::string base64(std::string_view bytes) {
  static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::uint32_t b0 = std::uint8_t(bytes[i]);
    const std::uint32_t b1 = i + 1 < bytes.size() ? std::uint8_t(bytes[i + 1]) : 0;
    const std::uint32_t b2 = i + 2 < bytes.size() ? std::uint8_t(bytes[i + 2]) : 0;
    const std::uint32_t v = (b0 << 16) | (b1 << 8) | b2;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? table[v & 63] : '=';
  }
  return out;
}

std::string decoder_versions() {
  return std::string("libpng ") + png_get_libpng_ver(nullptr) + ", libjpeg-turbo " +
         std::to_string(LIBJPEG_TURBO_VERSION_NUMBER) + ", GDCM " + gdcm::Version::GetVersion();
}

}  // namespace hpcscreen::image

// glibc's assertion failure, replaced for the process so that an assertion inside GDCM while a
// thread decodes a DICOM file rejects that file instead of aborting the run (see on_fault).
// Anywhere else: glibc's message, then abort().
extern "C" [[noreturn]] void __assert_fail(const char* assertion, const char* file, unsigned int line,
                                          const char* function) noexcept {
  if (hpcscreen::image::gdcm_escape) {
    hpcscreen::image::gdcm_failure = "an internal assertion failed";
    siglongjmp(*hpcscreen::image::gdcm_escape, 1);
  }
  std::fprintf(stderr, "%s:%u: %s: Assertion `%s' failed.\n", file, line,
               function ? function : "?", assertion);
  std::abort();
}
