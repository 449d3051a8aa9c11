#pragma once
// The decoded 8-bit image to the model's input, exactly as the torchvision pipeline a model was
// trained with (data_schemas/image_library.md, "From the 8-bit image to the tensor"): grey
// replicated to RGB, Pillow's antialiased bilinear resize (its fixed-point arithmetic), centre
// crop, ten crops or none, x / scale, then (x - mean) / std per channel.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "hpcscreen/image/decode.hpp"

namespace hpcscreen::image {

struct preprocess_spec {
  int resize = 256;                 // the shorter side (torchvision Resize(int)); 0: see resize_hw
  int resize_h = 0, resize_w = 0;   // Resize([h, w]) when set
  std::string crop = "center";      // "center", "ten", "none"
  int crop_size = 224;
  float scale = 255.0f;
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f}, std{0.229f, 0.224f, 0.225f};

  int n_crops() const { return crop == "ten" ? 10 : 1; }
  // Parses the "preprocess" object of an image model's hpcscreen.json; throws model_error.
  static preprocess_spec from_json(const std::string& json_text);
  std::string describe() const;
};

// Pillow's Image.resize(size, BILINEAR) of an 8-bit [h, w, c] image.
image_u8 resize_bilinear(const image_u8& in, std::uint32_t out_h, std::uint32_t out_w);

// The resized, cropped image(s) as uint8: n_crops() × [3, H, W] (H, W: crop_size, or the
// resized size for "none"). Throws image_reject when a ten-crop is larger than the image, or
// when the resized image would hold more than max_pixels (a thin strip of a few KB resizes
// to gigabytes).
void crop_u8(const image_u8& img, const preprocess_spec& spec, std::uint64_t max_pixels,
             std::vector<std::uint8_t>& out, int& out_h, int& out_w);
// n_crops × [3, h, w] uint8 → float32: x / scale, then (x - mean[c]) / std[c].
void normalize(const std::uint8_t* in, std::size_t n_crops, int h, int w,
               const preprocess_spec& spec, float* out);

}  // namespace hpcscreen::image
