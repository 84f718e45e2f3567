// A pre-flight check of a GGUF file's metadata and tensor table, before llama.cpp loads it.
// llama.cpp's loader asserts some of these facts (GGML_ASSERT stops the process; see
// abort_guard.h) and does not check others at all until a compute kernel asserts them during
// decoding, on ggml's worker threads, where no guard can help. Each failed check throws
// ModelLoadError naming the key or tensor and what is wrong with it.
#pragma once

#include <string>

namespace lcn {

// `api` prefixes the message ("[Llama] ..."); empty for none. A file that ggml's GGUF reader
// itself rejects passes this check: llama.cpp then fails with the reader's own reason.
void preflight_gguf(const std::string& path, const char* api);

// A LoRA adapter's tensor table: every tensor a matrix of a weight format (llama.cpp checks
// two of its dimensions against the base model, not the rest nor the type). ValidationError.
void preflight_lora(const std::string& path);

}  // namespace lcn
