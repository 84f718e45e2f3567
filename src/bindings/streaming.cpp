#include "../engine/piece_queue.h"

#include "bindings.h"

void bind_streaming(nb::module_& m) {
    nb::class_<lcn::PieceQueue>(m, "PieceQueue",
                                "Text pieces from a decoding thread to a consumer, with no GIL taken per token. "
                                "Pass it as Context.generate's on_text.")
        .def(nb::init<>())
        .def(
            "get",
            [](lcn::PieceQueue& self) -> nb::object {
                std::optional<std::string> piece;
                {
                    nb::gil_scoped_release nogil;
                    piece = self.pop();
                }
                if (!piece) return nb::none();
                return decode_utf8(*piece);
            },
            nb::sig("def get(self) -> str | None"),
            "The next piece (waits with the GIL released); None once the queue is closed and empty.")
        .def("close", &lcn::PieceQueue::close, "No more pieces will come (called when generation ends).")
        .def("cancel", &lcn::PieceQueue::cancel, "Asks the decoding thread to stop before its next token.")
        .def_prop_ro("cancelled", &lcn::PieceQueue::cancelled);
}
