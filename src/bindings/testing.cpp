// _core.testing: what the tests reach that is no part of the product (STYLE.md, habit 13).
#include "../engine/context.h"
#include "../engine/cpu_load.h"
#include "bindings.h"

void bind_testing(nb::module_& m) {
    nb::module_ t = m.def_submodule("testing", "Hooks for the tests; not a public API.");
    t.def("threads_for_free_cores", &lcn::threads_for_free_cores, nb::arg("current"), nb::arg("max_threads"),
          nb::arg("free_cores"),
          "The thread governor's decision: threads to use after `current` ran with `free_cores` cores left free "
          "by other processes.");
    t.def("free_cores", &lcn::Context::free_cores, nb::arg("context"),
          "Cores other processes left free at the context's latest reading; negative before the first one or "
          "when the user set the thread counts.");
}
