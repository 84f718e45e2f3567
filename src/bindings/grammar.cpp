#include "../engine/grammar.h"

#include <nanobind/stl/string.h>

#include "../engine/model.h"
#include "bindings.h"

void bind_grammar(nb::module_& m) {
    m.def(
        "validate_grammar",
        [](const std::string& gbnf, const std::string& root, const lcn::Model* model) {
            lcn::validate_grammar(gbnf, root, model);
        },
        nb::arg("gbnf"), nb::arg("root") = "root", nb::arg("model").none() = nb::none(),
        nb::call_guard<nb::gil_scoped_release>(),
        "Parses a GBNF grammar; raises ValidationError with llama.cpp's parser message.");
    m.def("json_schema_to_gbnf", &lcn::json_schema_to_gbnf, nb::arg("schema_json"),
          nb::call_guard<nb::gil_scoped_release>(),
          "Converts a JSON schema (JSON text) to GBNF with llama.cpp's json_schema_to_grammar.");
}
