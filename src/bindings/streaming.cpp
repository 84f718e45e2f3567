#include "../engine/stream.h"

#include <nanobind/stl/string.h>

#include "bindings.h"
#include "results.h"

void bind_streaming(nb::module_& m) {
    nb::class_<StreamHandle>(m, "Stream",
                             "A generation started by Context.start_stream: its first piece was decoded on the "
                             "caller's thread, the rest decodes on the context's stream thread. Dropping it "
                             "cancels the generation.")
        .def(
            "get",
            [](StreamHandle& self) -> nb::object {
                std::optional<std::string> piece;
                {
                    nb::gil_scoped_release nogil;
                    piece = self.stream->next_piece();
                }
                if (!piece) return nb::none();
                return decode_utf8(*piece);
            },
            nb::sig("def get(self) -> str | None"),
            "The next piece (waits with the GIL released); None once the generation has ended.")
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
