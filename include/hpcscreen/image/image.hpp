#pragma once
// Images as the third workload: a library kind ("images": original bytes and header fields per
// image, packed by `hpcscreen pack images`) and `hpcscreen classify`, a CNN over it. Both
// register themselves (src/app/registrations.cpp); nothing in the host names them.
#include <string>
#include <vector>

namespace hpcscreen::image {

inline constexpr const char* image_library_kind = "images";
inline constexpr const char* image_shard_schema = "hpcscreen.image_shard/1";

// Shard fields: id, format, width, height, channels, bit_depth, bytes (data_schemas/shard.md).
const std::vector<std::string>& image_fields();

void register_image_library_kind();
void register_classify();

}  // namespace hpcscreen::image
