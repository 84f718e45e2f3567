#include "../engine/chat_template.h"

#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "../engine/model.h"
#include "bindings.h"

void bind_chat(nb::module_& m) {
    nb::class_<lcn::ChatTemplate>(m, "ChatTemplate",
                                  "A chat template: the model's own (Jinja) or a llama.cpp built-in by name.")
        .def(nb::init<const lcn::Model&, const std::string&>(), nb::arg("model"), nb::arg("builtin_name"),
             nb::call_guard<nb::gil_scoped_release>())
        .def(
            "render",
            [](const lcn::ChatTemplate& self, const std::vector<std::pair<std::string, std::string>>& messages,
               bool add_generation_prompt) {
                std::vector<lcn::ChatMessage> chat;
                chat.reserve(messages.size());
                for (const auto& [role, content] : messages) chat.push_back({role, content});
                nb::gil_scoped_release nogil;
                lcn::RenderedChat r = self.render(chat, add_generation_prompt);
                return std::make_pair(r.prompt, r.stops);
            },
            nb::arg("messages"), nb::arg("add_generation_prompt"),
            "Renders (role, content) pairs; returns (prompt, extra stop strings).")
        .def_prop_ro("source", &lcn::ChatTemplate::source)
        .def_static("builtin_names", &lcn::ChatTemplate::builtin_names, "Names of llama.cpp's built-in templates.");
}
