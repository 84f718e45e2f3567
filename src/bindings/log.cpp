#include <llama.h>
#include <nanobind/stl/string.h>

#include "../engine/backend.h"
#include "../engine/devices.h"
#include "bindings.h"

void bind_log(nb::module_& m) {
    m.def("set_log_level", &lcn::set_log_level, nb::arg("level"),
          "Minimum llama.cpp log level written to stderr: 0 debug, 1 info, 2 warn, 3 error, 4 none.");
    m.def("log_level", &lcn::log_level, "The current minimum llama.cpp log level (see set_log_level).");
    m.def("system_info", &lcn::system_info, "llama.cpp's version and CPU features, the build's CUDA decision, the registered ggml backends "
          "and their devices, and whether GPU offload is available.");
    m.def("backend_free", &lcn::free_backend, nb::call_guard<nb::gil_scoped_release>(),
          "Frees llama.cpp's backend; it starts again on the next model load.");
    m.def("supports_gpu_offload", &lcn::has_gpu, "True when a GPU backend was built and found a device.");
    m.def("llama_cpp_version", []() { return std::string(llama_version()); },
          "Version string of the linked libllama.");
}
