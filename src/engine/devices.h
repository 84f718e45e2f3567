// Devices: what ggml can run a model on, where a model's layers go (split mode, main GPU,
// tensor split, chosen devices), and llama.cpp's RPC backend (remote devices, the worker).
#pragma once

#include <ggml-backend.h>
#include <llama.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lcn {

struct DeviceInfo {
    int32_t index = -1;  // position among the devices a model can offload to; -1 for the CPU
    std::string name;    // ggml's name: "CUDA0", "CPU", "RPC0"
    std::string description;
    std::string type;  // "cpu", "gpu", "igpu", "accel", "meta"
    std::string backend;
    size_t memory_free = 0;
    size_t memory_total = 0;
};

// Every device of this process, then the devices of each RPC server (connecting to it).
std::vector<DeviceInfo> list_devices(const std::vector<std::string>& rpc_servers);

// Where a model goes (LlamaConfig's split_mode, main_gpu, tensor_split, devices, rpc_servers).
struct Placement {
    int32_t split_mode = -1;  // llama_split_mode; -1: llama.cpp's default (layer)
    int32_t main_gpu = 0;
    std::vector<float> tensor_split;
    // Device names ("CUDA1") or, all digits, indices into the offload devices ("1").
    std::vector<std::string> devices;
    std::vector<std::string> rpc_servers;  // "host:port"
};

// Fills the device fields of `params`. `devices` and `tensor_split` receive the arrays the
// params point into: they must outlive the load. Throws ValidationError naming the devices
// there are for a device, main GPU or split that does not exist, ModelLoadError when an RPC
// server cannot be reached.
void apply_placement(const Placement& placement, llama_model_params& params,
                     std::vector<ggml_backend_dev_t>& devices, std::vector<float>& tensor_split);

// Whether this process has a GPU (or integrated GPU) to offload to. Unlike
// llama_supports_gpu_offload(), the RPC backend alone does not count: its devices are the
// servers a model names.
bool has_gpu();

// Whether this build has llama.cpp's RPC backend.
bool rpc_available();

// Whether one of `endpoints` lost its connection (the RPC backend then fails every graph on it).
// The first that did, or an empty string. Cheap while no connection ever failed.
std::string failed_rpc_server(const std::vector<std::string>& endpoints);

// Serves this process's devices (all GPUs, else the CPU; or the named ones) to RPC clients
// at `endpoint` ("host:port") until the process ends. Throws ValidationError for an unknown
// device, LlamaError when the backend is missing or the port cannot be bound.
void rpc_serve(const std::string& endpoint, const std::vector<std::string>& device_names, size_t n_threads,
               const std::string& cache_dir);

}  // namespace lcn
