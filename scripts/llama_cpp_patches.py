"""Our changes to the pinned llama.cpp tree, applied when it is unpacked
(scripts/fetch_llama_cpp.py). Each one is an exact text replacement that must match once,
so a different tree fails loudly instead of building unpatched. Every build made from the
tree (the package, the reference prefix with llama-bench and llama-completion) has them, so
benchmarks still compare like with like. docs/NOTES.md says why each exists.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

# (file in the tree, text that must occur once, its replacement)
PATCHES: list[tuple[str, str, str]] = [
    # CUDA graphs are cached per context under the address of the graph's first node. Every
    # graph llama.cpp builds after another of a different shape reuses the same metadata
    # buffer, so a prompt's graph and the one-token graph after it have the same first-node
    # address: the prompt overwrote the cached properties of the one-token graph, whose next
    # decode then ran without a CUDA graph and the one after re-captured it (about 4 ms per
    # call of a 135M model on an H100; llama.cpp issue 28652). The key now also holds the
    # node count and the first node's shape, so each shape keeps its own CUDA graph; a key
    # that still collides only costs what it cost before (the properties are compared).
    (
        "ggml/src/ggml-cuda/ggml-cuda.cu",
        """static const void * ggml_cuda_graph_get_key(ggml_cgraph * cgraph) {
    return cgraph->nodes[0];
}""",
        """static const void * ggml_cuda_graph_get_key(ggml_cgraph * cgraph) {
    // llama-cpp-nanobind: first node's address, node count and first node's shape
    // (scripts/llama_cpp_patches.py).
    if (cgraph->n_nodes <= 0) {
        return cgraph->nodes[0];
    }
    const ggml_tensor * first = cgraph->nodes[0];
    uint64_t key = (uint64_t) (uintptr_t) first;
    const uint64_t parts[] = { (uint64_t) cgraph->n_nodes, (uint64_t) first->ne[0], (uint64_t) first->ne[1],
                               (uint64_t) first->ne[2], (uint64_t) first->ne[3] };
    for (const uint64_t part : parts) {
        key = (key ^ part) * 0x100000001b3ULL;
    }
    return (const void *) (uintptr_t) key;
}""",
    ),
    # common_chat_templates_init rethrows a template's parse error with `throw e;`, which
    # slices it to std::exception: the caller saw the text "std::exception" instead of the
    # parser's message with its line and column.
    (
        "common/chat.cpp",
        """        LOG_ERR("%s: please consider disabling jinja via --no-jinja, or using another chat template\\n", __func__);
        throw e;""",
        """        LOG_ERR("%s: please consider disabling jinja via --no-jinja, or using another chat template\\n", __func__);
        throw;""",
    ),
    # Jinja render limits. A chat template comes from a stranger's GGUF: without bounds, deep
    # nesting overflows the stack (SIGSEGV), and range(10**9), string repetition or a value
    # doubled in a loop run for minutes while memory grows without end. The parser bounds its
    # nesting; each render bounds the nesting of what it executes, the number of statements
    # and expressions it executes, its wall time, and the size of every string and array.
    (
        "common/jinja/value.h",
        """namespace jinja {
""",
        """namespace jinja {

// llama-cpp-nanobind (scripts/llama_cpp_patches.py): bounds on parsing and rendering.
struct render_limits {
    size_t max_depth = 512;          // nesting of the template's blocks and expressions, and of execution
    uint64_t max_steps = 2000000;    // statements and expressions executed by one render
    size_t max_bytes = 16u << 20;    // characters in one string
    size_t max_items = 100000;       // items in one array, pieces in one string
    double max_seconds = 1.0;        // wall time of one render (or of one render_scope)
};
render_limits get_render_limits();
void set_render_limits(const render_limits & limits);
void check_string_size(uint64_t n_bytes, uint64_t n_parts = 0);  // throws past max_bytes (parts: max_items)
void check_array_size(uint64_t n_items);                         // throws past max_items
void count_step();                                               // one more step of work (steps, time)

// One budget of steps and time on this thread while it lives. Every render opens one; a
// scope opened around several renders (all of a template's analysis, say) makes them share
// the outer budget.
struct render_scope {
    render_scope();
    ~render_scope();
    render_scope(const render_scope &) = delete;
    render_scope & operator=(const render_scope &) = delete;
private:
    bool outer;
};
""",
    ),
    (
        "common/jinja/value.h",
        """    void push_back(const value & val) {
        if (is_immutable()) {
            throw std::runtime_error("Attempting to modify immutable type");
        }
        val_arr.push_back(val);
    }
    void push_back(value && val) {
        if (is_immutable()) {
            throw std::runtime_error("Attempting to modify immutable type");
        }
        val_arr.push_back(std::move(val));""",
        """    void push_back(const value & val) {
        if (is_immutable()) {
            throw std::runtime_error("Attempting to modify immutable type");
        }
        check_array_size(val_arr.size() + 1);
        val_arr.push_back(val);
    }
    void push_back(value && val) {
        if (is_immutable()) {
            throw std::runtime_error("Attempting to modify immutable type");
        }
        check_array_size(val_arr.size() + 1);
        val_arr.push_back(std::move(val));""",
    ),
    (
        "common/jinja/runtime.h",
        """struct runtime {
    context & ctx;
    explicit runtime(context & ctx) : ctx(ctx) {}

    value_array execute(const program & prog) {
""",
        """struct runtime {
    context & ctx;
    explicit runtime(context & ctx) : ctx(ctx) {}

    value_array execute(const program & prog) {
        render_scope scope;
""",
    ),
    (
        "common/jinja/runtime.cpp",
        """void enable_debug(bool enable) {
    g_jinja_debug = enable;
}
""",
        """void enable_debug(bool enable) {
    g_jinja_debug = enable;
}

// llama-cpp-nanobind: render limits (scripts/llama_cpp_patches.py).
namespace {
std::mutex g_limits_mutex;
render_limits g_limits;
struct render_state {
    bool active = false;
    size_t depth = 0;
    uint64_t steps = 0;
    double deadline = 0;
    render_limits limits;
};
thread_local render_state t_render;
double seconds_now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
struct step_guard {
    step_guard() {
        render_state & s = t_render;
        if (!s.active) {
            s.limits = get_render_limits();
        }
        if (s.depth + 1 > s.limits.max_depth) {
            throw std::runtime_error("template limit: execution nests deeper than " +
                                     std::to_string(s.limits.max_depth) + " levels (recursion?)");
        }
        ++s.depth;
        if (s.active) {
            ++s.steps;
            if (s.steps > s.limits.max_steps) {
                --s.depth;
                throw std::runtime_error("template limit: more than " + std::to_string(s.limits.max_steps) +
                                         " statements and expressions executed in one render");
            }
            if ((s.steps & 15) == 0 && seconds_now() > s.deadline) {
                --s.depth;
                throw std::runtime_error("template limit: rendering took longer than " +
                                         std::to_string(s.limits.max_seconds) + " s");
            }
        }
    }
    ~step_guard() { --t_render.depth; }
};
} // namespace

void count_step() {
    render_state & s = t_render;
    if (!s.active) {
        return;
    }
    ++s.steps;
    if (s.steps > s.limits.max_steps) {
        throw std::runtime_error("template limit: more than " + std::to_string(s.limits.max_steps) +
                                 " statements and expressions executed in one render");
    }
    if ((s.steps & 15) == 0 && seconds_now() > s.deadline) {
        throw std::runtime_error("template limit: rendering took longer than " +
                                 std::to_string(s.limits.max_seconds) + " s");
    }
}

render_limits get_render_limits() {
    std::lock_guard<std::mutex> lock(g_limits_mutex);
    return g_limits;
}

void set_render_limits(const render_limits & limits) {
    std::lock_guard<std::mutex> lock(g_limits_mutex);
    g_limits = limits;
}

void check_string_size(uint64_t n_bytes, uint64_t n_parts) {
    const render_limits limits = t_render.active ? t_render.limits : get_render_limits();
    if (n_bytes > limits.max_bytes) {
        throw std::runtime_error("template limit: a string of " + std::to_string(n_bytes) +
                                 " characters is longer than " + std::to_string(limits.max_bytes));
    }
    if (n_parts > limits.max_items) {
        throw std::runtime_error("template limit: a string built from more than " +
                                 std::to_string(limits.max_items) + " pieces");
    }
}

void check_array_size(uint64_t n_items) {
    const size_t max = t_render.active ? t_render.limits.max_items : get_render_limits().max_items;
    if (n_items > max) {
        throw std::runtime_error("template limit: an array of more than " + std::to_string(max) + " items");
    }
}

render_scope::render_scope() : outer(!t_render.active) {
    if (outer) {
        render_state & s = t_render;
        s.limits = get_render_limits();
        s.active = true;
        s.steps = 0;
        s.deadline = seconds_now() + s.limits.max_seconds;
    }
}

render_scope::~render_scope() {
    if (outer) {
        t_render.active = false;
    }
}
""",
    ),
    (
        "common/jinja/runtime.cpp",
        """#include <string>
#include <vector>
#include <memory>
#include <cmath>
""",
        """#include <string>
#include <vector>
#include <memory>
#include <cmath>
#include <chrono>
#include <mutex>
""",
    ),
    (
        "common/jinja/runtime.cpp",
        """value statement::execute(context & ctx) const {
    try {
        return execute_impl(ctx);""",
        """value statement::execute(context & ctx) const {
    try {
        step_guard guard;  // llama-cpp-nanobind: depth, steps and time within the render's limits
        return execute_impl(ctx);""",
    ),
    (
        "common/jinja/runtime.cpp",
        """        auto output = left_val->as_string().append(right_val->as_string());""",
        """        auto output = left_val->as_string().append(right_val->as_string());
        check_string_size(output.length(), output.parts.size());""",
    ),
    (
        "common/jinja/runtime.cpp",
        """        if (repeat <= 0) {
            return res;
        }
        for (int64_t i = 0; i < repeat; ++i) {""",
        """        if (repeat <= 0) {
            return res;
        }
        if (str.length() > 0) {
            check_string_size(uint64_t(repeat) > (uint64_t(1) << 40) / str.length() ? (uint64_t(1) << 40)
                                                                                       : uint64_t(repeat) * str.length());
        }
        for (int64_t i = 0; i < repeat; ++i) {""",
    ),
    (
        "common/jinja/runtime.cpp",
        """    for (size_t i = 0; i < items.size(); ++i) {
        context loop_scope(scope);""",
        """    for (size_t i = 0; i < items.size(); ++i) {
        count_step();  // llama-cpp-nanobind: each item's scope copies every variable
        context loop_scope(scope);""",
    ),
    (
        "common/jinja/value.cpp",
        """            auto out = mk_val<value_array>();
            if (step == 0) {
                throw raised_exception("range() step argument must not be zero");
            }""",
        """            auto out = mk_val<value_array>();
            if (step == 0) {
                throw raised_exception("range() step argument must not be zero");
            }
            // llama-cpp-nanobind: the length is known before any item is made
            const double n_range = (static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step);
            check_array_size(n_range > 0 ? static_cast<uint64_t>(std::min(n_range, 1e18)) : 0);""",
    ),
    (
        "common/jinja/value.cpp",
        """            if (is_val<value_int>(val_width)) {
                indent.assign(val_width->as_int(), ' ');""",
        """            if (is_val<value_int>(val_width)) {
                check_string_size(val_width->as_int() < 0 ? 0 : uint64_t(val_width->as_int()));
                indent.assign(val_width->as_int() < 0 ? 0 : size_t(val_width->as_int()), ' ');""",
    ),
    (
        "common/jinja/value.cpp",
        """    if (is_val<value_int>(val_indent)) {
        indent = static_cast<int>(val_indent->as_int());
    }""",
        """    if (is_val<value_int>(val_indent)) {
        check_string_size(val_indent->as_int() < 0 ? 0 : uint64_t(val_indent->as_int()) * 64);
        indent = static_cast<int>(val_indent->as_int());
    }""",
    ),
    # Parse errors name the line and column (the engine printed only a snippet of the source),
    # and the parser's plain runtime errors ("Unexpected token ...") get the position too.
    (
        "common/jinja/utils.h",
        """    oss << tag << ": " << msg << "\\n";
    oss << peak_source(source, pos);""",
        """    size_t line = 1;  // llama-cpp-nanobind: the line and column of the error
    size_t col = 1;
    for (size_t i = 0; i < pos && i < source.size(); i++) {
        if (source[i] == '\\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    oss << tag << ": " << msg << " (line " << line << ", column " << col << ")\\n";
    oss << peak_source(source, pos);""",
    ),
    (
        "common/jinja/parser.cpp",
        """    program parse() {
        statements body;
        while (current < tokens.size()) {
            body.push_back(parse_any());
        }
        return program(std::move(body));
    }""",
        """    program parse() {
        statements body;
        try {
            while (current < tokens.size()) {
                body.push_back(parse_any());
            }
        } catch (const parser_exception &) {
            throw;
        } catch (const std::exception & e) {  // llama-cpp-nanobind: say where
            const size_t at = current == 0 ? 0 : (current <= tokens.size() ? current - 1 : tokens.size() - 1);
            throw parser_exception(std::string("Parser Error: ") + e.what(), source, tokens.empty() ? 0 : tokens[at].pos);
        }
        return program(std::move(body));
    }""",
    ),
    (
        "common/jinja/parser.cpp",
        """    size_t current = 0;
""",
        """    size_t current = 0;

    // llama-cpp-nanobind: the nesting of what is being parsed, bounded (render_limits)
    // because each level recurses and a template from a stranger can nest without end.
    size_t depth = 0;
    size_t max_depth = get_render_limits().max_depth;
    struct nest {
        parser & p;
        size_t saved;
        explicit nest(parser & owner) : p(owner), saved(owner.depth) { p.deeper(); }
        ~nest() { p.depth = saved; }
    };
    struct keep {
        parser & p;
        size_t saved;
        explicit keep(parser & owner) : p(owner), saved(owner.depth) {}
        ~keep() { p.depth = saved; }
    };
    void deeper() {
        if (++depth > max_depth) {
            const size_t at = current < tokens.size() ? current : tokens.size() - 1;
            throw parser_exception("Parser Error: the template nests deeper than " + std::to_string(max_depth) +
                                   " levels", source, tokens.empty() ? 0 : tokens[at].pos);
        }
    }
""",
    ),
    # GBNF from a stranger. The parser printed its reason for refusing a grammar to stderr
    # (fprintf), where no caller can read it: it goes through llama.cpp's log now, which the
    # engine captures per thread and puts in the ValidationError.
    (
        "src/llama-grammar.cpp",
        """        fprintf(stderr, "%s: error parsing grammar: %s\\n\\n%s\\n", __func__, err.what(), src);""",
        """        LLAMA_LOG_ERROR("%s: error parsing grammar: %s\\n", __func__, err.what());""",
    ),
    # `"a"{5,2}`: a maximum below the minimum made the rewrite count max - min down from an
    # unsigned underflow (2**64 rules: the process hung while memory grew).
    (
        "src/llama-grammar.cpp",
        """        bool no_max = max_times == UINT64_MAX;""",
        """        bool no_max = max_times == UINT64_MAX;
        if (!no_max && max_times < min_times) {
            throw std::runtime_error("repetition {" + std::to_string(min_times) + "," + std::to_string(max_times) +
                                     "}: the maximum is below the minimum at " + std::string(pos).substr(0, 40));
        }""",
    ),
    # \\U00110000 and \\uD800 are not characters: they compiled into a grammar no UTF-8 text
    # can match, or one that matched bytes no decoder accepts.
    (
        "src/llama-grammar.cpp",
        """    if (pos != end) {
        throw std::runtime_error("expecting " + std::to_string(size) + " hex chars at " + src);
    }
    return std::make_pair(value, pos);""",
        """    if (pos != end) {
        throw std::runtime_error("expecting " + std::to_string(size) + " hex chars at " + src);
    }
    if (value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
        throw std::runtime_error("escape at " + std::string(src).substr(0, 12) +
                                 " is not a Unicode character (above U+10FFFF, or a surrogate)");
    }
    return std::make_pair(value, pos);""",
    ),
    # RPC client: a worker that dies (or answers garbage) made RPC_STATUS_ASSERT abort the whole
    # process from the RPC dispatcher thread, where no caller can catch anything (upstream's own
    # fix, llama.cpp PR 26724, is not in this tree). Now the dispatcher marks itself failed, logs
    # once, completes every pending and later message without I/O (outputs zeroed), and graphs on
    # it return GGML_STATUS_FAILED (llama_decode then fails). The failures are readable through
    # the backend registry ("ggml_backend_rpc_failures": how many connections failed,
    # "ggml_backend_rpc_endpoint_failed": whether an endpoint's latest one did), so the engine
    # can fail the generation whose results were lost. Once every buffer and backend of the failed
    # connection is freed (the model closed), the next user of the endpoint connects afresh, as
    # before. A connection that works behaves as before.
    (
        "ggml/src/ggml-rpc/ggml-rpc.cpp",
        """#define RPC_STATUS_ASSERT(x) if (!(x)) GGML_ABORT("Remote RPC server crashed or returned malformed response")
""",
        """#define RPC_STATUS_ASSERT(x) if (!(x)) GGML_ABORT("Remote RPC server crashed or returned malformed response")

// llama-cpp-nanobind (scripts/llama_cpp_patches.py): connections that failed, process-wide,
// and the endpoints whose latest connection failed.
static std::atomic<uint64_t> rpc_failed_connections{0};
static std::mutex rpc_failed_mutex;
static std::unordered_set<std::string> rpc_failed_endpoints;
static uint64_t ggml_backend_rpc_failures(void) {
    return rpc_failed_connections.load();
}
static bool ggml_backend_rpc_endpoint_failed(const char * endpoint) {
    std::lock_guard<std::mutex> lock(rpc_failed_mutex);
    return rpc_failed_endpoints.count(endpoint) > 0;
}
static void rpc_mark_endpoint(const std::string & endpoint, bool failed) {
    std::lock_guard<std::mutex> lock(rpc_failed_mutex);
    if (failed) {
        rpc_failed_endpoints.insert(endpoint);
        rpc_failed_connections++;
    } else {
        rpc_failed_endpoints.erase(endpoint);
    }
}
""",
    ),
    (
        "ggml/src/ggml-rpc/ggml-rpc.cpp",
        """    void start(const std::string & endpoint);
    void work();
""",
        """    void start(const std::string & endpoint);
    void work();
    bool failed() const { return failed_.load(); }
""",
    ),
    (
        "ggml/src/ggml-rpc/ggml-rpc.cpp",
        """    std::atomic_bool running;
    std::thread      thread;
};""",
        """    std::atomic_bool running;
    std::thread      thread;
    std::atomic_bool failed_{false};
    std::string      endpoint_;
};""",
    ),
    (
        "ggml/src/ggml-rpc/ggml-rpc.cpp",
        """    LOG_DBG("[%s] connected to %s\\n", __func__, endpoint.c_str());
    running = true;""",
        """    LOG_DBG("[%s] connected to %s\\n", __func__, endpoint.c_str());
    endpoint_ = endpoint;
    rpc_mark_endpoint(endpoint, false);
    running = true;""",
    ),
    (
        "ggml/src/ggml-rpc/ggml-rpc.cpp",
        """        if (msg_ptr->cmd != RPC_CMD_NONE) {
            if (msg_ptr->output) {
                bool status = send_rpc_cmd(sock, msg_ptr->cmd, msg_ptr->input.get(), msg_ptr->input_size, msg_ptr->output, msg_ptr->output_size);
                RPC_STATUS_ASSERT(status);
            } else {
                bool status = send_rpc_cmd(sock, msg_ptr->cmd, msg_ptr->input.get(), msg_ptr->input_size);
                RPC_STATUS_ASSERT(status);
            }
        }""",
        """        if (msg_ptr->cmd != RPC_CMD_NONE) {
            bool status = false;
            if (!failed_) {
                status = msg_ptr->output
                    ? send_rpc_cmd(sock, msg_ptr->cmd, msg_ptr->input.get(), msg_ptr->input_size, msg_ptr->output, msg_ptr->output_size)
                    : send_rpc_cmd(sock, msg_ptr->cmd, msg_ptr->input.get(), msg_ptr->input_size);
                if (!status) {
                    GGML_LOG_ERROR("RPC server %s failed (connection lost or malformed response); "
                                   "its buffers are gone\\n", endpoint_.c_str());
                    failed_ = true;
                    rpc_mark_endpoint(endpoint_, true);
                }
            }
            if (!status && msg_ptr->output) {
                memset(msg_ptr->output, 0, msg_ptr->output_size);
            }
        }""",
    ),
    (
        "ggml/src/ggml-rpc/ggml-rpc.cpp",
        """    GGML_ASSERT(cgraph->n_nodes > 0);
    bool reuse""",
        """    GGML_ASSERT(cgraph->n_nodes > 0);
    if (rpc_ctx->dispatcher->failed()) {
        return GGML_STATUS_FAILED;
    }
    bool reuse""",
    ),
    (
        "ggml/src/ggml-rpc/ggml-rpc.cpp",
        """    if (std::strcmp(name, "ggml_backend_rpc_start_server") == 0) {
        return (void *)ggml_backend_rpc_start_server;
    }""",
        """    if (std::strcmp(name, "ggml_backend_rpc_start_server") == 0) {
        return (void *)ggml_backend_rpc_start_server;
    }
    if (std::strcmp(name, "ggml_backend_rpc_failures") == 0) {
        return (void *)ggml_backend_rpc_failures;
    }
    if (std::strcmp(name, "ggml_backend_rpc_endpoint_failed") == 0) {
        return (void *)ggml_backend_rpc_endpoint_failed;
    }""",
    ),
]

# Regular-expression edits: (file, pattern, replacement, how many matches there must be).
REGEX_PATCHES: list[tuple[str, str, str, int]] = [
    # Every recursive step of the Jinja parser enters one level of nesting ...
    (
        "common/jinja/parser.cpp",
        r"(\n    statement_ptr parse_(?:any|jinja_statement|expression|if_expression|logical_negation_expression"
        r"|unary_expression|call_expression|primary_expression|member_expression_arguments)\([^)]*\) \{\n)",
        r"\1        nest guard_(*this);\n",
        9,
    ),
    # ... every operator a loop chains onto the left of an expression goes one level deeper ...
    (
        "common/jinja/parser.cpp",
        r"(\n        while \((?:is_identifier\(\"or\"\)|is_identifier\(\"and\"\)|true|is\(token::additive_binary_operator\)"
        r"|is\(token::multiplicative_binary_operator\)|is_identifier\(\"is\"\)|is\(token::pipe\)"
        r"|is\(token::dot\) \|\| is\(token::open_square_bracket\))\) \{\n)",
        r"\1            deeper();\n",
        8,
    ),
    # ... and those loops give their levels back when the expression ends.
    (
        "common/jinja/parser.cpp",
        r"(\n    statement_ptr parse_(?:logical_or_expression|logical_and_expression|comparison_expression"
        r"|additive_expression|multiplicative_expression|test_expression|filter_expression"
        r"|member_expression)\([^)]*\) \{\n)",
        r"\1        keep guard_(*this);\n",
        8,
    ),
]

def digest() -> str:
    """Identifies this set of patches (recorded in the unpacked tree's stamp)."""
    h = hashlib.sha256()
    for path, old, new in PATCHES:
        h.update(f"{path}\0{old}\0{new}\0".encode())
    for path, pattern, new, count in REGEX_PATCHES:
        h.update(f"{path}\0{pattern}\0{new}\0{count}\0".encode())
    return h.hexdigest()[:16]


def apply(tree: Path) -> None:
    for path, old, new in PATCHES:
        file = tree / path
        text = file.read_text(encoding="utf-8")
        if text.count(old) != 1:
            raise SystemExit(f"llama.cpp patch does not apply: {path} has the text to replace "
                             f"{text.count(old)} times (expected once)")
        file.write_text(text.replace(old, new), encoding="utf-8")
    for path, pattern, new, count in REGEX_PATCHES:
        file = tree / path
        text, n = re.subn(pattern, new, file.read_text(encoding="utf-8"))
        if n != count:
            raise SystemExit(f"llama.cpp patch does not apply: {path} matches {pattern!r} {n} times "
                             f"(expected {count})")
        file.write_text(text, encoding="utf-8")
