// Process-wide llama.cpp state: backend initialisation and the log sink.
#pragma once

#include <string>

namespace lcn {

// Initialises the llama.cpp backend once per process (thread-safe, idempotent).
void ensure_backend();

// Frees the backend if it was initialised; a later ensure_backend() starts it again.
void free_backend();

// Minimum level forwarded to stderr: 0 = everything (debug), 1 = info, 2 = warn,
// 3 = error, 4 = nothing. Errors are always recorded for last_error_message().
void set_log_level(int level);
int log_level();

// The most recent error-level lines llama.cpp logged on this thread, joined;
// used to explain a failed load. clear_error_messages() starts a new record.
std::string last_error_messages();
void clear_error_messages();

std::string system_info();

}  // namespace lcn
