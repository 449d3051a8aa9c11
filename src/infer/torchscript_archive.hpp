#pragma once
// What both model kinds share: loading a TorchScript archive with its hpcscreen.json, and
// turning LibTorch's exceptions into model_error. Internal to the inference stage.
#include <torch/script.h>

#include <filesystem>
#include <string>
#include <unordered_map>

#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/infer/memory_tier.hpp"
#include "hpcscreen/infer/model_metadata.hpp"

namespace hpcscreen::infer::detail {

struct archive {
  torch::jit::Module module;
  std::string metadata_json;
  std::string checksum;  // of the file's bytes, the same before and after the load
};

// Runs f; LibTorch's errors (c10::Error) and the TorchScript interpreter's (rethrown as
// std::runtime_error) become model_error prefixed with `what`, with their own message kept. An
// allocation failure becomes out_of_memory_error: this is the one place that tells them apart
// (LibTorch 1.13 has no exception type of its own for it, so its allocator's message decides).
template <class F>
auto guarded(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const model_error&) {
    throw;
  } catch (const model_contract_error&) {
    throw;
  } catch (const std::bad_alloc& e) {
    throw out_of_memory_error(what + ": " + e.what());
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    if (is_out_of_memory(message)) throw out_of_memory_error(what + ": " + message);
    throw model_error(what + ": " + message);
  } catch (const std::exception& e) {
    if (is_out_of_memory(e.what())) throw out_of_memory_error(what + ": " + e.what());
    throw model_error(what + ": " + e.what());
  }
}

// The load-time probe: a contract violation there refuses the model (model_error), as any
// other load failure does; on a real batch it stops the run (model_contract_error).
template <class F>
void probe(const std::string& what, F&& f) {
  try {
    guarded(what, std::forward<F>(f));
  } catch (const model_contract_error& e) {
    throw model_error(e.what());
  }
}

inline archive load_archive(const std::string& path, const char* contract_doc) {
  if (!std::filesystem::is_regular_file(path))
    throw model_error("model file '" + path + "' does not exist or is not a file");
  std::unordered_map<std::string, std::string> extra{{metadata_file_name, ""}};
  archive a;
  // The checksum a run records is of the bytes loaded: a file replaced while it was read (a
  // copy still arriving, a model updated by hand) is refused rather than recorded as the other.
  a.checksum = file_checksum(path);
  try {
    a.module = guarded("cannot load TorchScript model '" + path + "'",
                       [&] { return torch::jit::load(path, torch::kCPU, extra); });
  } catch (const model_error& e) {
    // torch.save writes the same zip layout without TorchScript's code: a checkpoint (a
    // Chemprop model file, a state_dict) given as it was saved.
    if (std::string(e.what()).find("constants.pkl") == std::string::npos) throw;
    throw model_error(std::string(e.what()) +
                      " (this is a file saved with torch.save, not a TorchScript model: a "
                      "Chemprop model file is converted with tools/import_chemprop.py, see the "
                      "README; a state_dict needs its model scripted with torch.jit.script and "
                      "saved with torch.jit.save)");
  }
  if (file_checksum(path) != a.checksum) {
    throw model_error("model file '" + path +
                      "' changed while it was loaded; run again once it is complete");
  }
  a.module.eval();
  a.metadata_json = extra[metadata_file_name];
  if (a.metadata_json.empty()) {
    throw model_error(
        "model '" + path +
        "' has no hpcscreen.json inside the archive; save it with "
        "torch.jit.save(m, path, _extra_files={'hpcscreen.json': json.dumps(meta)}) (see " +
        std::string(contract_doc) + ")");
  }
  return a;
}

// forward()'s inputs, self excluded; throws when there is no forward().
inline std::size_t forward_arity(torch::jit::Module& m, const std::string& path) {
  const auto method = m.find_method("forward");
  if (!method) throw model_error("model '" + path + "' has no forward() method");
  return method->function().getSchema().arguments().size() - 1;
}

}  // namespace hpcscreen::infer::detail
