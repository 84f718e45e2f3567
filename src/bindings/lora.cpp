#include "../engine/lora.h"

#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>

#include "bindings.h"

void bind_lora(nb::module_& m) {
    nb::class_<lcn::LoraAdapter>(m, "LoraAdapter", "A loaded LoRA adapter; keeps its model alive.")
        .def_static("load", &lcn::LoraAdapter::load, nb::arg("model"), nb::arg("path"),
                    nb::call_guard<nb::gil_scoped_release>())
        .def_prop_ro("path", &lcn::LoraAdapter::path);
}
