#include "../engine/chat_template.h"

#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "../engine/chat_parser.h"
#include "../engine/model.h"
#include "bindings.h"

void bind_chat(nb::module_& m) {
    nb::class_<lcn::ChatParser>(m, "ChatParser",
                                "Parses a reply into an OpenAI assistant message (JSON text) with the parser llama.cpp's "
                                "common chat layer built for the request's format.")
        .def("parse", &lcn::ChatParser::parse, nb::arg("text"), nb::arg("partial") = false,
             nb::call_guard<nb::gil_scoped_release>(),
             "The message as JSON text; a final reply that does not match the format raises GenerationError.");

    nb::class_<lcn::ChatStreamParser>(m, "ChatStreamParser", "A ChatParser over a reply arriving piece by piece.")
        .def(nb::init<std::shared_ptr<const lcn::ChatParser>>(), nb::arg("parser"))
        .def("feed", &lcn::ChatStreamParser::feed, nb::arg("piece"), nb::call_guard<nb::gil_scoped_release>(),
             "Appends a piece; the new deltas as a JSON array.")
        .def("finish", &lcn::ChatStreamParser::finish, nb::call_guard<nb::gil_scoped_release>(),
             "The remaining deltas and the final message: JSON text {\"deltas\": [...], \"message\": {...}}.");

    using P = lcn::ChatPrompt;
    nb::class_<P>(m, "ChatPrompt", "A rendered chat request: prompt, stops, tool-call grammar, parser.")
        .def_ro("prompt", &P::prompt)
        .def_ro("stops", &P::stops)
        .def_ro("grammar", &P::grammar)
        .def_ro("grammar_lazy", &P::grammar_lazy)
        .def_ro("grammar_trigger_patterns", &P::grammar_trigger_patterns)
        .def_ro("grammar_trigger_tokens", &P::grammar_trigger_tokens)
        .def_ro("grammar_prefill", &P::grammar_prefill)
        .def_ro("text_tokens", &P::text_tokens)
        .def_ro("format", &P::format)
        .def_ro("generation_prompt", &P::generation_prompt)
        .def_prop_ro("parser", [](const P& p) { return p.parser; });

    nb::class_<lcn::ChatTemplate>(m, "ChatTemplate",
                                  "A chat template: the model's own (Jinja) or a llama.cpp built-in by name.")
        .def(nb::init<const lcn::Model&, const std::string&>(), nb::arg("model"), nb::arg("builtin_name"),
             nb::keep_alive<1, 2>(), nb::call_guard<nb::gil_scoped_release>())
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
        .def(
            "apply",
            [](const lcn::ChatTemplate& self, const std::string& messages_json, const std::string& tools_json,
               const std::string& tool_choice, bool parallel_tool_calls, int thinking, bool add_generation_prompt,
               const std::map<std::string, std::string>& template_kwargs) {
                lcn::ChatInputs in;
                in.messages_json = messages_json;
                in.tools_json = tools_json;
                in.tool_choice = tool_choice;
                in.parallel_tool_calls = parallel_tool_calls;
                in.thinking = thinking;
                in.add_generation_prompt = add_generation_prompt;
                in.template_kwargs = template_kwargs;
                nb::gil_scoped_release nogil;
                return self.apply(in);
            },
            nb::arg("messages_json"), nb::arg("tools_json"), nb::arg("tool_choice"), nb::arg("parallel_tool_calls"),
            nb::arg("thinking"), nb::arg("add_generation_prompt"), nb::arg("template_kwargs"),
            "Renders a request (OpenAI messages and tools as JSON text; thinking -1 default, 0 off, 1 on).")
        .def_prop_ro("source", &lcn::ChatTemplate::source)
        .def_prop_ro("is_builtin", &lcn::ChatTemplate::is_builtin)
        .def_prop_ro(
            "thinking_mode",
            [](const lcn::ChatTemplate& self) { return std::string(lcn::thinking_mode_name(self.thinking_mode())); },
            "'hybrid' (a switch turns thinking on and off), 'always' or 'none'.")
        .def_prop_ro("capabilities", &lcn::ChatTemplate::capabilities,
                     "The template's capabilities as llama.cpp's Jinja analysis reports them.")
        .def_static("builtin_names", &lcn::ChatTemplate::builtin_names, "Names of llama.cpp's built-in templates.");

    m.def(
        "template_limits",
        [] {
            const lcn::TemplateLimits l = lcn::template_limits();
            return std::make_tuple(l.max_depth, l.max_steps, l.max_bytes, l.max_items, l.max_seconds);
        },
        "The Jinja limits in force: (max_depth, max_steps, max_bytes, max_items, max_seconds).");
    m.def(
        "set_template_limits",
        [](uint64_t max_depth, uint64_t max_steps, uint64_t max_bytes, uint64_t max_items, double max_seconds) {
            lcn::set_template_limits({max_depth, max_steps, max_bytes, max_items, max_seconds});
        },
        nb::arg("max_depth"), nb::arg("max_steps"), nb::arg("max_bytes"), nb::arg("max_items"), nb::arg("max_seconds"),
        "Sets the Jinja limits for every later parse and render, process-wide.");
}
