#include "hpcscreen/image/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "hpcscreen/core/error.hpp"

namespace hpcscreen::image {
namespace {

using json = nlohmann::json;

// Pillow's fixed-point bilinear weights (Resample.c, PRECISION_BITS 22) for one axis: for each
// output index its first input index and the weights of its inputs.
struct axis_weights {
  std::vector<int> first, count;
  std::vector<std::int32_t> k;  // count[i] weights from offset i * stride
  int stride = 0;
};

constexpr int precision_bits = 32 - 8 - 2;

axis_weights bilinear_weights(int in_size, int out_size) {
  axis_weights a;
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  a.stride = int(std::ceil(support)) * 2 + 1;
  a.first.resize(out_size);
  a.count.resize(out_size);
  a.k.assign(std::size_t(out_size) * a.stride, 0);
  std::vector<double> w(a.stride);
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; ++x) {
      double t = (x + xmin - center + 0.5) * ss;
      if (t < 0) t = -t;
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double k = ww != 0.0 ? w[x] / ww : w[x];
      a.k[std::size_t(i) * a.stride + x] =
          k < 0 ? std::int32_t(-0.5 + k * (1 << precision_bits))
                : std::int32_t(0.5 + k * (1 << precision_bits));
    }
    a.first[i] = xmin;
    a.count[i] = xmax;
  }
  return a;
}

std::uint8_t clip8(std::int64_t sum) {
  const std::int64_t v = sum >> precision_bits;
  return static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

image_u8 resize_horizontal(const image_u8& in, std::uint32_t out_w) {
  const auto a = bilinear_weights(int(in.width), int(out_w));
  image_u8 out{out_w, in.height, in.channels, {}};
  out.pixels.resize(std::size_t(out_w) * in.height * in.channels);
  const int c = in.channels;
  for (std::uint32_t y = 0; y < in.height; ++y) {
    const std::uint8_t* row = in.pixels.data() + std::size_t(y) * in.width * c;
    std::uint8_t* dst = out.pixels.data() + std::size_t(y) * out_w * c;
    for (std::uint32_t x = 0; x < out_w; ++x) {
      const std::int32_t* k = &a.k[std::size_t(x) * a.stride];
      for (int ch = 0; ch < c; ++ch) {
        std::int64_t ss = 1 << (precision_bits - 1);
        for (int j = 0; j < a.count[x]; ++j) ss += std::int64_t(row[(a.first[x] + j) * c + ch]) * k[j];
        dst[x * c + ch] = clip8(ss);
      }
    }
  }
  return out;
}

image_u8 resize_vertical(const image_u8& in, std::uint32_t out_h) {
  const auto a = bilinear_weights(int(in.height), int(out_h));
  image_u8 out{in.width, out_h, in.channels, {}};
  const std::size_t stride = std::size_t(in.width) * in.channels;
  out.pixels.resize(stride * out_h);
  std::vector<std::int64_t> acc(stride);
  for (std::uint32_t y = 0; y < out_h; ++y) {
    std::fill(acc.begin(), acc.end(), std::int64_t(1) << (precision_bits - 1));
    const std::int32_t* k = &a.k[std::size_t(y) * a.stride];
    for (int j = 0; j < a.count[y]; ++j) {
      const std::uint8_t* row = in.pixels.data() + std::size_t(a.first[y] + j) * stride;
      const std::int64_t kj = k[j];
      for (std::size_t i = 0; i < stride; ++i) acc[i] += row[i] * kj;
    }
    std::uint8_t* dst = out.pixels.data() + std::size_t(y) * stride;
    for (std::size_t i = 0; i < stride; ++i) dst[i] = clip8(acc[i]);
  }
  return out;
}

// torchvision 0.14's Resize(int): the shorter side becomes `size`, the longer
// int(size * long / short); unchanged when the shorter side already is `size`.
void resized_size(const image_u8& img, const preprocess_spec& s, std::uint64_t max_pixels,
                  std::uint32_t& h, std::uint32_t& w) {
  if (s.resize_h > 0) {
    h = std::uint32_t(s.resize_h);
    w = std::uint32_t(s.resize_w);
    return;
  }
  const std::uint32_t shorter = std::min(img.width, img.height);
  const std::uint32_t longer = std::max(img.width, img.height);
  if (shorter == std::uint32_t(s.resize)) {
    h = img.height;
    w = img.width;
    return;
  }
  const double long_side = std::floor(double(s.resize) * double(longer) / double(shorter));
  if (long_side * s.resize > double(max_pixels)) {
    throw image_reject("too_many_pixels", "resized to " + std::to_string(s.resize) + " x " +
                                              std::to_string(std::uint64_t(long_side)) +
                                              ", over the limit of " + std::to_string(max_pixels) +
                                              " pixels (--max-pixels)");
  }
  const auto new_long = std::uint32_t(long_side);
  if (img.width <= img.height) {
    w = std::uint32_t(s.resize);
    h = new_long;
  } else {
    h = std::uint32_t(s.resize);
    w = new_long;
  }
}

// One crop of the RGB image as uint8 [3, h, w] (rows top.., columns left..; outside the image:
// 0, as torchvision pads a centre crop larger than the image), optionally mirrored.
void crop_into(const image_u8& rgb, int top, int left, int h, int w, bool mirror,
               std::uint8_t* out) {
  const std::size_t plane = std::size_t(h) * w;
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const int sy = top + y;
        const int sx = mirror ? int(rgb.width) - 1 - (left + x) : left + x;
        std::uint8_t v = 0;
        if (sy >= 0 && sy < int(rgb.height) && sx >= 0 && sx < int(rgb.width))
          v = rgb.pixels[(std::size_t(sy) * rgb.width + sx) * 3 + c];
        out[c * plane + std::size_t(y) * w + x] = v;
      }
    }
  }
}

}  // namespace

image_u8 resize_bilinear(const image_u8& in, std::uint32_t out_h, std::uint32_t out_w) {
  if (out_w == in.width) return out_h == in.height ? in : resize_vertical(in, out_h);
  auto wide = resize_horizontal(in, out_w);
  return out_h == in.height ? wide : resize_vertical(wide, out_h);
}

void crop_u8(const image_u8& img, const preprocess_spec& s, std::uint64_t max_pixels,
             std::vector<std::uint8_t>& out, int& out_h, int& out_w) {
  std::uint32_t h = 0, w = 0;
  resized_size(img, s, max_pixels, h, w);
  // Grey is resized as grey: replicating it afterwards gives the same bytes as resizing RGB.
  auto rgb = resize_bilinear(img, h, w);
  if (rgb.channels == 1) {
    std::vector<std::uint8_t> grey = std::move(rgb.pixels);
    rgb.channels = 3;
    rgb.pixels.resize(grey.size() * 3);
    for (std::size_t i = 0; i < grey.size(); ++i)
      rgb.pixels[3 * i] = rgb.pixels[3 * i + 1] = rgb.pixels[3 * i + 2] = grey[i];
  }
  if (s.crop == "none") {
    out_h = int(h);
    out_w = int(w);
    out.resize(std::size_t(3) * h * w);
    crop_into(rgb, 0, 0, out_h, out_w, false, out.data());
    return;
  }
  const int c = s.crop_size;
  out_h = out_w = c;
  const std::size_t one = std::size_t(3) * c * c;
  out.resize(one * s.n_crops());
  // CenterCrop: Python's round (ties to even) of the margin; a larger crop pads with 0.
  auto centre = [&](int size) {
    if (c > size) return -((c - size) / 2);
    return int(std::nearbyint((size - c) / 2.0));
  };
  const int top = centre(int(h)), left = centre(int(w));
  if (s.crop == "center") {
    crop_into(rgb, top, left, c, c, false, out.data());
    return;
  }
  if (c > int(h) || c > int(w)) {
    throw image_reject("too_small", "a ten-crop of " + std::to_string(c) + " is larger than the " +
                                        std::to_string(h) + " x " + std::to_string(w) +
                                        " resized image");
  }
  // TenCrop: top-left, top-right, bottom-left, bottom-right, centre; then of the mirror image.
  const int bottom = int(h) - c, right = int(w) - c;
  const int corners[5][2] = {{0, 0}, {0, right}, {bottom, 0}, {bottom, right}, {top, left}};
  for (int m = 0; m < 2; ++m) {
    for (int k = 0; k < 5; ++k) {
      crop_into(rgb, corners[k][0], corners[k][1], c, c, m == 1,
                out.data() + one * std::size_t(m * 5 + k));
    }
  }
}

void normalize(const std::uint8_t* in, std::size_t n_crops, int h, int w,
               const preprocess_spec& s, float* out) {
  const std::size_t plane = std::size_t(h) * w;
  for (std::size_t k = 0; k < n_crops; ++k) {
    for (int c = 0; c < 3; ++c) {
      const std::uint8_t* src = in + (k * 3 + c) * plane;
      float* dst = out + (k * 3 + c) * plane;
      for (std::size_t i = 0; i < plane; ++i) dst[i] = (float(src[i]) / s.scale - s.mean[c]) / s.std[c];
    }
  }
}

preprocess_spec preprocess_spec::from_json(const std::string& json_text) {
  preprocess_spec s;
  json j;
  try {
    j = json::parse(json_text);
  } catch (const std::exception& e) {
    throw model_error(std::string("image model: 'preprocess' is not JSON: ") + e.what());
  }
  auto fail = [](const std::string& what) { throw model_error("image model: preprocess: " + what); };
  if (!j.is_object()) fail("must be an object");
  // Everything that decides the tensor is stated, never defaulted: a model gets exactly the
  // preprocessing it was trained with, or is refused.
  for (const char* key : {"resize", "crop", "scale", "mean", "std"}) {
    if (!j.contains(key)) fail(std::string("'") + key + "' is missing (data_schemas/image_contract.md)");
  }
  if (j.value("crop", std::string()) != "none" && !j.contains("crop_size"))
    fail("'crop_size' is missing (data_schemas/image_contract.md)");
  for (const auto& [key, value] : j.items()) {
    (void)value;
    static const char* known[] = {"resize", "interpolation", "crop", "crop_size", "color",
                                  "scale", "mean", "std"};
    if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return key == k; }) ==
        std::end(known))
      fail("unknown key '" + key + "'");
  }
  if (j.contains("resize")) {
    const auto& r = j["resize"];
    if (r.is_number_integer() && r.get<long long>() >= 1 && r.get<long long>() <= 16384) {
      s.resize = r.get<int>();
    } else if (r.is_array() && r.size() == 2 && r[0].is_number_integer() &&
               r[1].is_number_integer() && r[0].get<long long>() >= 1 &&
               r[1].get<long long>() >= 1 && r[0].get<long long>() <= 16384 &&
               r[1].get<long long>() <= 16384) {
      s.resize = 0;
      s.resize_h = r[0].get<int>();
      s.resize_w = r[1].get<int>();
    } else {
      fail("'resize' must be an integer 1..16384 (the shorter side) or [h, w], found " + r.dump());
    }
  }
  if (j.value("interpolation", std::string("bilinear")) != "bilinear")
    fail("'interpolation' must be 'bilinear' (Pillow's, antialiased), found " + j["interpolation"].dump());
  if (j.value("color", std::string("rgb")) != "rgb")
    fail("'color' must be 'rgb' (grey replicated to three channels, alpha dropped)");
  if (j.contains("crop")) {
    if (!j["crop"].is_string()) fail("'crop' must be \"center\", \"ten\" or \"none\"");
    s.crop = j["crop"].get<std::string>();
    if (s.crop != "center" && s.crop != "ten" && s.crop != "none")
      fail("'crop' must be \"center\", \"ten\" or \"none\", found \"" + s.crop + "\"");
  }
  if (j.contains("crop_size")) {
    const auto& c = j["crop_size"];
    if (!c.is_number_integer() || c.get<long long>() < 1 || c.get<long long>() > 16384)
      fail("'crop_size' must be an integer 1..16384");
    s.crop_size = c.get<int>();
  }
  if (s.crop == "none" && s.resize_h == 0)
    fail("'crop' \"none\" needs 'resize' as [h, w]: a batch needs one input size");
  const int shorter = s.resize_h > 0 ? std::min(s.resize_h, s.resize_w) : s.resize;
  if (s.crop == "ten" && s.crop_size > shorter)
    fail("ten crops of " + std::to_string(s.crop_size) + " do not fit an image resized to " +
         std::to_string(shorter) + " (torchvision's TenCrop refuses them)");
  if (j.contains("scale")) {
    if (!j["scale"].is_number() || !(j["scale"].get<double>() > 0)) fail("'scale' must be > 0");
    s.scale = j["scale"].get<float>();
  }
  for (const char* key : {"mean", "std"}) {
    if (!j.contains(key)) continue;
    const auto& a = j[key];
    if (!a.is_array() || a.size() != 3 || !a[0].is_number() || !a[1].is_number() || !a[2].is_number())
      fail(std::string("'") + key + "' must be three numbers (R, G, B)");
    auto& target = std::string(key) == "mean" ? s.mean : s.std;
    for (int c = 0; c < 3; ++c) target[c] = a[c].get<float>();
    if (std::string(key) == "std" && (s.std[0] <= 0 || s.std[1] <= 0 || s.std[2] <= 0))
      fail("'std' must be > 0");
  }
  return s;
}

std::string preprocess_spec::describe() const {
  json j = {{"interpolation", "bilinear"}, {"crop", crop}, {"color", "rgb"},
            {"scale", scale},               {"mean", mean}, {"std", std}};
  if (resize_h > 0) {
    j["resize"] = {resize_h, resize_w};
  } else {
    j["resize"] = resize;
  }
  if (crop != "none") j["crop_size"] = crop_size;
  return j.dump();
}

}  // namespace hpcscreen::image
