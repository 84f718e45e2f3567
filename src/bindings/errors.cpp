#include "../engine/errors.h"

#include "bindings.h"

void bind_errors(nb::module_& m) {
    auto base = nb::exception<lcn::LlamaError>(m, "LlamaError");
    nb::exception<lcn::ModelLoadError>(m, "ModelLoadError", base);
    nb::exception<lcn::ValidationError>(m, "ValidationError", base);
    nb::exception<lcn::GenerationError>(m, "GenerationError", base);
}

nb::str decode_utf8(const std::string& text) {
    PyObject* obj = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
    if (obj == nullptr) throw nb::python_error();
    return nb::steal<nb::str>(obj);
}
