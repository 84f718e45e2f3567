// One bind_X per concept; module.cpp calls them in dependency order.
#pragma once

#include <nanobind/nanobind.h>

namespace nb = nanobind;

void bind_errors(nb::module_& m);
void bind_log(nb::module_& m);
void bind_model(nb::module_& m);
void bind_sampling(nb::module_& m);
void bind_context(nb::module_& m);
void bind_grammar(nb::module_& m);
void bind_chat(nb::module_& m);
void bind_lora(nb::module_& m);
void bind_pool(nb::module_& m);
void bind_streaming(nb::module_& m);
void bind_testing(nb::module_& m);

// UTF-8 bytes to str, replacing invalid sequences rather than raising: model
// output is not guaranteed to be valid UTF-8.
nb::str decode_utf8(const std::string& text);
