#include "../engine/devices.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

void bind_devices(nb::module_& m) {
    nb::class_<lcn::Placement>(m, "Placement", "Where a model's layers go (see LlamaConfig).")
        .def(nb::init<>())
        .def_rw("split_mode", &lcn::Placement::split_mode)
        .def_rw("main_gpu", &lcn::Placement::main_gpu)
        .def_rw("tensor_split", &lcn::Placement::tensor_split)
        .def_rw("devices", &lcn::Placement::devices)
        .def_rw("rpc_servers", &lcn::Placement::rpc_servers);

    nb::class_<lcn::DeviceInfo>(m, "DeviceInfo", "One device ggml can run on.")
        .def_ro("index", &lcn::DeviceInfo::index)
        .def_ro("name", &lcn::DeviceInfo::name)
        .def_ro("description", &lcn::DeviceInfo::description)
        .def_ro("type", &lcn::DeviceInfo::type)
        .def_ro("backend", &lcn::DeviceInfo::backend)
        .def_ro("memory_free", &lcn::DeviceInfo::memory_free)
        .def_ro("memory_total", &lcn::DeviceInfo::memory_total);

    m.def("list_devices", &lcn::list_devices, nb::arg("rpc_servers"), nb::call_guard<nb::gil_scoped_release>(),
          "This process's devices, then those of each RPC server (connecting to it).");
    m.def("rpc_available", &lcn::rpc_available, "Whether this build has llama.cpp's RPC backend.");
    m.def("rpc_serve", &lcn::rpc_serve, nb::arg("endpoint"), nb::arg("devices"), nb::arg("n_threads"),
          nb::arg("cache_dir"), nb::call_guard<nb::gil_scoped_release>(),
          "Serves devices to RPC clients at endpoint until the process ends; raises if it cannot start.");
}
