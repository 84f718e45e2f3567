// One bind_X per concept; module.cpp calls them in dependency order.
#pragma once

#include <nanobind/nanobind.h>

#include <exception>
#include <string>

namespace nb = nanobind;

void bind_errors(nb::module_& m);
void bind_log(nb::module_& m);
void bind_devices(nb::module_& m);
void bind_model(nb::module_& m);
void bind_sampling(nb::module_& m);
void bind_context(nb::module_& m);
void bind_speculative(nb::module_& m);
void bind_grammar(nb::module_& m);
void bind_chat(nb::module_& m);
void bind_lora(nb::module_& m);
void bind_pool(nb::module_& m);
void bind_streaming(nb::module_& m);
void bind_testing(nb::module_& m);

// UTF-8 bytes to str, replacing invalid sequences rather than raising: model
// output is not guaranteed to be valid UTF-8.
nb::str decode_utf8(const std::string& text);
// The Python exception object of a C++ error, of its own class (ModelLoadError,
// ValidationError, GenerationError; LlamaError for LlamaError and any other std::exception);
// None for a null pointer. Needs the GIL.
nb::object exception_object(const std::exception_ptr& error);
