#include "../engine/stream.h"

#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <utility>

#include "bindings.h"
#include "results.h"

void bind_streaming(nb::module_& m) {
    nb::class_<lcn::TokenLogprobs>(m, "TokenLogprobs",
                                   "Tokens a streamed piece released, with their log-probabilities (the fields of "
                                   "GenerationResult of the same names, for those tokens).")
        .def(nb::init<>())
        .def_ro("tokens", &lcn::TokenLogprobs::tokens)
        .def_ro("token_logprobs", &lcn::TokenLogprobs::token_logprobs)
        .def_ro("top_logprobs", &lcn::TokenLogprobs::top_logprobs)
        .def(
            "extend",
            [](lcn::TokenLogprobs& self, const lcn::TokenLogprobs& other) { self.append(lcn::TokenLogprobs(other)); },
            nb::arg("other"), "Appends another's tokens after these.")
        .def("__len__", [](const lcn::TokenLogprobs& self) { return self.tokens.size(); });

    nb::class_<StreamHandle>(m, "Stream",
                             "A generation started by Context.start_stream: its first piece was decoded on the "
                             "caller's thread, the rest decodes on the context's stream thread. Dropping it "
                             "cancels the generation.")
        .def(
            "get",
            [](StreamHandle& self) -> nb::object {
                std::optional<lcn::Piece> piece;
                {
                    nb::gil_scoped_release nogil;
                    piece = self.stream->next_piece();
                }
                if (!piece) return nb::none();
                self.logprobs.append(std::move(piece->logprobs));
                return decode_utf8(piece->text);
            },
            nb::sig("def get(self) -> str | None"),
            "The next piece (waits with the GIL released); None once the generation has ended. With "
            "logprobs requested, a piece may be empty: it then only releases tokens (see take_logprobs).")
        .def(
            "take_logprobs", [](StreamHandle& self) { return std::exchange(self.logprobs, lcn::TokenLogprobs()); },
            "With logprobs requested: the tokens whose text the pieces returned since the last call released "
            "(text held back goes with the last piece), with their log-probabilities; else empty.")
        .def(
            "cancel", [](StreamHandle& self) { self.stream->cancel(); },
            "Stops the generation before its next token (any thread; does not wait).")
        .def(
            "wait", [](StreamHandle& self) { self.stream->wait(); }, nb::call_guard<nb::gil_scoped_release>(),
            "Waits until the generation has ended and the context is free.")
        .def_prop_ro(
            "done", [](StreamHandle& self) { return self.stream->done(); }, "The generation has ended.")
        .def(
            "result", [](StreamHandle& self) { return to_python(self.stream->result()); },
            "The GenerationResult once done (raises the generation's error if it failed).");
}
