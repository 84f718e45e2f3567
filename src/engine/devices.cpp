#include "devices.h"

#include <algorithm>
#include <cctype>
#include <thread>

#include "abort_guard.h"
#include "backend.h"
#include "errors.h"

namespace lcn {
namespace {

const char* type_name(enum ggml_backend_dev_type type) {
    switch (type) {
        case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
        case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
        case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
        case GGML_BACKEND_DEVICE_TYPE_ACCEL: return "accel";
        default: return "meta";
    }
}

bool offloads(ggml_backend_dev_t dev) {
    const auto type = ggml_backend_dev_type(dev);
    return type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU;
}

// The devices a model can offload to, in ggml's order: what an index in LlamaConfig means.
std::vector<ggml_backend_dev_t> offload_devices() {
    std::vector<ggml_backend_dev_t> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (offloads(dev)) out.push_back(dev);
    }
    return out;
}

// The devices llama.cpp picks by itself: discrete GPUs, else integrated ones.
std::vector<ggml_backend_dev_t> default_devices() {
    std::vector<ggml_backend_dev_t> gpus, igpus;
    for (ggml_backend_dev_t dev : offload_devices()) {
        (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU ? gpus : igpus).push_back(dev);
    }
    return gpus.empty() ? igpus : gpus;
}

DeviceInfo describe(ggml_backend_dev_t dev, int32_t index) {
    DeviceInfo info;
    info.index = index;
    info.name = ggml_backend_dev_name(dev);
    info.description = ggml_backend_dev_description(dev);
    info.type = type_name(ggml_backend_dev_type(dev));
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    info.backend = reg != nullptr ? ggml_backend_reg_name(reg) : "";
    ggml_backend_dev_memory(dev, &info.memory_free, &info.memory_total);
    return info;
}

// "CUDA0 (NVIDIA H200), CUDA1 (NVIDIA H200)": what an error names as the choices there are.
std::string choices(const std::vector<ggml_backend_dev_t>& devices) {
    if (devices.empty()) return "this process has no GPU or other offload device (only the CPU)";
    std::string out = "the devices are ";
    for (size_t i = 0; i < devices.size(); ++i) {
        if (i > 0) out += ", ";
        out += std::to_string(i) + ": " + ggml_backend_dev_name(devices[i]) + " (" +
               ggml_backend_dev_description(devices[i]) + ")";
    }
    return out;
}

ggml_backend_reg_t rpc_registry() {
    ensure_backend();
    return ggml_backend_reg_by_name("RPC");
}

template <typename Fn>
Fn rpc_function(const char* name) {
    ggml_backend_reg_t reg = rpc_registry();
    if (reg == nullptr) {
        throw LlamaError("this build has no RPC backend (llama.cpp was built without GGML_RPC)");
    }
    auto fn = reinterpret_cast<Fn>(ggml_backend_reg_get_proc_address(reg, name));
    if (fn == nullptr) throw LlamaError(std::string("the RPC backend of this build has no ") + name);
    return fn;
}

// The devices an RPC server offers (connecting to it the first time).
std::vector<ggml_backend_dev_t> rpc_devices(const std::string& endpoint) {
    using AddServer = ggml_backend_reg_t (*)(const char*);
    AddServer add_server = nullptr;
    try {
        add_server = rpc_function<AddServer>("ggml_backend_rpc_add_server");
    } catch (const LlamaError& e) {
        throw ModelLoadError(std::string("rpc_servers: ") + e.what());
    }
    ggml_backend_reg_t reg = nullptr;
    try {
        AbortGuard guard;  // the backend aborts when it cannot connect
        reg = add_server(endpoint.c_str());
    } catch (const LlamaAbort& e) {
        throw ModelLoadError("rpc_servers: cannot use the RPC server at " + endpoint + ": " + e.what());
    }
    if (reg == nullptr) throw ModelLoadError("rpc_servers: the RPC server at " + endpoint + " offers no device");
    std::vector<ggml_backend_dev_t> out;
    for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); ++i) out.push_back(ggml_backend_reg_dev_get(reg, i));
    return out;
}

bool all_digits(const std::string& text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

ggml_backend_dev_t resolve(const std::string& wanted, const std::vector<ggml_backend_dev_t>& offload) {
    if (all_digits(wanted)) {
        const size_t index = wanted.size() > 6 ? offload.size() : std::stoul(wanted);
        if (index >= offload.size()) {
            throw ValidationError("devices: there is no device " + wanted + "; " + choices(offload));
        }
        return offload[index];
    }
    ggml_backend_dev_t dev = ggml_backend_dev_by_name(wanted.c_str());
    if (dev == nullptr) throw ValidationError("devices: there is no device named '" + wanted + "'; " + choices(offload));
    if (!offloads(dev)) {
        const bool cpu = ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU;
        throw ValidationError("devices: '" + wanted + "' is " +
                              (cpu ? std::string("the CPU, which every model uses anyway")
                                   : std::string("not a GPU (ggml uses it by itself where it helps)")) +
                              "; name GPUs (n_gpu_layers=0 keeps a model on the CPU)");
    }
    return dev;
}

}  // namespace

std::vector<DeviceInfo> list_devices(const std::vector<std::string>& rpc_servers) {
    ensure_backend();
    std::vector<DeviceInfo> out;
    int32_t index = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        out.push_back(describe(dev, offloads(dev) ? index++ : -1));
    }
    for (const std::string& endpoint : rpc_servers) {
        try {
            // Asking a remote device for its memory connects again: a worker gone since its
            // devices were first listed aborts in llama.cpp's client.
            AbortGuard guard;
            for (ggml_backend_dev_t dev : rpc_devices(endpoint)) out.push_back(describe(dev, -1));
        } catch (const LlamaAbort& e) {
            throw ModelLoadError("rpc_servers: cannot use the RPC server at " + endpoint + ": " + e.what());
        }
    }
    return out;
}

void apply_placement(const Placement& placement, llama_model_params& params,
                     std::vector<ggml_backend_dev_t>& devices, std::vector<float>& tensor_split) {
    ensure_backend();
    const std::vector<ggml_backend_dev_t> offload = offload_devices();
    std::vector<ggml_backend_dev_t> chosen;
    const bool explicit_list = !placement.devices.empty() || !placement.rpc_servers.empty();
    if (explicit_list) {
        // RPC devices first, as llama.cpp orders them (fewer transfers over the network).
        for (const std::string& endpoint : placement.rpc_servers) {
            for (ggml_backend_dev_t dev : rpc_devices(endpoint)) chosen.push_back(dev);
        }
        if (placement.devices.empty()) {
            for (ggml_backend_dev_t dev : default_devices()) chosen.push_back(dev);
        }
        for (const std::string& wanted : placement.devices) {
            ggml_backend_dev_t dev = resolve(wanted, offload);
            if (std::find(chosen.begin(), chosen.end(), dev) != chosen.end()) {
                throw ValidationError(std::string("devices: ") + ggml_backend_dev_name(dev) + " is listed twice");
            }
            chosen.push_back(dev);
        }
        devices = chosen;
        devices.push_back(nullptr);
        params.devices = devices.data();
    } else {
        chosen = default_devices();
    }
    if (placement.split_mode == LLAMA_SPLIT_MODE_ROW) {
        // llama.cpp's loader fails later with "does not support split buffers"; say why here.
        for (ggml_backend_dev_t dev : chosen) {
            ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
            const std::string backend = reg != nullptr ? ggml_backend_reg_name(reg) : "";
            if (backend == "RPC") continue;  // remote devices take whole layers
            if (reg == nullptr || ggml_backend_reg_get_proc_address(reg, "ggml_backend_split_buffer_type") == nullptr) {
                throw ValidationError(std::string("split_mode: 'row' needs split buffers, which ") +
                                      ggml_backend_dev_name(dev) + " (" + backend +
                                      ") does not offer in this llama.cpp (llama-bench -sm row fails the same "
                                      "way); 'tensor' splits the matrices across GPUs instead, 'layer' the layers");
            }
        }
    }
    if (placement.split_mode == LLAMA_SPLIT_MODE_TENSOR && chosen.empty()) {
        throw ValidationError("split_mode: 'tensor' splits matrices across GPUs; " + choices(offload));
    }
    if (placement.split_mode >= 0) params.split_mode = static_cast<llama_split_mode>(placement.split_mode);
    // llama.cpp checks main_gpu only when the split mode is none, and then only by a log line.
    if (placement.main_gpu != 0 && placement.main_gpu >= static_cast<int32_t>(chosen.size())) {
        throw ValidationError("main_gpu: there is no device " + std::to_string(placement.main_gpu) +
                              " among the model's devices; " + choices(chosen));
    }
    params.main_gpu = placement.main_gpu;
    if (!placement.tensor_split.empty()) {
        const size_t room = std::min(chosen.size(), llama_max_devices());
        if (placement.tensor_split.size() > room) {
            throw ValidationError("tensor_split: " + std::to_string(placement.tensor_split.size()) +
                                  " proportions for " + std::to_string(chosen.size()) + " device(s); " + choices(chosen));
        }
        tensor_split.assign(llama_max_devices(), 0.0f);
        std::copy(placement.tensor_split.begin(), placement.tensor_split.end(), tensor_split.begin());
        params.tensor_split = tensor_split.data();
    }
}

bool has_gpu() {
    ensure_backend();
    return !offload_devices().empty();
}

bool rpc_available() { return rpc_registry() != nullptr; }

std::string failed_rpc_server(const std::vector<std::string>& endpoints) {
    using Failures = uint64_t (*)();
    using EndpointFailed = bool (*)(const char*);
    static const Failures failures = [] {
        ggml_backend_reg_t reg = rpc_registry();
        return reg ? reinterpret_cast<Failures>(ggml_backend_reg_get_proc_address(reg, "ggml_backend_rpc_failures"))
                   : nullptr;
    }();
    if (failures == nullptr || failures() == 0) return {};
    static const EndpointFailed endpoint_failed = reinterpret_cast<EndpointFailed>(
        ggml_backend_reg_get_proc_address(rpc_registry(), "ggml_backend_rpc_endpoint_failed"));
    if (endpoint_failed == nullptr) return {};
    for (const std::string& endpoint : endpoints) {
        if (endpoint_failed(endpoint.c_str())) return endpoint;
    }
    return {};
}

void rpc_serve(const std::string& endpoint, const std::vector<std::string>& device_names, size_t n_threads,
               const std::string& cache_dir) {
    using StartServer = void (*)(const char*, const char*, size_t, size_t, ggml_backend_dev_t*);
    auto start_server = rpc_function<StartServer>("ggml_backend_rpc_start_server");
    std::vector<ggml_backend_dev_t> devices;
    if (device_names.empty()) {
        devices = offload_devices();
        if (devices.empty()) {
            ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
            if (cpu != nullptr) devices.push_back(cpu);
        }
    }
    for (const std::string& name : device_names) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
        if (dev == nullptr) {
            std::string known;
            for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
                known += (i > 0 ? ", " : "") + std::string(ggml_backend_dev_name(ggml_backend_dev_get(i)));
            }
            throw ValidationError("device: there is no device named '" + name + "'; the devices are " + known);
        }
        devices.push_back(dev);
    }
    if (devices.empty()) throw LlamaError("no device to serve");
    if (n_threads == 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
    // Returns only when it could not start (it prints why); otherwise it serves until the end.
    start_server(endpoint.c_str(), cache_dir.empty() ? nullptr : cache_dir.c_str(), n_threads, devices.size(),
                 devices.data());
    throw LlamaError("the RPC server at " + endpoint + " stopped (llama.cpp printed why above)");
}

}  // namespace lcn
