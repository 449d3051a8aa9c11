// The registration: every library kind, workload and tool hpcscreen has. A new workload is a
// folder of its own and one line here (and its library in CMakeLists.txt).
#include "hpcscreen/app/commands.hpp"

#include "hpcscreen/annotate/annotate.hpp"
#include "hpcscreen/image/image.hpp"
#include "hpcscreen/pack/pack_library.hpp"
#include "hpcscreen/screen/screen.hpp"

namespace hpcscreen::app {

void register_everything() {
  pack::register_text_library_kinds();
  screen::register_screen();
  annotate::register_annotate();
  image::register_image_library_kind();
  image::register_classify();
}

}  // namespace hpcscreen::app
