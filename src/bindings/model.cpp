#include "../engine/model.h"

#include <nanobind/stl/map.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

namespace {

std::string text_argument(const nb::handle& text) {
    if (nb::isinstance<nb::bytes>(text)) {
        auto b = nb::borrow<nb::bytes>(text);
        return std::string(b.c_str(), b.size());
    }
    if (nb::isinstance<nb::str>(text)) {
        Py_ssize_t size = 0;
        const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
        if (data == nullptr) throw nb::python_error();
        return std::string(data, static_cast<size_t>(size));
    }
    throw nb::type_error("text must be str or bytes");
}

}  // namespace

void bind_model(nb::module_& m) {
    nb::class_<lcn::ModelParams>(m, "ModelParams", "Parameters of Model.load (see LlamaConfig).")
        .def(nb::init<>())
        .def_rw("path", &lcn::ModelParams::path)
        .def_rw("n_gpu_layers", &lcn::ModelParams::n_gpu_layers)
        .def_rw("vocab_only", &lcn::ModelParams::vocab_only)
        .def_rw("use_mmap", &lcn::ModelParams::use_mmap)
        .def_rw("placement", &lcn::ModelParams::placement);

    nb::class_<lcn::Model>(m, "Model", "Loaded GGUF weights and vocabulary; thread-safe, shared by contexts.")
        .def_static(
            "load",
            [](const lcn::ModelParams& params, nb::object progress) {
                // The callback runs on this thread with the GIL taken back; an exception it raises
                // cancels the load and is raised here, as itself, once the GIL is held again.
                std::unique_ptr<nb::python_error> raised;
                std::function<bool(float)> report;
                if (!progress.is_none()) {
                    report = [&progress, &raised](float fraction) {
                        nb::gil_scoped_acquire gil;
                        try {
                            nb::object answer = progress(fraction);
                            if (answer.is_none()) return true;
                            const int truth = PyObject_IsTrue(answer.ptr());
                            if (truth < 0) throw nb::python_error();
                            return truth == 1;
                        } catch (nb::python_error& e) {
                            raised = std::make_unique<nb::python_error>(std::move(e));
                        }
                        return false;
                    };
                }
                std::shared_ptr<lcn::Model> model;
                try {
                    nb::gil_scoped_release nogil;
                    model = lcn::Model::load(params, report ? &report : nullptr);
                } catch (...) {
                    if (raised) throw std::move(*raised);
                    throw;
                }
                return model;
            },
            nb::arg("params"), nb::arg("progress") = nb::none(),
            "Loads a GGUF file; raises ModelLoadError with the path and reason. `progress(fraction)` is called as "
            "the weights load; a false return (not None) cancels the load, an exception cancels it and is raised.")
        .def(
            "tokenize",
            [](const lcn::Model& self, nb::handle text, bool add_special, bool parse_special) {
                std::string owned = text_argument(text);
                nb::gil_scoped_release nogil;
                return self.tokenize(owned, add_special, parse_special);
            },
            nb::arg("text"), nb::arg("add_special"), nb::arg("parse_special"),
            nb::sig("def tokenize(self, text: str | bytes, add_special: bool, parse_special: bool) -> list[int]"),
            "Token ids of UTF-8 text.")
        .def(
            "detokenize",
            [](const lcn::Model& self, const std::vector<llama_token>& tokens, bool render_special) {
                std::string text;
                {
                    nb::gil_scoped_release nogil;
                    text = self.detokenize(tokens, render_special);
                }
                return nb::bytes(text.data(), text.size());
            },
            nb::arg("tokens"), nb::arg("render_special"), "The bytes of the tokens' text.")
        .def_prop_ro("n_vocab", &lcn::Model::n_vocab)
        .def_prop_ro("n_ctx_train", &lcn::Model::n_ctx_train)
        .def_prop_ro("n_embd", &lcn::Model::n_embd)
        .def_prop_ro("n_layer", &lcn::Model::n_layer)
        .def_prop_ro("size_bytes", &lcn::Model::size_bytes)
        .def_prop_ro("n_params", &lcn::Model::n_params)
        .def_prop_ro("add_bos", &lcn::Model::add_bos)
        .def_prop_ro("bos", &lcn::Model::bos)
        .def_prop_ro("eos", &lcn::Model::eos)
        .def("is_eog", &lcn::Model::is_eog, nb::arg("token"))
        .def_prop_ro("description", &lcn::Model::description)
        .def(
            "metadata",
            [](const lcn::Model& self) {
                // Keys and values come from the file: bytes that are not UTF-8 become U+FFFD.
                nb::dict out;
                for (const auto& [key, value] : self.metadata()) out[decode_utf8(key)] = decode_utf8(value);
                return out;
            },
            "GGUF metadata as strings.");
}
