#include "../engine/errors.h"

#include <exception>

#include "bindings.h"

namespace {

// The Python classes of our C++ errors (owned by the module, which outlives every call).
nb::handle llama_error, model_load_error, validation_error, generation_error;

}  // namespace

void bind_errors(nb::module_& m) {
    auto base = nb::exception<lcn::LlamaError>(m, "LlamaError");
    llama_error = base;
    model_load_error = nb::exception<lcn::ModelLoadError>(m, "ModelLoadError", base);
    validation_error = nb::exception<lcn::ValidationError>(m, "ValidationError", base);
    generation_error = nb::exception<lcn::GenerationError>(m, "GenerationError", base);
    // Registered last, so tried first: messages quote file contents (tensor names, keys) that
    // need not be UTF-8; decoded leniently they cannot turn into a UnicodeDecodeError.
    nb::register_exception_translator([](const std::exception_ptr& error, void*) {
        try {
            std::rethrow_exception(error);
        } catch (const lcn::LlamaError&) {
            nb::object instance = exception_object(error);
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(instance.ptr())), instance.ptr());
        }
    });
}

nb::object exception_object(const std::exception_ptr& error) {
    if (!error) return nb::none();
    nb::handle type = llama_error;
    std::string message;
    try {
        std::rethrow_exception(error);
    } catch (const lcn::ModelLoadError& e) {
        type = model_load_error, message = e.what();
    } catch (const lcn::ValidationError& e) {
        type = validation_error, message = e.what();
    } catch (const lcn::GenerationError& e) {
        type = generation_error, message = e.what();
    } catch (const std::exception& e) {
        message = e.what();  // LlamaError itself, and anything else of C++
    } catch (...) {
        message = "unknown C++ exception";
    }
    return type(decode_utf8(message));
}

nb::str decode_utf8(const std::string& text) {
    PyObject* obj = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
    if (obj == nullptr) throw nb::python_error();
    return nb::steal<nb::str>(obj);
}
