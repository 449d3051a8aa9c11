#pragma once
// Image files to 8-bit pixels, as data_schemas/image_library.md defines ("Decoding to 8 bits"):
// the format from the first bytes (PNG, JPEG, DICOM), the header alone (pack) or the whole
// image (classify). Every way a file can be unreadable is an image_reject with a reason, never
// an abort or a grey-filled guess. Decoders: libpng, libjpeg-turbo, GDCM.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace hpcscreen::image {

// Pillow's default MAX_IMAGE_PIXELS: larger headers are refused before any pixel is decoded.
inline constexpr std::uint64_t default_max_pixels = 89'478'485;

// A file that is not a readable image; `reason` is a stable code, what() the detail.
class image_reject : public std::runtime_error {
 public:
  image_reject(std::string reason, const std::string& detail)
      : std::runtime_error(detail), reason_(std::move(reason)) {}
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

// What the header says.
struct image_header {
  std::string format;  // "png", "jpeg", "dicom"
  std::uint32_t width = 0, height = 0;
  int channels = 0;   // samples per pixel in the file, alpha included (palette: 3)
  int bit_depth = 0;  // bits per sample (DICOM: BitsStored)
};

// The decoded 8-bit image: [height, width, channels], channels 1 (grey) or 3 (RGB).
struct image_u8 {
  std::uint32_t width = 0, height = 0;
  int channels = 0;
  std::vector<std::uint8_t> pixels;
};

// "png", "jpeg", "dicom"; throws image_reject (empty_file, unknown_format).
std::string sniff_format(std::string_view bytes);

// The whole file decoded (which also proves it whole) and its header. Throws image_reject:
// unknown_format, empty_file, too_many_pixels, truncated, corrupt, unsupported.
image_u8 decode(std::string_view bytes, std::uint64_t max_pixels = default_max_pixels,
                image_header* header = nullptr);

// An 8-bit image as a PNG file (libpng), for thumbnails.
std::string encode_png(const image_u8& img);
// RFC 4648 base64, for data: URIs.
std::string base64(std::string_view bytes);

// Versions of the decoders, for run.json.
std::string decoder_versions();

}  // namespace hpcscreen::image
