// Overnight LoRA trainer: our own training graph over a llama.cpp-loaded GGUF model.
//
// Why our own graph instead of llama_opt_epoch: the upstream path (see docs/native.md) has five
// defects for LoRA training in this llama.cpp version. Building the forward/backward/AdamW graph
// here, from the model's tensors, fixes them by construction and keeps every invariant visible:
//   1. gradient accumulators are zeroed at the start of every optimizer step (ov_trainer_step
//      and ov_trainer_grad clear the bufs_grad buffers); the AdamW moments live in their own
//      buffers and are never touched by that reset;
//   2. K and V come from the current micro-batch, never from a KV cache, so attn_k/attn_v LoRA
//      pairs receive gradients;
//   3. the graph is sized from the nodes it actually holds (forward + backward + accumulation);
//   4. loss masking: rows whose label is -1 have their logits multiplied by 0 and an all-zero
//      label row, so they contribute exactly 0 to loss and gradients; the loss is normalised per
//      trained token of the whole optimizer step;
//   5. the model is loaded with use_extra_bufts = false, so Q4_0 weights are never repacked into
//      CPU-only layouts that OUT_PROD cannot read.
// Allocation (issue #8 item 1): the forward graph of a bucket and its training graph share tensor
// objects, so every compute tensor is unplaced (data/buffer cleared) and the graph re-planned
// before each scheduler allocation (ov_sched_alloc); no graph ever runs on another's addresses.
// Clipping: the step's averaged gradient is clipped by its global L2 norm over every A and B
// before AdamW (the norm is computed in a ggml graph; the accumulators keep the raw gradient).
// Threading: every function here is blocking and must be called from one thread at a time
// (the addon runs them on a worker thread). cancel() is the only call safe from another thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

struct llama_model;
struct ov_trainer;

// Parameter structs hold no defaults (zero-initialised): the caller sets every field from the
// contract's defaults (contract/runs.ts) and ov_trainer_open / ov_trainer_step validate ranges.
struct ov_open_params {
    std::string model_path;
    std::vector<std::string> targets;  // e.g. attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down
    int32_t  rank       = 0;
    float    alpha      = 0.0f;
    uint64_t seed       = 0;
    int32_t  seq_len    = 0;
    int32_t  n_threads  = 0;           // 0 = hardware threads
    int32_t  n_gpu_layers = 0;
    // Input gradient of mul_mat(W, x) through a frozen weight (see ov_route_backward):
    // 0 = auto (the graph-level route where the weight lives on a non-CPU backend, OUT_PROD on
    // the CPU), 1 = always the graph-level route, 2 = always OUT_PROD (ggml's autodiff as is).
    int32_t  backward_route = 0;
    // The route splits a weight into row blocks whose transient F32 copies (8 bytes per element)
    // stay within this many bytes (0 = never split)
    int64_t  route_chunk_bytes = 0;
    // Memory layout of the step (issue #11; docs/native.md "Memory"):
    // checkpointing: false = one graph per micro-batch (forward + loss + backward, every layer's
    // activations alive at once; fastest when it fits); true = keep each layer's input in a
    // persistent buffer, forward in one graph that frees as it goes, the loss head in chunks,
    // then one backward graph per layer that recomputes that layer from its input.
    bool     checkpointing = false;
    // output rows per loss-head chunk in the checkpointed path (0 = one chunk of the whole
    // bucket); the monolithic path keeps its head in its one graph (its activations are alive anyway)
    int32_t  loss_chunk = 0;
    // windows per graph evaluation (>= 1): a step's windows are evaluated in groups of this many
    int32_t  micro_batch = 0;
};

struct ov_model_info {
    std::string arch;
    std::string desc;
    int64_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0, n_ctx_train = 0;
    int64_t n_lora_params = 0;
    std::vector<std::string> weight_types;  // distinct ggml types of the matmul weights
    std::string backend;                     // e.g. "CPU"
};

// One training/eval window. labels[t] = token to predict after position t, or -1 (not trained).
// segments[t] (optional, empty = one segment): tokens attend only within the same segment id,
// and positions restart at each segment start.
struct ov_window {
    std::vector<int32_t> tokens, labels, segments;
};

struct ov_adamw {
    float lr = 0.0f, beta1 = 0.0f, beta2 = 0.0f, eps = 0.0f, weight_decay = 0.0f;
    float clip_norm = 0.0f;  // > 0: scale the gradient by clip_norm / (norm + 1e-6) when norm > clip_norm
};

struct ov_step_result {
    double  loss      = 0.0;  // mean per trained token over the whole optimizer step
    int64_t n_trained = 0;
    double  ms        = 0.0;
    double  grad_norm = 0.0;  // global L2 norm of the step's averaged gradient (every A and B), before clipping
};

struct ov_lora_info {
    std::string name;  // base tensor name, e.g. blk.0.attn_q.weight
    int64_t d_in = 0, d_out = 0;
};

struct ov_probe_params {
    std::vector<int32_t> prompt;
    int32_t max_tokens  = 0;
    float   temperature = 0.0f;  // 0 = greedy
    uint32_t seed       = 0;
    std::string adapter_path;    // adapter file to apply (written by the caller), empty = base
};

// All functions return "" on success or an error "CODE: message" (CODE in E_*), never abort.
std::string ov_trainer_open(const ov_open_params & p, ov_trainer ** out, ov_model_info * info);
void        ov_trainer_free(ov_trainer * t);
void        ov_trainer_cancel(ov_trainer * t, bool on);
std::string ov_trainer_step(ov_trainer * t, const std::vector<ov_window> & mbs, const ov_adamw & opt, ov_step_result * res);
std::string ov_trainer_grad(ov_trainer * t, const ov_window & w, ov_step_result * res);  // grads only (accumulators), no update
std::string ov_trainer_eval(ov_trainer * t, const std::vector<ov_window> & ws, double * loss_sum, int64_t * n_trained);
std::vector<ov_lora_info> ov_trainer_loras(ov_trainer * t);
// kind: "a", "b", "grad_a", "grad_b", "m_a", "v_a", "m_b", "v_b"
std::string ov_trainer_get_tensor(ov_trainer * t, const std::string & name, const std::string & kind, std::vector<float> * out);
std::string ov_trainer_set_tensor(ov_trainer * t, const std::string & name, const std::string & kind, const std::vector<float> & in);
// Full optimizer state: every A, B and their moments in a fixed order, plus the AdamW step count.
std::string ov_trainer_get_state(ov_trainer * t, std::vector<uint8_t> * out, int64_t * adam_t);
std::string ov_trainer_set_state(ov_trainer * t, const std::vector<uint8_t> & in, int64_t adam_t);
std::string ov_trainer_save_adapter(ov_trainer * t, const std::string & path, const std::vector<std::pair<std::string, std::string>> & kv);
std::string ov_trainer_probe(ov_trainer * t, const ov_probe_params & p, std::vector<int32_t> * out_tokens, std::string * text);
std::string ov_trainer_reference_loss(ov_trainer * t, const ov_window & w, double * loss_sum, int64_t * n_trained);
std::string ov_trainer_tokenize(ov_trainer * t, const std::string & text, bool add_special, std::vector<int32_t> * out);
std::string ov_trainer_detokenize(ov_trainer * t, const std::vector<int32_t> & toks, std::string * out);
void        ov_trainer_device_memory(ov_trainer * t, int64_t * used, int64_t * total);  // -1 when unknown
// Where the training graph runs: nodes per backend, and every op on the CPU while a GPU backend
// is in use, with the reason (grouped by op and reason). Plans the full-length training graph.
struct ov_placement_op { std::string op, reason; int64_t count = 0; };
struct ov_placement {
    std::vector<std::pair<std::string, int64_t>> nodes;  // backend name -> compute nodes of the training graph
    std::vector<ov_placement_op> cpu_ops;
    int64_t n_nodes = 0, n_splits = 0, n_routed = 0;
};
std::string ov_trainer_placement(ov_trainer * t, ov_placement * out);
// The trainer's own buffers per device (bytes): model weights, LoRA (params + accumulators +
// AdamW moments), and the scheduler's compute buffer (the largest graph planned so far).
// checkpoint = the checkpointed path's persistent layer inputs and layer-gradient buffers.
struct ov_memory_entry { std::string device; int64_t weights = 0, lora = 0, compute = 0, checkpoint = 0; };
void        ov_trainer_memory(ov_trainer * t, std::vector<ov_memory_entry> * out);
// Peak dense matmul throughput of the CPU backend, measured with ggml (GFLOP/s).
double      ov_bench_matmul_gflops(int n, int n_threads, int reps, int kind);
