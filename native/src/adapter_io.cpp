// Adapter export: a standard GGUF LoRA as llama.cpp's llama_adapter_lora_init, node-llama-cpp and
// Ollama read it.
//   general.architecture = <base arch>, general.type = "adapter", adapter.type = "lora",
//   adapter.lora.alpha = <float>; tensors "<base tensor>.lora_a" F32 [d_in, r] and
//   "<base tensor>.lora_b" F32 [r, d_out] (ggml order). Extra string keys carry our metadata
//   (overnight.base.fingerprint, overnight.training.config, ...).
// The file is written to the given path directly; atomic replacement (temp + rename) is the
// caller's job (native/ts/binding.ts does it).
#include "ggml.h"
#include "ggml-backend.h"
#include "gguf.h"

#include <string>
#include <utility>
#include <vector>

std::string ov_write_adapter_gguf(const std::string & path, const std::string & arch, float alpha,
        const std::vector<std::pair<std::string, std::string>> & kv,
        const std::vector<std::pair<std::string, const ggml_tensor *>> & tensors) {
    size_t bytes = 0;
    for (auto & t : tensors) bytes += ggml_nbytes(t.second) + 64;
    ggml_init_params ip = { /*.mem_size =*/ bytes + (tensors.size() + 1) * ggml_tensor_overhead(), /*.mem_buffer =*/ nullptr, /*.no_alloc =*/ false };
    ggml_context * ctx = ggml_init(ip);
    if (!ctx) return "E_OOM: cannot allocate memory for the adapter copy";
    gguf_context * g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", arch.c_str());
    gguf_set_val_str(g, "general.type", "adapter");
    gguf_set_val_str(g, "adapter.type", "lora");
    gguf_set_val_f32(g, "adapter.lora.alpha", alpha);
    for (auto & p : kv) gguf_set_val_str(g, p.first.c_str(), p.second.c_str());
    for (auto & t : tensors) {
        const ggml_tensor * src = t.second;
        ggml_tensor * dst = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, src->ne[0], src->ne[1]);
        ggml_set_name(dst, t.first.c_str());
        ggml_backend_tensor_get(src, dst->data, 0, ggml_nbytes(src));
        gguf_add_tensor(g, dst);
    }
    const bool ok = gguf_write_to_file(g, path.c_str(), /*only_meta =*/ false);
    gguf_free(g);
    ggml_free(ctx);
    if (!ok) return "E_IO: cannot write adapter file " + path;
    return "";
}
