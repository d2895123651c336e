// Merging a LoRA adapter into its base model (native/src/merge.cpp). See docs/native.md "Merging".
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

struct ov_merge_params {
    std::string base_path;     // the base model GGUF
    std::string adapter_path;  // a GGUF LoRA adapter (ours: "<w>.lora_a" / "<w>.lora_b", adapter.lora.alpha)
    std::string out_path;      // final file; written as "<out>.partial" then renamed
    float scale = 1.0f;        // user scale; the delta is scale * (alpha / rank) * B·A
    std::string type;          // F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M
    int32_t n_threads = 0;     // 0 = hardware concurrency
    bool check_space = true;   // statvfs pre-check before anything is written
    bool overwrite = false;    // replace an existing out_path
};

struct ov_merge_progress {
    std::string phase;  // "merge" (tensors written to the F16 intermediate) or "quantize"
    int64_t done = 0;
    int64_t total = 0;
};

struct ov_merge_result {
    int64_t n_tensors = 0;    // tensors in the output
    int64_t n_merged = 0;     // tensors that received the adapter's delta
    int64_t n_copied = 0;     // tensors copied byte for byte from the base
    int64_t rank = 0;
    float alpha = 0.0f;
    int64_t bytes = 0;        // size of the final file
    int64_t needed_bytes = 0; // the pre-check's estimate of the peak disk use
    double ms = 0.0;
};

using ov_merge_progress_cb = std::function<void(const ov_merge_progress &)>;

// Runs the whole merge; "" on success, else "E_CODE: message". The cancel flag is polled between
// tensors (and between 64 MiB chunks of a copied tensor); a cancelled or failed merge removes its
// partial files and leaves out_path untouched.
std::string ov_merge(const ov_merge_params & p, const std::atomic<bool> * cancel,
                     const ov_merge_progress_cb & progress, ov_merge_result * res);
