// Overnight LoRA trainer. Read trainer.h first for the invariants; this file goes top to bottom:
//   logging and errors -> model checks -> LoRA tensors -> graph (forward, loss, backward,
//   accumulation, AdamW) -> step / eval / grad -> state, adapter, probe, utilities.
#include "trainer.h"

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "gguf.h"
#include "llama.h"

// internal llama.cpp headers: the model's tensors and hyper-parameters (no public accessors exist)
#include "llama-arch.h"
#include "llama-hparams.h"
#include "llama-model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <array>
#include <map>
#include <unordered_map>
#include <mutex>
#include <thread>

std::string ov_write_adapter_gguf(const std::string & path, const std::string & arch, float alpha,
        const std::vector<std::pair<std::string, std::string>> & kv,
        const std::vector<std::pair<std::string, const ggml_tensor *>> & tensors);

// ---------------------------------------------------------------------------------------------
// logging
// ---------------------------------------------------------------------------------------------

static bool ov_verbose() {
    static const bool v = [] { const char * e = getenv("OVERNIGHT_NATIVE_VERBOSE"); return e && *e && *e != '0'; }();
    return v;
}

static void ov_log(const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[overnight native] ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void ov_llama_log(ggml_log_level level, const char * text, void *) {
    if (ov_verbose() || level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

static std::string fmt_err(const char * code, const char * fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return std::string(code) + ": " + buf;
}

// ---------------------------------------------------------------------------------------------
// state
// ---------------------------------------------------------------------------------------------

static const char * k_all_targets[] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };

struct ov_lora {
    std::string name;       // base tensor name
    ggml_tensor * w = nullptr;
    ggml_tensor * a = nullptr, * b = nullptr;        // params   (ctx_param)
    ggml_tensor * ga = nullptr, * gb = nullptr;      // grad accumulators (ctx_grad)
    ggml_tensor * ma = nullptr, * va = nullptr, * mb = nullptr, * vb = nullptr;  // AdamW moments (ctx_moment)
};

// Graph kinds (the cache key's first element). MONO: gf = forward + loss (eval), gb = gf +
// backward + gradient accumulation, for n_win windows and n_out output rows. The checkpointed
// path (issue #11): FWD = every layer's forward, each layer's output copied into its checkpoint
// X[l+1] (forward only, the allocator frees each layer's activations after use); HEAD = one
// chunk of n_out output rows gathered from X[L] -> final norm -> logits -> masked CE (gf), plus
// its backward (gb) adding d loss / d X[L] into the layer-gradient buffer; LAYER = layer l
// recomputed from X[l] with the scalar sum(y * dY) (dY = d loss / d X[l+1], an input buffer), so
// autodiff yields d loss / d X[l] (copied to the other layer-gradient buffer) and the layer's
// LoRA gradients (accumulated as in MONO).
enum ov_graph_kind : int64_t { OV_G_MONO = 0, OV_G_FWD = 1, OV_G_HEAD = 2, OV_G_LAYER = 3 };

struct ov_graph {
    int64_t kind = OV_G_MONO;
    int64_t n_out = 0;                  // output rows of the loss head (0: no head)
    int64_t n_win = 1;                  // windows evaluated together (the micro-batch)
    int64_t layer = -1;                 // OV_G_LAYER: the layer
    int64_t n_routed = 0;               // input gradients rebuilt by ov_route_backward in gb
    size_t need_f = 0, need_b = 0;      // compute bytes gf / gb need alone (CPU plan, logged)
    ggml_context * ctx = nullptr;
    ggml_cgraph * gf = nullptr, * gb = nullptr;
    ggml_tensor * inp_tokens = nullptr, * inp_pos = nullptr, * inp_mask = nullptr, * inp_out_ids = nullptr;
    ggml_tensor * inp_labels = nullptr, * inp_rowmask = nullptr, * inp_loss_scale = nullptr;
    ggml_tensor * loss = nullptr, * loss_grad = nullptr;
};

// the hyper-parameters every graph uses (filled at open from llama_hparams)
struct ov_hparams {
    int64_t n_embd = 0, n_head = 0, n_head_kv = 0, hd = 0, n_layer = 0;
    int n_rot = 0, rope_type = 0, n_ctx_orig = 0;
    float eps = 0.0f, freq_base = 0.0f, freq_scale = 0.0f, attn_factor = 0.0f, beta_fast = 0.0f, beta_slow = 0.0f, kq_scale = 0.0f;
};

struct ov_trainer {
    ov_open_params params;
    llama_model * model = nullptr;
    int64_t T = 0;                      // sequence length of one window (= one micro-batch)
    int64_t n_vocab = 0;
    float lora_scale = 1.0f;            // alpha / rank

    // per layer, per target -> LoRA pair; nullptr where the target is not trained
    std::vector<std::map<std::string, ov_lora *>> layer_loras;
    std::vector<ov_lora> loras;

    ggml_context * ctx_param = nullptr, * ctx_grad = nullptr, * ctx_moment = nullptr;
    // one buffer per device and kind: a pair lives on the device of its layer's weight
    std::vector<ggml_backend_buffer_t> bufs_param, bufs_grad, bufs_moment;
    ggml_tensor * adamw_params = nullptr;
    ggml_tensor * grad_scale = nullptr;  // 1 element: the clipping factor the AdamW graph multiplies in
    // 0, 1, 2, ... (I32, host buffer): the row ids get_rows uses to dequantize a whole weight
    ggml_context * ctx_aux = nullptr;
    ggml_backend_buffer_t buf_aux = nullptr;
    ggml_tensor * iota = nullptr;
    int64_t n_routed = 0;                // input-gradient products rebuilt by ov_route_backward (last graph)
    int64_t adam_t = 0;

    std::vector<ggml_backend_t> backends;
    ggml_backend_t backend_cpu = nullptr;
    ggml_backend_sched_t sched = nullptr;

    // One training graph per output-row bucket (see ov_bucket): only positions with a label go
    // through the vocabulary projection and the loss. gnorm = the sum of squares of every
    // gradient accumulator (-> grad_sumsq), gopt = the AdamW update of every pair.
    // key {kind, n_win, n_out, layer} (see ov_graph_kind)
    std::map<std::array<int64_t, 4>, ov_graph *> graphs;
    size_t graph_size = 0;
    ov_hparams hp;
    int64_t B = 1;                      // windows per graph evaluation (params.micro_batch)
    // checkpointed path: one buffer holding X[0..L] (each layer's input; X[L] = the last
    // layer's output) and the two layer-gradient buffers D[0], D[1], each [n_embd, T*B] F32.
    // ck_x[b] / ck_d[b]: tensors of shape [n_embd, T*b] at the same addresses (graphs for a
    // micro-batch of b < B windows use them; a checkpoint must be a plain tensor to be a param)
    ggml_context * ctx_ckpt = nullptr;
    ggml_backend_buffer_t buf_ckpt = nullptr;
    std::vector<std::vector<ggml_tensor *>> ck_x, ck_d;
    size_t ckpt_slot = 0;               // bytes per checkpoint tensor (aligned)
    ggml_context * ctx_opt = nullptr;
    ggml_cgraph * gopt = nullptr, * gnorm = nullptr;
    ggml_tensor * grad_sumsq = nullptr;
    ggml_cgraph * planned = nullptr;    // the graph the scheduler's allocation plan was made for
    // every graph node's sources as built (see ov_restore_srcs)
    std::unordered_map<ggml_tensor *, std::array<ggml_tensor *, GGML_MAX_SRC>> srcs;

    std::atomic<bool> cancel{false};
    std::atomic<bool> abort_enabled{false};
    bool abort_native = false;          // every backend has an abort callback (else: the eval callback)
    int64_t eval_nodes = 0;             // nodes since the last eval-callback synchronisation

    // host-side staging
    std::vector<float> labels_host, mask_host;
};

static bool ov_abort_cb(void * ud) {
    auto * t = static_cast<ov_trainer *>(ud);
    return t->abort_enabled.load() && t->cancel.load();
}

// Cancel on backends without an abort callback (Vulkan, Metal in this ggml): the scheduler's
// eval callback asks for a synchronisation point every 256 nodes (and at once when cancelled);
// after each one, returning false stops the rest of that split, and every later split stops at
// its first node. ov_run_window then reports E_CANCELLED (the partial results are discarded
// exactly as after a CPU abort: accumulators are zeroed at the next step's start).
static bool ov_eval_cb(ggml_tensor *, bool ask, void * ud) {
    auto * t = static_cast<ov_trainer *>(ud);
    const bool stop = t->abort_enabled.load() && t->cancel.load();
    if (ask) return stop || (++t->eval_nodes % 256) == 0;
    return !stop;
}

// ---------------------------------------------------------------------------------------------
// model checks (before anything reaches ggml, whose asserts abort the process)
// ---------------------------------------------------------------------------------------------

static bool ov_type_trainable(ggml_type t) {
    switch (t) {
        case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
        case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
        case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
            return true;
        default:
            return false;
    }
}

static std::string ov_check_arch_gguf(const std::string & path, std::string * arch_out) {
    FILE * f = fopen(path.c_str(), "rb");
    if (!f) {
        return fmt_err("E_MODEL", "cannot open model file %s: %s", path.c_str(), strerror(errno));
    }
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    if (n != 4 || memcmp(magic, "GGUF", 4) != 0) {
        return fmt_err("E_MODEL", "%s is not a GGUF file (bad magic)", path.c_str());
    }
    gguf_init_params gp = { /*no_alloc =*/ true, /*ctx =*/ nullptr };
    gguf_context * g = gguf_init_from_file(path.c_str(), gp);
    if (!g) {
        return fmt_err("E_MODEL", "%s: cannot parse the GGUF header (truncated or corrupt file)", path.c_str());
    }
    std::string arch;
    int64_t k = gguf_find_key(g, "general.architecture");
    if (k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING) {
        arch = gguf_get_val_str(g, k);
    }
    int64_t n_expert = 0;
    std::string key = arch + ".expert_count";
    int64_t ke = gguf_find_key(g, key.c_str());
    if (ke >= 0 && gguf_get_kv_type(g, ke) == GGUF_TYPE_UINT32) {
        n_expert = gguf_get_val_u32(g, ke);
    }
    gguf_free(g);
    *arch_out = arch;
    if (arch.empty()) {
        return fmt_err("E_ARCH", "%s has no general.architecture key", path.c_str());
    }
    if (arch.find("gemma") == 0) {
        return fmt_err("E_ARCH", "architecture '%s' is not supported: its GEGLU/GELU feed-forward has no backward pass in ggml (GGML_GLU_OP_GEGLU), and its embedding scaling/soft-capping are not built by this trainer; supported: llama (incl. Mistral), qwen2, qwen3", arch.c_str());
    }
    if (n_expert > 0 || arch.find("moe") != std::string::npos || arch == "deepseek2" || arch == "mixtral") {
        return fmt_err("E_ARCH", "architecture '%s' is a mixture-of-experts model: MUL_MAT_ID (expert routing) has no backward pass in ggml; supported: dense llama (incl. Mistral), qwen2, qwen3", arch.c_str());
    }
    if (arch != "llama" && arch != "qwen2" && arch != "qwen3") {
        return fmt_err("E_ARCH", "architecture '%s' is not supported: the trainer builds llama-style graphs only (llama incl. Mistral, qwen2, qwen3)", arch.c_str());
    }
    return "";
}

static ggml_tensor * ov_target_weight(llama_layer & L, const std::string & target) {
    if (target == "attn_q")      return L.wq;
    if (target == "attn_k")      return L.wk;
    if (target == "attn_v")      return L.wv;
    if (target == "attn_output") return L.wo;
    if (target == "ffn_gate")    return L.ffn_gate;
    if (target == "ffn_up")      return L.ffn_up;
    if (target == "ffn_down")    return L.ffn_down;
    return nullptr;
}

// ---------------------------------------------------------------------------------------------
// deterministic RNG for LoRA init (splitmix64; independent of the C++ library)
// ---------------------------------------------------------------------------------------------

static uint64_t splitmix64(uint64_t & s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const std::string & s) {
    uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) { h ^= c; h *= 1099511628211ULL; }
    return h;
}

// ---------------------------------------------------------------------------------------------
// graph
// ---------------------------------------------------------------------------------------------

// y = W x (+ bias) + scale * B (A x)
static ggml_tensor * ov_linear(ggml_context * ctx, ov_trainer * t, ggml_tensor * w, ggml_tensor * bias,
                               ov_lora * lora, ggml_tensor * x) {
    ggml_tensor * y = ggml_mul_mat(ctx, w, x);
    if (lora) {
        ggml_tensor * ax = ggml_mul_mat(ctx, lora->a, x);      // [r, T]
        ggml_tensor * bax = ggml_mul_mat(ctx, lora->b, ax);    // [d_out, T]
        y = ggml_add(ctx, y, ggml_scale(ctx, bax, t->lora_scale));
    }
    if (bias) {
        y = ggml_add(ctx, y, bias);
    }
    return y;
}

static ggml_tensor * ov_norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, float eps) {
    x = ggml_rms_norm(ctx, x, eps);
    return w ? ggml_mul(ctx, x, w) : x;
}

// Output rows are bucketed so that a few graphs cover every micro-batch: n_out = the number of
// trained positions rounded up to a multiple of max(16, T/8) (at most 8 buckets), capped at T.
static int64_t ov_bucket(int64_t T, int64_t n_kept) {
    const int64_t g = std::max<int64_t>(16, (T + 7) / 8);
    return std::min<int64_t>(T, ((std::max<int64_t>(n_kept, 1) + g - 1) / g) * g);
}

// Backend-neutral backward through frozen weights (issue #10). ggml's autodiff writes the input
// gradient of y = mul_mat(W, x) as OUT_PROD(W, transpose(dY)). Only the CPU backend has OUT_PROD
// with a quantized/F16/BF16 first operand, and Vulkan's OUT_PROD also needs a contiguous second
// operand, so on a GPU backend every such node (one per linear layer and per attention product)
// would be scheduled on the CPU, with the weight copied there on every window.
// The route rewrites each such node in place into ops every backend has:
//     dX = mul_mat(cont(transpose(Wf)), dY),   Wf = W if F32, else get_rows(W, 0..rows-1) (F32)
// The dequantized copy Wf and its transpose exist only in the backward graph, right before the
// one product that reads them: the allocator frees them after that node, so at most one weight's
// transient copy is alive at a time (2 x rows x cols x 4 bytes for the largest weight, i.e. the
// output projection). The forward keeps mul_mat(W, x) on the quantized kernel.
// Which nodes: route 1 = all; route 0 (auto) = products whose first operand is a weight in a
// non-host (device) buffer, plus every other transposed-operand OUT_PROD when a GPU backend is
// in use; on the CPU, OUT_PROD (with patch 0002) stays. Equality with OUT_PROD: quant-grad tests.
static bool ov_route_wanted(ov_trainer * t, ggml_tensor * w) {
    if (t->params.backward_route == 1) return true;
    if (t->params.backward_route == 2) return false;
    ggml_tensor * base = w->view_src ? w->view_src : w;
    if (base->buffer) return !ggml_backend_buffer_is_host(base->buffer);
    return t->backends.size() > 1;  // an intermediate tensor: the route whenever a GPU backend runs
}

// Rows of W per block of the route (ov_route_backward): a block's transient copies (the F32
// dequantized rows and their transpose, 8 bytes per element) stay within route_chunk_bytes, so a
// 128k-vocabulary output projection (8·V·E = 4.2 GB for a Llama-3-8B) never exists whole in F32;
// 0 = one block. Only 2-D weights are split (attention's own products are small).
static int64_t ov_route_chunk_rows(const ov_trainer * t, const ggml_tensor * w) {
    const int64_t rows = w->ne[1], cols = w->ne[0];
    if (t->params.route_chunk_bytes <= 0 || !ggml_is_matrix(w)) return rows;
    const int64_t rc = t->params.route_chunk_bytes / (8 * std::max<int64_t>(1, cols));
    return std::max<int64_t>(1, std::min(rows, rc));
}

// Returns the number of input gradients rebuilt; *n_cont counts the weight-gradient OUT_PRODs
// (dW = OUT_PROD(x, dY)) whose operands were made contiguous: Vulkan's OUT_PROD takes only
// contiguous F32 operands, and dY is a permuted view after attention's cont(permute(...)).
static int64_t ov_route_backward(ov_trainer * t, ggml_context * ctx, ggml_cgraph * g, int64_t * n_cont) {
    int64_t n = 0;
    *n_cont = 0;
    const bool gpu = t->params.backward_route == 1 || (t->params.backward_route == 0 && t->backends.size() > 1);
    const int n_nodes = ggml_graph_n_nodes(g);
    for (int i = 0; i < n_nodes; ++i) {
        ggml_tensor * node = ggml_graph_node(g, i);
        if (node->op != GGML_OP_OUT_PROD) continue;
        ggml_tensor * w = node->src[0];
        ggml_tensor * gt = node->src[1];
        if (!gt || gt->op != GGML_OP_TRANSPOSE || !gt->src[0]) {   // a weight gradient, not an input gradient
            if (!gpu) continue;
            for (int k = 0; k < 2; ++k) {
                if (node->src[k] && !ggml_is_contiguous(node->src[k])) {
                    node->src[k] = ggml_cont(ctx, node->src[k]);
                    ++*n_cont;
                }
            }
            continue;
        }
        if (!ov_route_wanted(t, w)) continue;
        if (w->type != GGML_TYPE_F32 && (!ggml_is_matrix(w) || !t->iota || w->ne[1] > t->iota->ne[0])) continue;  // model weights are 2-D
        ggml_tensor * dy = gt->src[0];                                               // [rows, T, ...]
        const int64_t rc = ov_route_chunk_rows(t, w);
        if (rc >= w->ne[1]) {
            ggml_tensor * wf = w->type == GGML_TYPE_F32 ? w
                : ggml_get_rows(ctx, w, ggml_view_1d(ctx, t->iota, w->ne[1], 0));     // [cols, rows] F32
            ggml_tensor * wt = ggml_cont(ctx, ggml_transpose(ctx, wf));              // [rows, cols]
            // node := mul_mat(wt, dY): same shape [cols, T, ...] as OUT_PROD(W, dY^T), same broadcast
            node->op = GGML_OP_MUL_MAT;
            memset(node->op_params, 0, sizeof(node->op_params));
            node->src[0] = wt;
            node->src[1] = dy;
        } else {
            // dX = sum over row blocks j of W_j^T dY_j: one block's dequantized copy at a time
            ggml_tensor * acc = nullptr;
            for (int64_t r0 = 0; r0 < w->ne[1]; r0 += rc) {
                const int64_t nr = std::min(rc, w->ne[1] - r0);
                ggml_tensor * wv = ggml_view_2d(ctx, w, w->ne[0], nr, w->nb[1], (size_t) r0 * w->nb[1]);
                ggml_tensor * wf = w->type == GGML_TYPE_F32 ? wv : ggml_get_rows(ctx, wv, ggml_view_1d(ctx, t->iota, nr, 0));
                ggml_tensor * wt = ggml_cont(ctx, ggml_transpose(ctx, wf));                           // [nr, cols]
                ggml_tensor * dyj = ggml_cont(ctx, ggml_view_4d(ctx, dy, nr, dy->ne[1], dy->ne[2], dy->ne[3],
                                                                dy->nb[1], dy->nb[2], dy->nb[3], (size_t) r0 * dy->nb[0]));
                ggml_tensor * part = ggml_mul_mat(ctx, wt, dyj);                                      // [cols, T, ...]
                if (r0 + nr < w->ne[1]) {
                    acc = acc ? ggml_add(ctx, acc, part) : part;
                    continue;
                }
                // the last block: node := acc + part (same shape as OUT_PROD(W, dY^T))
                node->op = GGML_OP_ADD;
                memset(node->op_params, 0, sizeof(node->op_params));
                node->src[0] = acc;
                node->src[1] = part;
            }
        }
        ++n;
    }
    return n;
}

// ggml_backend_sched_split_graph rewrites node->src[j] of the graph it is given to point at its
// own copies of cross-backend inputs (tensors in the scheduler's context, rebuilt on every
// split). llama.cpp rebuilds its graphs for every evaluation; this trainer keeps its graphs, so
// after a graph ran with a GPU split, its nodes would read the stale copy of the previous run
// (measured on Vulkan: the loss was exactly 0, the first GPU op read a never-filled copy).
// Each node's sources are recorded when the graph is built and restored before every
// allocation (ov_sched_alloc). On the CPU backend alone no copies exist and nothing changes.
static void ov_snapshot_srcs(ov_trainer * t, ggml_cgraph * g) {
    for (int i = 0; i < ggml_graph_n_nodes(g); ++i) {
        ggml_tensor * n = ggml_graph_node(g, i);
        if (t->srcs.count(n)) continue;
        std::array<ggml_tensor *, GGML_MAX_SRC> a;
        for (int j = 0; j < GGML_MAX_SRC; ++j) a[j] = n->src[j];
        t->srcs.emplace(n, a);
    }
}

static void ov_restore_srcs(ov_trainer * t, ggml_cgraph * g) {
    for (int i = 0; i < ggml_graph_n_nodes(g); ++i) {
        ggml_tensor * n = ggml_graph_node(g, i);
        auto it = t->srcs.find(n);
        if (it == t->srcs.end()) continue;
        for (int j = 0; j < GGML_MAX_SRC; ++j) n->src[j] = it->second[j];
    }
}

static void ov_unplace(ggml_context * ctx);

// Graph metadata context. Invariant (defect 3): the graph budget covers every tensor this context
// can hold, so ggml_graph_add_node can never overflow; ggml_new_tensor would fail first. A llama
// layer needs ~200 tensors for forward + backward + accumulation; 768 per layer leaves a wide
// margin. The graph size covers the whole context plus the model's leafs.
static ggml_tensor * ov_output_weight(llama_model & M);

static size_t ov_graph_budget(ov_trainer * t, int64_t n_layers, size_t * n_tensors_cap) {
    // the route's row blocks (ov_route_backward): ~10 tensors per block of the output projection
    // and of each layer's weights (layers share their shapes)
    auto blocks = [&](const ggml_tensor * w) -> size_t {
        return w ? (size_t) ((w->ne[1] + ov_route_chunk_rows(t, w) - 1) / ov_route_chunk_rows(t, w)) : 0;
    };
    size_t route = blocks(ov_output_weight(*t->model));
    if (t->model->hparams.n_layer() > 0) {
        for (const char * tg : k_all_targets) route += (size_t) n_layers * blocks(ov_target_weight(t->model->layers[0], tg));
    }
    *n_tensors_cap = 2048 + (size_t) n_layers * 768 + t->loras.size() * 16 + 10 * route;
    return *n_tensors_cap + (size_t) t->model->n_tensors() + t->loras.size() * 8 + 64;
}

static std::string ov_new_graph(ov_trainer * t, int64_t kind, int64_t n_win, int64_t n_out, int64_t layer, int64_t n_layers, ov_graph ** out, size_t * graph_size) {
    size_t cap = 0;
    *graph_size = ov_graph_budget(t, n_layers, &cap);
    const size_t mem = cap * ggml_tensor_overhead() + 3 * ggml_graph_overhead_custom(*graph_size, true);
    ggml_init_params ip = { /*.mem_size =*/ mem, /*.mem_buffer =*/ nullptr, /*.no_alloc =*/ true };
    ggml_context * ctx = ggml_init(ip);
    if (!ctx) return fmt_err("E_OOM", "cannot allocate %zu bytes of graph metadata", mem);
    auto * G = new ov_graph();
    G->kind = kind;
    G->n_win = n_win;
    G->n_out = n_out;
    G->layer = layer;
    G->ctx = ctx;
    *out = G;
    return "";
}

static ggml_tensor * ov_input(ggml_tensor * x, const char * name) {
    ggml_set_input(x);
    ggml_set_name(x, name);
    return x;
}

// positions [T*b] and the attention mask [T, T, 1, b] (one causal/segment mask per window)
static void ov_attn_inputs(ov_trainer * t, ov_graph * G) {
    const int64_t T = t->T, b = G->n_win;
    G->inp_pos  = ov_input(ggml_new_tensor_1d(G->ctx, GGML_TYPE_I32, T * b), "inp_pos");
    G->inp_mask = ov_input(ggml_new_tensor_4d(G->ctx, GGML_TYPE_F32, T, T, 1, b), "inp_kq_mask");
}

// One transformer layer over b windows: x [n_embd, T*b] -> [n_embd, T*b]. Attention runs per
// window in 4-D tensors [.., T, heads, b]; each window has its own mask slice (causal, inside
// the segment). The softmax output feeds the next product directly: a reshape view of it broke
// the backward pass in this ggml (gradients wrong while the loss was right; the allocator reused
// the softmax output in place under a live view), so no view is taken of it.
//
// dy (the checkpointed layer backward, ov_build_layer): returns the scalar loss_l = <y, dY> whose
// gradients are the layer's, built without y's last product. y = x' + down(h) (+ bias), so
//     loss_l = <x', dY> + <h, W_down^T dY> + <s B A h, dY> (+ a constant)
// where W_down^T dY = OUT_PROD(W_down, dY^T) is a constant (neither W_down nor dY is trained):
// the backward needs exactly that product for d loss / d h anyway, and the recompute skips the
// down projection's forward (~22% of a llama layer's matmul work).
static ggml_tensor * ov_layer(ggml_context * ctx, ov_trainer * t, int64_t il, ggml_tensor * x, ggml_tensor * pos, ggml_tensor * mask, int64_t b,
                              ggml_tensor * dy = nullptr) {
    llama_model & M = *t->model;
    const ov_hparams & h = t->hp;
    const int64_t T = t->T, N = T * b;
    llama_layer & L = M.layers[il];
    auto & LL = t->layer_loras[il];
    auto lora_of = [&](const char * target) -> ov_lora * {
        auto it = LL.find(target);
        return it == LL.end() ? nullptr : it->second;
    };

    ggml_tensor * cur = ov_norm(ctx, x, L.attn_norm, h.eps);
    ggml_tensor * q = ov_linear(ctx, t, L.wq, L.wq_b, lora_of("attn_q"), cur);
    ggml_tensor * k = ov_linear(ctx, t, L.wk, L.wk_b, lora_of("attn_k"), cur);
    ggml_tensor * v = ov_linear(ctx, t, L.wv, L.wv_b, lora_of("attn_v"), cur);
    q = ggml_reshape_3d(ctx, q, h.hd, h.n_head, N);
    k = ggml_reshape_3d(ctx, k, h.hd, h.n_head_kv, N);
    v = ggml_reshape_3d(ctx, v, h.hd, h.n_head_kv, N);
    if (L.attn_q_norm) q = ov_norm(ctx, q, L.attn_q_norm, h.eps);   // qwen3
    if (L.attn_k_norm) k = ov_norm(ctx, k, L.attn_k_norm, h.eps);
    q = ggml_rope_ext(ctx, q, pos, L.rope_freqs, h.n_rot, h.rope_type, h.n_ctx_orig, h.freq_base, h.freq_scale,
                      /*ext_factor =*/ 0.0f, h.attn_factor, h.beta_fast, h.beta_slow);
    k = ggml_rope_ext(ctx, k, pos, L.rope_freqs, h.n_rot, h.rope_type, h.n_ctx_orig, h.freq_base, h.freq_scale,
                      0.0f, h.attn_factor, h.beta_fast, h.beta_slow);

    // Invariant (defect 2): K and V are this micro-batch's own tensors (no KV cache leaf),
    // so gradients reach attn_k / attn_v. The topology is identical for every micro-batch.
    ggml_tensor * Q = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, q, h.hd, h.n_head, T, b), 0, 2, 1, 3));      // [hd, T, n_head, b]
    ggml_tensor * K = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, k, h.hd, h.n_head_kv, T, b), 0, 2, 1, 3));   // [hd, T, n_head_kv, b]
    ggml_tensor * VT = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, v, h.hd, h.n_head_kv, T, b), 1, 2, 0, 3));  // [T, hd, n_head_kv, b]
    const int64_t r = h.n_head / h.n_head_kv;
    if (r > 1 && b > 1) {
        // GQA over several windows: ggml's mul_mat backward sums a broadcast only within dim 2
        // when dim 3 is 1, so K and V are expanded to n_head heads here, head i reading kv head
        // i / r as mul_mat's broadcast does: [x, 1, kv*b] tiled r times along dim 1 is
        // [x, r, kv*b], i.e. [.., r * kv, b] (repeat's backward sums the r copies)
        auto expand = [&](ggml_tensor * a, int64_t n0, int64_t n1) {
            ggml_tensor * a3 = ggml_reshape_4d(ctx, a, n0 * n1, 1, h.n_head_kv * b, 1);
            ggml_tensor * rep = ggml_repeat(ctx, a3, ggml_new_tensor_4d(ctx, GGML_TYPE_F32, n0 * n1, r, h.n_head_kv * b, 1));
            return ggml_reshape_4d(ctx, rep, n0, n1, h.n_head, b);
        };
        K = expand(K, h.hd, T);
        VT = expand(VT, T, h.hd);
    }
    // one window per dim-3 slice: the softmax takes the mask [T, T, 1, b] broadcast over heads
    ggml_tensor * kq = ggml_mul_mat(ctx, K, Q);                                                   // [T_k, T_q, n_head, b]
    kq = ggml_soft_max_ext(ctx, kq, mask, h.kq_scale, 0.0f);
    ggml_tensor * kqv = ggml_mul_mat(ctx, VT, kq);                                                // [hd, T_q, n_head, b]
    ggml_tensor * o = ggml_cont(ctx, ggml_permute(ctx, kqv, 0, 2, 1, 3));                        // [hd, n_head, T, b]
    o = ggml_reshape_2d(ctx, o, h.hd * h.n_head, N);
    o = ov_linear(ctx, t, L.wo, L.wo_b, lora_of("attn_output"), o);
    x = ggml_add(ctx, x, o);

    cur = ov_norm(ctx, x, L.ffn_norm, h.eps);
    ggml_tensor * g = ov_linear(ctx, t, L.ffn_gate, L.ffn_gate_b, lora_of("ffn_gate"), cur);
    ggml_tensor * u = ov_linear(ctx, t, L.ffn_up, L.ffn_up_b, lora_of("ffn_up"), cur);
    ggml_tensor * hh = ggml_swiglu_split(ctx, g, u);
    if (dy) {
        ggml_tensor * gh = ggml_out_prod(ctx, L.ffn_down, ggml_transpose(ctx, dy));   // [n_ff, N] = W_down^T dY
        ggml_tensor * l = ggml_add(ctx, ggml_sum(ctx, ggml_mul(ctx, x, dy)), ggml_sum(ctx, ggml_mul(ctx, hh, gh)));
        if (ov_lora * ld = lora_of("ffn_down")) {
            ggml_tensor * bax = ggml_mul_mat(ctx, ld->b, ggml_mul_mat(ctx, ld->a, hh));
            l = ggml_add(ctx, l, ggml_sum(ctx, ggml_mul(ctx, ggml_scale(ctx, bax, t->lora_scale), dy)));
        }
        return l;
    }
    ggml_tensor * d = ov_linear(ctx, t, L.ffn_down, L.ffn_down_b, lora_of("ffn_down"), hh);
    return ggml_add(ctx, x, d);
}

// The loss head over G->n_out rows x [n_embd, n_out]: final norm, vocabulary projection, masked
// cross-entropy. Invariant (defect 4): masked rows have logits * 0 and an all-zero label row:
// their loss term is exactly 0 and the gradient through the multiply is exactly 0. The value is
// sum(kept CE) / n_out * loss_scale, with loss_scale = n_out / N_norm set per evaluation.
static void ov_head(ggml_context * ctx, ov_trainer * t, ov_graph * G, ggml_tensor * x) {
    llama_model & M = *t->model;
    const int64_t n_out = G->n_out;
    G->inp_labels  = ov_input(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, t->n_vocab, n_out), "inp_labels");
    G->inp_rowmask = ov_input(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, n_out), "inp_row_mask");
    G->inp_loss_scale = ov_input(ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1), "inp_loss_scale");
    x = ov_norm(ctx, x, M.output_norm, t->hp.eps);
    ggml_tensor * logits = ggml_mul_mat(ctx, M.output ? M.output : M.tok_embd, x);   // [n_vocab, n_out]
    if (M.output_b) logits = ggml_add(ctx, logits, M.output_b);
    ggml_tensor * masked = ggml_mul(ctx, logits, G->inp_rowmask);
    ggml_tensor * ce = ggml_cross_entropy_loss(ctx, masked, G->inp_labels);  // sum(kept CE) / n_out
    G->loss = ggml_mul(ctx, ce, G->inp_loss_scale);                       // * n_out / N_norm
    ggml_set_name(G->loss, "loss");
    ggml_set_output(G->loss);
    ggml_set_loss(G->loss);
}

// gb = dup(gf) + autodiff (+ the backward route), then: every pair in `loras` accumulates its
// gradient into ga/gb; when x_param is set, its gradient is added to (x_add) or copied into x_dst.
static std::string ov_build_backward(ov_trainer * t, ov_graph * G, size_t graph_size, const std::vector<ov_lora *> & loras,
                                     ggml_tensor * x_param, ggml_tensor * x_dst, bool x_add) {
    ggml_context * ctx = G->ctx;
    ggml_cgraph * gad = ggml_graph_dup(ctx, G->gf, /*force_grads =*/ true);
    ggml_build_backward_expand(ctx, gad, /*grad_accs =*/ nullptr);
    G->loss_grad = ggml_graph_get_grad_acc(gad, G->loss);
    if (!G->loss_grad) return fmt_err("E_INTERNAL", "backward graph has no loss gradient");
    ggml_set_input(G->loss_grad);
    std::vector<std::pair<ggml_tensor *, ggml_tensor *>> grads;
    for (ov_lora * l : loras) {
        ggml_tensor * da = ggml_graph_get_grad(gad, l->a);
        ggml_tensor * db = ggml_graph_get_grad(gad, l->b);
        if (!da || !db) return fmt_err("E_INTERNAL", "no gradient reaches %s", l->name.c_str());
        grads.emplace_back(da, db);
    }
    ggml_tensor * dx = nullptr;
    if (x_param) {
        dx = ggml_graph_get_grad(gad, x_param);
        if (!dx) return fmt_err("E_INTERNAL", "no gradient reaches the checkpoint %s", x_param->name);
    }
    int64_t n_cont = 0;
    G->n_routed = ov_route_backward(t, ctx, gad, &n_cont);
    t->n_routed = G->n_routed;
    if (G->n_routed > 0 || n_cont > 0) {
        // the rewritten nodes have new sources: re-expand in autodiff's order, so each new
        // get_rows/transpose lands right before the one product that reads it
        G->gb = ggml_new_graph_custom(ctx, graph_size, /*grads =*/ false);
        for (int i = 0; i < ggml_graph_n_nodes(gad); ++i) ggml_build_forward_expand(G->gb, ggml_graph_node(gad, i));
    } else {
        G->gb = gad;
    }
    for (size_t i = 0; i < loras.size(); ++i) {
        ggml_build_forward_expand(G->gb, ggml_add_inplace(ctx, loras[i]->ga, grads[i].first));
        ggml_build_forward_expand(G->gb, ggml_add_inplace(ctx, loras[i]->gb, grads[i].second));
    }
    if (dx) ggml_build_forward_expand(G->gb, x_add ? ggml_add_inplace(ctx, x_dst, dx) : ggml_cpy(ctx, dx, x_dst));
    return "";
}

static std::vector<ov_lora *> ov_all_loras(ov_trainer * t) {
    std::vector<ov_lora *> r;
    for (auto & l : t->loras) r.push_back(&l);
    return r;
}

// MONO: the whole model for n_win windows and n_out output rows, forward + loss + backward.
static std::string ov_build_mono(ov_trainer * t, ov_graph * G, size_t graph_size) {
    llama_model & M = *t->model;
    ggml_context * ctx = G->ctx;
    const int64_t N = t->T * G->n_win;
    G->inp_tokens = ov_input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, N), "inp_tokens");
    ov_attn_inputs(t, G);
    G->inp_out_ids = ov_input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, G->n_out), "inp_out_ids");
    ggml_tensor * x = ggml_get_rows(ctx, M.tok_embd, G->inp_tokens);     // [n_embd, T*b]
    for (int64_t il = 0; il < t->hp.n_layer; ++il) x = ov_layer(ctx, t, il, x, G->inp_pos, G->inp_mask, G->n_win);
    // only the trained positions (padded to the bucket) reach the vocabulary projection
    if (G->n_out < N) x = ggml_get_rows(ctx, x, G->inp_out_ids);          // [n_embd, n_out]
    ov_head(ctx, t, G, x);
    G->gf = ggml_new_graph_custom(ctx, graph_size, /*grads =*/ true);
    ggml_build_forward_expand(G->gf, G->loss);
    return ov_build_backward(t, G, graph_size, ov_all_loras(t), nullptr, nullptr, false);
}

// The checkpoint tensors for micro-batches of b windows (created on first use, aliasing the
// B-window buffer). X[1..L] are params (autodiff gives their gradients); X[0] is not (the
// embedding rows need none).
static void ov_ckpt_tensors(ov_trainer * t, int64_t b) {
    if (!t->ck_x[b].empty()) return;
    const int64_t E = t->hp.n_embd, L = t->hp.n_layer;
    const size_t slot = t->ckpt_slot;
    char * base = (char *) ggml_backend_buffer_get_base(t->buf_ckpt);
    for (int64_t i = 0; i < L + 3; ++i) {
        ggml_tensor * x = ggml_new_tensor_2d(t->ctx_ckpt, GGML_TYPE_F32, E, t->T * b);
        if (i <= L) ggml_format_name(x, "ckpt_x%lld_b%lld", (long long) i, (long long) b);
        else ggml_format_name(x, "ckpt_d%lld_b%lld", (long long) (i - L - 1), (long long) b);
        ggml_backend_tensor_alloc(t->buf_ckpt, x, base + (size_t) i * slot);
        if (i >= 1 && i <= L) ggml_set_param(x);
        (i <= L ? t->ck_x[b] : t->ck_d[b]).push_back(x);
    }
}

// the layer-gradient buffer that holds d loss / d X[l] (l >= 1)
static ggml_tensor * ov_ckpt_d(ov_trainer * t, int64_t b, int64_t l) { return t->ck_d[b][(size_t) (l % 2)]; }

static std::string ov_build_fwd(ov_trainer * t, ov_graph * G, size_t graph_size) {
    llama_model & M = *t->model;
    ggml_context * ctx = G->ctx;
    const int64_t b = G->n_win, N = t->T * b;
    G->inp_tokens = ov_input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, N), "inp_tokens");
    ov_attn_inputs(t, G);
    G->gf = ggml_new_graph_custom(ctx, graph_size, /*grads =*/ false);
    ggml_tensor * x = ggml_get_rows(ctx, M.tok_embd, G->inp_tokens);
    ggml_build_forward_expand(G->gf, ggml_cpy(ctx, x, t->ck_x[b][0]));
    for (int64_t il = 0; il < t->hp.n_layer; ++il) {
        x = ov_layer(ctx, t, il, x, G->inp_pos, G->inp_mask, b);
        ggml_build_forward_expand(G->gf, ggml_cpy(ctx, x, t->ck_x[b][(size_t) il + 1]));
    }
    return "";
}

static std::string ov_build_head(ov_trainer * t, ov_graph * G, size_t graph_size) {
    ggml_context * ctx = G->ctx;
    const int64_t b = G->n_win, L = t->hp.n_layer;
    ggml_tensor * xl = t->ck_x[b][(size_t) L];
    G->inp_out_ids = ov_input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, G->n_out), "inp_out_ids");
    ov_head(ctx, t, G, ggml_get_rows(ctx, xl, G->inp_out_ids));
    G->gf = ggml_new_graph_custom(ctx, graph_size, /*grads =*/ true);
    ggml_build_forward_expand(G->gf, G->loss);
    return ov_build_backward(t, G, graph_size, {}, xl, ov_ckpt_d(t, b, L), /*x_add =*/ true);
}

static std::string ov_build_layer(ov_trainer * t, ov_graph * G, size_t graph_size) {
    ggml_context * ctx = G->ctx;
    const int64_t b = G->n_win, il = G->layer;
    ov_attn_inputs(t, G);
    ggml_tensor * x = t->ck_x[b][(size_t) il];
    G->loss = ov_layer(ctx, t, il, x, G->inp_pos, G->inp_mask, b, ov_ckpt_d(t, b, il + 1));   // d loss_l / d y = dY
    ggml_set_name(G->loss, "layer_loss");
    ggml_set_output(G->loss);
    ggml_set_loss(G->loss);
    G->gf = ggml_new_graph_custom(ctx, graph_size, /*grads =*/ true);
    ggml_build_forward_expand(G->gf, G->loss);
    std::vector<ov_lora *> loras;
    for (auto & kv : t->layer_loras[(size_t) il]) loras.push_back(kv.second);
    std::sort(loras.begin(), loras.end());   // t->loras order, stable across builds
    return ov_build_backward(t, G, graph_size, loras, il > 0 ? x : nullptr, il > 0 ? ov_ckpt_d(t, b, il) : nullptr, false);
}

static void ov_graph_free(ov_graph * G) {
    if (!G) return;
    if (G->ctx) ggml_free(G->ctx);
    delete G;
}

static std::string ov_get_graph(ov_trainer * t, int64_t kind, int64_t n_win, int64_t n_out, int64_t layer, ov_graph ** out) {
    const std::array<int64_t, 4> key = { kind, n_win, n_out, layer };
    auto it = t->graphs.find(key);
    if (it != t->graphs.end()) { *out = it->second; return ""; }
    if (kind != OV_G_MONO) ov_ckpt_tensors(t, n_win);
    const int64_t n_layers = kind == OV_G_MONO || kind == OV_G_FWD ? t->hp.n_layer : kind == OV_G_LAYER ? 1 : 0;
    ov_graph * G = nullptr;
    size_t graph_size = 0;
    std::string e = ov_new_graph(t, kind, n_win, n_out, layer, n_layers, &G, &graph_size);
    if (e.empty()) {
        switch (kind) {
            case OV_G_MONO:  e = ov_build_mono(t, G, graph_size); break;
            case OV_G_FWD:   e = ov_build_fwd(t, G, graph_size); break;
            case OV_G_HEAD:  e = ov_build_head(t, G, graph_size); break;
            default:         e = ov_build_layer(t, G, graph_size); break;
        }
    }
    if (!e.empty()) { ov_graph_free(G); return e; }
    ov_snapshot_srcs(t, G->gf);
    if (G->gb) ov_snapshot_srcs(t, G->gb);
    // what each graph needs alone in the compute buffer (a planning pass with the CPU buffer
    // type; the scheduler's buffer is the largest of these over the graphs it ran): logged, so
    // the memory formula in docs/native.md can be checked against the allocator per graph
    for (int k = 0; k < 2; ++k) {
        ggml_cgraph * g = k == 0 ? G->gf : G->gb;
        if (!g) continue;
        ov_unplace(G->ctx);
        ggml_gallocr_t ga = ggml_gallocr_new(ggml_backend_cpu_buffer_type());
        if (ga && ggml_gallocr_reserve(ga, g)) (k == 0 ? G->need_f : G->need_b) = ggml_gallocr_get_buffer_size(ga, 0);
        if (ga) ggml_gallocr_free(ga);
        ov_unplace(G->ctx);
        ov_restore_srcs(t, g);
    }
    static const char * names[] = { "training graph", "checkpointed forward", "loss head", "layer backward" };
    if (kind != OV_G_LAYER || layer == t->hp.n_layer - 1) ov_log("%s (%lld window(s), %lld output rows, layer %lld): %d forward nodes, %d forward+backward nodes, budget %zu (defect 3: sized from the graph, not the inference budget); %lld input gradients through the dequantize+mul_mat route; compute %.2f MiB forward, %.2f MiB forward+backward",
           names[kind], (long long) n_win, (long long) n_out, (long long) layer, ggml_graph_n_nodes(G->gf), G->gb ? ggml_graph_n_nodes(G->gb) : 0,
           graph_size, (long long) G->n_routed, G->need_f / 1048576.0, G->need_b / 1048576.0);
    t->graphs[key] = G;
    *out = G;
    return "";
}

// The rows of one loss-head evaluation: the checkpointed head takes min(lossChunk, bucket) rows
// per chunk (0 = the whole bucket); the monolithic graph takes the bucket.
static int64_t ov_head_rows(ov_trainer * t, int64_t n_win, int64_t n_kept) {
    const int64_t bucket = ov_bucket(t->T * n_win, n_kept);
    return t->params.loss_chunk > 0 ? std::min<int64_t>(t->params.loss_chunk, bucket) : bucket;
}

// Checkpoint buffer (checkpointing only): X[0..L], D[0], D[1], each [n_embd, T*B] F32, on the
// first backend's device (the GPU when one is in use, where the layers run).
static std::string ov_alloc_ckpt(ov_trainer * t) {
    const int64_t L = t->hp.n_layer;
    ggml_init_params ip = { (size_t) (L + 3) * (size_t) (t->B + 1) * ggml_tensor_overhead() + 1024, nullptr, true };
    t->ctx_ckpt = ggml_init(ip);
    if (!t->ctx_ckpt) return fmt_err("E_OOM", "cannot allocate the checkpoint metadata");
    ggml_backend_buffer_type_t bt = ggml_backend_get_default_buffer_type(t->backends.front());
    const size_t slot = GGML_PAD((size_t) t->hp.n_embd * t->T * t->B * sizeof(float), ggml_backend_buft_get_alignment(bt));
    t->ckpt_slot = slot;
    t->buf_ckpt = ggml_backend_buft_alloc_buffer(bt, slot * (size_t) (L + 3));
    if (!t->buf_ckpt) {
        return fmt_err("E_OOM", "cannot allocate %.1f MiB for the activation checkpoints", (double) slot * (L + 3) / 1048576.0);
    }
    ggml_backend_buffer_clear(t->buf_ckpt, 0);
    t->ck_x.assign((size_t) t->B + 1, {});
    t->ck_d.assign((size_t) t->B + 1, {});
    return "";
}

// the graphs built at open; the scheduler is sized for the whole model and reserved with the
// largest graph of the chosen path; the AdamW graph is built once
static std::string ov_build_graphs(ov_trainer * t) {
    size_t cap = 0;
    t->graph_size = ov_graph_budget(t, t->hp.n_layer, &cap);
    std::vector<ov_graph *> reserve;
    if (t->params.checkpointing) {
        std::string e = ov_alloc_ckpt(t);
        if (!e.empty()) return e;
        ov_graph * G = nullptr;
        e = ov_get_graph(t, OV_G_FWD, t->B, 0, -1, &G);
        if (!e.empty()) return e;
        reserve.push_back(G);
        e = ov_get_graph(t, OV_G_HEAD, t->B, ov_head_rows(t, t->B, t->T * t->B), -1, &G);
        if (!e.empty()) return e;
        reserve.push_back(G);
        e = ov_get_graph(t, OV_G_LAYER, t->B, 0, t->hp.n_layer - 1, &G);
        if (!e.empty()) return e;
        reserve.push_back(G);
    } else {
        ov_graph * G = nullptr;
        std::string e = ov_get_graph(t, OV_G_MONO, t->B, t->T * t->B, -1, &G);
        if (!e.empty()) return e;
        reserve.push_back(G);
    }

    // per pair: gnorm 2 x (sqr, sum, add), gopt 2 x (mul, adamw); leafs: a, b, grads, moments
    const size_t n_opt_graph = t->loras.size() * 16 + 64;
    ggml_init_params ip = { (t->loras.size() * 12 + 16) * ggml_tensor_overhead() + 2 * ggml_graph_overhead_custom(n_opt_graph, false), nullptr, true };
    t->ctx_opt = ggml_init(ip);
    ggml_context * c = t->ctx_opt;

    // global L2 norm of the step's gradient: sum of squares over every A and B accumulator (on
    // the backend, like the rest; the host only reads the scalar and derives the clip factor)
    t->gnorm = ggml_new_graph_custom(c, n_opt_graph, false);
    for (auto & l : t->loras) {
        for (ggml_tensor * g : { l.ga, l.gb }) {
            ggml_tensor * s = ggml_sum(c, ggml_sqr(c, g));
            t->grad_sumsq = t->grad_sumsq ? ggml_add(c, t->grad_sumsq, s) : s;
        }
    }
    ggml_set_name(t->grad_sumsq, "grad_sumsq");
    ggml_set_output(t->grad_sumsq);
    ggml_build_forward_expand(t->gnorm, t->grad_sumsq);

    // AdamW sees grad * grad_scale (1 unless clipped); the accumulators keep the raw gradient
    t->gopt = ggml_new_graph_custom(c, n_opt_graph, false);
    for (auto & l : t->loras) {
        ggml_build_forward_expand(t->gopt, ggml_opt_step_adamw(c, l.a, ggml_mul(c, l.ga, t->grad_scale), l.ma, l.va, t->adamw_params));
        ggml_build_forward_expand(t->gopt, ggml_opt_step_adamw(c, l.b, ggml_mul(c, l.gb, t->grad_scale), l.mb, l.vb, t->adamw_params));
    }

    // as llama.cpp does: with a GPU, the CPU backend's compute buffer is the GPU's pinned host
    // buffer type (fast uploads; ggml-vulkan only copies asynchronously from pinned memory)
    std::vector<ggml_backend_buffer_type_t> bufts;
    for (auto * be : t->backends) bufts.push_back(ggml_backend_get_default_buffer_type(be));
    for (auto * be : t->backends) {
        ggml_backend_dev_t dev = ggml_backend_get_device(be);
        if (be == t->backend_cpu || !dev) continue;
        ggml_backend_buffer_type_t host = ggml_backend_dev_host_buffer_type(dev);
        if (host) { bufts.back() = host; break; }
    }
    ov_snapshot_srcs(t, t->gnorm);
    ov_snapshot_srcs(t, t->gopt);
    t->sched = ggml_backend_sched_new(t->backends.data(), bufts.data(), (int) t->backends.size(), t->graph_size, false, true);
    if (!t->abort_native) ggml_backend_sched_set_eval_callback(t->sched, ov_eval_cb, t);
    for (ov_graph * G : reserve) {
        ggml_cgraph * g = G->gb ? G->gb : G->gf;
        ov_unplace(G->ctx);
        ov_restore_srcs(t, g);
        if (!ggml_backend_sched_reserve(t->sched, g)) {
            return fmt_err("E_OOM", "cannot reserve compute buffers for sequence length %lld x %lld window(s) (try a shorter sequence, fewer windows per micro-batch or checkpointing)", (long long) t->T, (long long) t->B);
        }
        ov_restore_srcs(t, g);
        t->planned = g;
    }
    return "";
}

// ---------------------------------------------------------------------------------------------
// open / free
// ---------------------------------------------------------------------------------------------

static std::once_flag g_backend_once;

// The options that need no model: rank, alpha, seqLen, the target names.
static std::string ov_check_params(const ov_open_params & p) {
    if (p.rank <= 0) return fmt_err("E_CONFIG", "lora.rank must be a positive integer (got %d)", p.rank);
    if (!(p.alpha > 0.0f)) return fmt_err("E_CONFIG", "lora.alpha must be > 0 (got %g)", p.alpha);
    if (p.seq_len < 2) return fmt_err("E_CONFIG", "seqLen must be >= 2 (got %d)", p.seq_len);
    if (p.targets.empty()) return fmt_err("E_CONFIG", "lora.targets is empty");
    if (p.micro_batch < 1 || p.micro_batch > 1024) return fmt_err("E_CONFIG", "microBatch must be an integer in [1, 1024] windows per graph (got %d)", p.micro_batch);
    if (p.loss_chunk < 0) return fmt_err("E_CONFIG", "lossChunk must be >= 0 output rows per loss chunk (0 = one chunk; got %d)", p.loss_chunk);
    for (const auto & tg : p.targets) {
        bool known = false;
        for (const char * k : k_all_targets) known = known || tg == k;
        if (!known) return fmt_err("E_CONFIG", "unknown LoRA target '%s' (known: attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down)", tg.c_str());
    }
    return "";
}

// The weight the vocabulary projection multiplies by (tied to the token embedding when absent).
static ggml_tensor * ov_output_weight(llama_model & M) { return M.output ? M.output : M.tok_embd; }

// The loaded model is one this trainer builds a graph for: no MoE, fused QKV, Q/K norm, YaRN,
// BitNet scales; every target weight present and of a type with a backward kernel. Fills
// t->n_vocab and the distinct weight types (for ov_model_info).
static std::string ov_check_model(ov_trainer * t, std::vector<ggml_type> * wtypes) {
    const ov_open_params & p = t->params;
    llama_model & M = *t->model;
    const llama_hparams & hp = M.hparams;
    if (hp.n_expert > 0) return fmt_err("E_ARCH", "mixture-of-experts models are not supported (MUL_MAT_ID has no backward pass)");
    if (hp.use_kq_norm) return fmt_err("E_ARCH", "Q/K L2-norm (llama4-style) is not built by this trainer");
    if (hp.rope_scaling_type_train == LLAMA_ROPE_SCALING_TYPE_YARN || hp.rope_scaling_type_train == LLAMA_ROPE_SCALING_TYPE_LONGROPE) {
        return fmt_err("E_ARCH", "YaRN / LongRoPE rope scaling is not built by this trainer");
    }
    if (hp.n_embd_head_k(0) != hp.n_embd_head_v(0)) return fmt_err("E_ARCH", "different K and V head sizes are not supported");
    if (p.seq_len > (int64_t) hp.n_ctx_train) {
        return fmt_err("E_CONFIG", "seqLen %d is longer than the model's training context (%lld tokens)", p.seq_len, (long long) hp.n_ctx_train);
    }
    if (!M.tok_embd || !M.output_norm) return fmt_err("E_MODEL", "model has no token embedding or output norm");
    t->n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(t->model));

    auto note_type = [&](ggml_tensor * w) {
        if (std::find(wtypes->begin(), wtypes->end(), w->type) == wtypes->end()) wtypes->push_back(w->type);
    };
    for (int64_t il = 0; il < hp.n_layer(); ++il) {
        llama_layer & L = M.layers[il];
        if (L.wqkv) return fmt_err("E_ARCH", "fused attn_qkv weights are not supported (layer %lld)", (long long) il);
        if (L.ffn_gate_inp) return fmt_err("E_ARCH", "mixture-of-experts layer %lld is not supported", (long long) il);
        if (L.wq_s || L.wk_s || L.wv_s || L.wo_s || L.ffn_gate_s || L.ffn_up_s || L.ffn_down_s) {
            return fmt_err("E_ARCH", "per-tensor weight scales (BitNet-style) are not supported");
        }
        for (const char * tg : k_all_targets) {
            ggml_tensor * w = ov_target_weight(L, tg);
            if (!w) return fmt_err("E_ARCH", "layer %lld has no %s weight", (long long) il, tg);
            if (!ov_type_trainable(w->type)) {
                return fmt_err("E_TYPE", "tensor %s has type %s, which has no backward kernel here (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K)", w->name, ggml_type_name(w->type));
            }
            note_type(w);
        }
    }
    ggml_tensor * out_w = ov_output_weight(M);
    if (!ov_type_trainable(out_w->type)) {
        return fmt_err("E_TYPE", "output tensor %s has type %s, which has no backward kernel here", out_w->name, ggml_type_name(out_w->type));
    }
    note_type(out_w);
    return "";
}

// Backends: GPU devices (when layers are offloaded) first, the CPU backend last; the abort
// callback on every backend that has one (looked up through its registry).
static std::string ov_setup_backends(ov_trainer * t) {
    const ov_open_params & p = t->params;
    if (p.n_gpu_layers > 0) {
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU) {
                ggml_backend_t be = ggml_backend_dev_init(dev, nullptr);
                if (be) t->backends.push_back(be);
            }
        }
    }
    t->backend_cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    if (!t->backend_cpu) return fmt_err("E_BACKEND", "cannot initialise the CPU backend");
    const int n_threads = p.n_threads > 0 ? p.n_threads : (int) std::max(1u, std::thread::hardware_concurrency());
    ggml_backend_cpu_set_n_threads(t->backend_cpu, n_threads);
    ggml_backend_cpu_set_abort_callback(t->backend_cpu, ov_abort_cb, t);
    t->backends.push_back(t->backend_cpu);
    t->abort_native = true;
    for (auto * be : t->backends) {
        if (be == t->backend_cpu) continue;
        ggml_backend_dev_t dev = ggml_backend_get_device(be);
        ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
        auto * set_abort = reg ? (ggml_backend_set_abort_callback_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_abort_callback") : nullptr;
        if (set_abort) set_abort(be, ov_abort_cb, t);
        else t->abort_native = false;
    }
    return "";
}

// LoRA tensors: params, grad accumulators and moments in three separate contexts (and buffers,
// see ov_alloc_loras), so that zeroing the accumulators (defect 1) can never touch the AdamW
// moments. t->layer_loras[il][target] points into t->loras; it is filled once every pair is in
// the vector (no push_back can move them afterwards).
static std::string ov_setup_loras(ov_trainer * t) {
    const ov_open_params & p = t->params;
    llama_model & M = *t->model;
    const int64_t n_layer = M.hparams.n_layer();
    const size_t n_l = (size_t) n_layer * p.targets.size();
    auto mkctx = [&](size_t n) { ggml_init_params ip = { n * ggml_tensor_overhead() + 1024, nullptr, true }; return ggml_init(ip); };
    t->ctx_param = mkctx(2 * n_l + 1);
    t->ctx_grad = mkctx(2 * n_l + 1);
    t->ctx_moment = mkctx(4 * n_l + 2);
    struct slot { int64_t il; const char * target; };
    std::vector<slot> slots;  // slots[i] = the layer and target of t->loras[i]
    t->loras.reserve(n_l);
    slots.reserve(n_l);
    for (int64_t il = 0; il < n_layer; ++il) {
        for (const char * tg : k_all_targets) {
            if (std::find(p.targets.begin(), p.targets.end(), tg) == p.targets.end()) continue;
            ggml_tensor * w = ov_target_weight(M.layers[il], tg);
            const int64_t d_in = w->ne[0], d_out = w->ne[1];
            if (p.rank > std::min(d_in, d_out)) {
                return fmt_err("E_CONFIG", "lora.rank %d exceeds the size of %s (%lld x %lld)", p.rank, w->name, (long long) d_in, (long long) d_out);
            }
            ov_lora l;
            l.name = w->name;
            l.w = w;
            auto nt = [&](ggml_context * c, int64_t n0, int64_t n1, const char * suf) {
                ggml_tensor * x = ggml_new_tensor_2d(c, GGML_TYPE_F32, n0, n1);
                ggml_format_name(x, "%s.%s", w->name, suf);
                return x;
            };
            l.a = nt(t->ctx_param, d_in, p.rank, "lora_a");
            l.b = nt(t->ctx_param, p.rank, d_out, "lora_b");
            ggml_set_param(l.a);
            ggml_set_param(l.b);
            l.ga = nt(t->ctx_grad, d_in, p.rank, "grad_a");
            l.gb = nt(t->ctx_grad, p.rank, d_out, "grad_b");
            l.ma = nt(t->ctx_moment, d_in, p.rank, "m_a");
            l.va = nt(t->ctx_moment, d_in, p.rank, "v_a");
            l.mb = nt(t->ctx_moment, p.rank, d_out, "m_b");
            l.vb = nt(t->ctx_moment, p.rank, d_out, "v_b");
            t->loras.push_back(l);
            slots.push_back({ il, tg });
        }
    }
    t->layer_loras.assign((size_t) n_layer, {});
    for (size_t i = 0; i < t->loras.size(); ++i) t->layer_loras[(size_t) slots[i].il][slots[i].target] = &t->loras[i];
    t->adamw_params = ggml_new_tensor_1d(t->ctx_moment, GGML_TYPE_F32, 7);
    ggml_set_name(t->adamw_params, "adamw_params");
    t->grad_scale = ggml_new_tensor_1d(t->ctx_moment, GGML_TYPE_F32, 1);
    ggml_set_name(t->grad_scale, "grad_scale");
    return "";
}

// Every pair (A, B, their accumulators and moments) lives on the device of its layer's
// weight: the weight's buffer type when that is a device buffer, the CPU's otherwise. The
// two AdamW scalars tensors stay on the CPU (the scheduler copies them where needed). Buffers
// start zeroed; grad_scale = 1.
static std::string ov_alloc_loras(ov_trainer * t) {
    std::map<ggml_tensor *, ggml_backend_buffer_type_t> place;
    for (auto & l : t->loras) {
        ggml_backend_buffer_type_t bt = ggml_backend_cpu_buffer_type();
        if (l.w->buffer && !ggml_backend_buffer_is_host(l.w->buffer)) bt = ggml_backend_buffer_get_type(l.w->buffer);
        for (ggml_tensor * x : { l.a, l.b, l.ga, l.gb, l.ma, l.va, l.mb, l.vb }) place[x] = bt;
    }
    std::map<std::string, int> n_on;
    for (auto & l : t->loras) n_on[ggml_backend_buft_name(place[l.a])]++;
    if (n_on.size() > 1 || n_on.count(ggml_backend_buft_name(ggml_backend_cpu_buffer_type())) == 0) {
        for (auto & kv : n_on) ov_log("%d LoRA pairs on %s", kv.second, kv.first.c_str());
    }
    auto alloc_by_device = [&](ggml_context * ctx, std::vector<ggml_backend_buffer_t> & bufs) {
        std::map<ggml_backend_buffer_type_t, std::vector<ggml_tensor *>> groups;
        for (ggml_tensor * x = ggml_get_first_tensor(ctx); x; x = ggml_get_next_tensor(ctx, x)) {
            auto it = place.find(x);
            groups[it == place.end() ? ggml_backend_cpu_buffer_type() : it->second].push_back(x);
        }
        for (auto & g : groups) {
            const size_t align = ggml_backend_buft_get_alignment(g.first);
            size_t size = 0;
            for (ggml_tensor * x : g.second) size += GGML_PAD(ggml_backend_buft_get_alloc_size(g.first, x), align);
            ggml_backend_buffer_t buf = ggml_backend_buft_alloc_buffer(g.first, size);
            if (!buf) return false;
            bufs.push_back(buf);
            ggml_tallocr ta = ggml_tallocr_new(buf);
            for (ggml_tensor * x : g.second) {
                if (ggml_tallocr_alloc(&ta, x) != GGML_STATUS_SUCCESS) return false;
            }
            ggml_backend_buffer_clear(buf, 0);
        }
        return true;
    };
    if (!alloc_by_device(t->ctx_param, t->bufs_param) || !alloc_by_device(t->ctx_grad, t->bufs_grad) ||
        !alloc_by_device(t->ctx_moment, t->bufs_moment)) {
        return fmt_err("E_OOM", "cannot allocate LoRA buffers");
    }
    const float one = 1.0f;
    ggml_backend_tensor_set(t->grad_scale, &one, 0, sizeof(float));
    return "";
}

// init: A ~ U(-1/sqrt(d_in), 1/sqrt(d_in)) seeded per tensor name, B = 0 (adapted model == base)
static void ov_init_loras(ov_trainer * t) {
    for (auto & l : t->loras) {
        uint64_t s = t->params.seed ^ fnv1a(l.name);
        std::vector<float> a((size_t) ggml_nelements(l.a));
        const float bound = 1.0f / sqrtf((float) l.a->ne[0]);
        for (auto & v : a) {
            const double u = (double) (splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
            v = (float) ((2.0 * u - 1.0) * bound);
        }
        ggml_backend_tensor_set(l.a, a.data(), 0, a.size() * sizeof(float));
    }
    t->lora_scale = t->params.alpha / (float) t->params.rank;
}

// row ids 0..rows-1 for the dequantize route (ov_route_backward); rows = the largest weight's
static std::string ov_setup_row_ids(ov_trainer * t) {
    llama_model & M = *t->model;
    int64_t rows = ov_output_weight(M)->ne[1];
    for (int64_t il = 0; il < M.hparams.n_layer(); ++il) {
        for (const char * tg : k_all_targets) rows = std::max(rows, ov_target_weight(M.layers[il], tg)->ne[1]);
    }
    ggml_init_params ip = { 2 * ggml_tensor_overhead(), nullptr, true };
    t->ctx_aux = ggml_init(ip);
    t->iota = ggml_new_tensor_1d(t->ctx_aux, GGML_TYPE_I32, rows);
    ggml_set_name(t->iota, "ov_row_ids");
    t->buf_aux = ggml_backend_alloc_ctx_tensors_from_buft(t->ctx_aux, ggml_backend_cpu_buffer_type());
    if (!t->buf_aux) return fmt_err("E_OOM", "cannot allocate the row-id buffer");
    std::vector<int32_t> ids((size_t) rows);
    for (int64_t i = 0; i < rows; ++i) ids[(size_t) i] = (int32_t) i;
    ggml_backend_tensor_set(t->iota, ids.data(), 0, ids.size() * sizeof(int32_t));
    return "";
}

static void ov_fill_hparams(ov_trainer * t) {
    llama_model & M = *t->model;
    const llama_hparams & hp = M.hparams;
    ov_hparams & h = t->hp;
    h.n_embd = hp.n_embd;
    h.n_head = hp.n_head(0);
    h.n_head_kv = hp.n_head_kv(0);
    h.hd = hp.n_embd_head_k(0);
    h.n_layer = hp.n_layer();
    h.n_rot = (int) hp.n_rot(0);
    h.eps = hp.f_norm_rms_eps;
    h.rope_type = llama_model_rope_type(t->model);
    h.freq_base = hp.rope_freq_base_train;
    h.freq_scale = hp.rope_freq_scale_train;
    h.n_ctx_orig = (int) (hp.n_ctx_orig_yarn ? hp.n_ctx_orig_yarn : hp.n_ctx_train);
    // as llama_context derives them for non-YaRN models (YaRN/LongRoPE are refused at open)
    h.attn_factor = hp.yarn_attn_factor * hp.rope_attn_factor;
    h.beta_fast = hp.yarn_beta_fast;
    h.beta_slow = hp.yarn_beta_slow;
    h.kq_scale = (M.arch == LLM_ARCH_LLAMA && hp.f_attention_scale != 0.0f) ? hp.f_attention_scale : 1.0f / sqrtf((float) h.hd);
    t->B = t->params.micro_batch;
}

static void ov_fill_info(ov_trainer * t, const std::vector<ggml_type> & wtypes, ov_model_info * info) {
    llama_model & M = *t->model;
    const llama_hparams & hp = M.hparams;
    char buf[256];
    llama_model_desc(t->model, buf, sizeof(buf));
    info->arch = llm_arch_name(M.arch);
    info->desc = buf;
    info->n_vocab = t->n_vocab;
    info->n_embd = hp.n_embd;
    info->n_layer = hp.n_layer();
    info->n_head = hp.n_head(0);
    info->n_head_kv = hp.n_head_kv(0);
    info->n_ff = hp.n_ff(0);
    info->n_ctx_train = hp.n_ctx_train;
    int64_t n = 0;
    for (auto & l : t->loras) n += ggml_nelements(l.a) + ggml_nelements(l.b);
    info->n_lora_params = n;
    for (ggml_type ty : wtypes) info->weight_types.push_back(ggml_type_name(ty));
    std::string be;
    for (auto * b : t->backends) { if (!be.empty()) be += ","; be += ggml_backend_name(b); }
    info->backend = be;
}

std::string ov_trainer_open(const ov_open_params & p, ov_trainer ** out, ov_model_info * info) {
    *out = nullptr;
    std::call_once(g_backend_once, [] {
        llama_log_set(ov_llama_log, nullptr);
        llama_backend_init();
    });
    std::string err = ov_check_params(p);
    if (!err.empty()) return err;
    std::string arch;
    err = ov_check_arch_gguf(p.model_path, &arch);
    if (!err.empty()) return err;

    auto * t = new ov_trainer();
    t->params = p;
    t->T = p.seq_len;

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = p.n_gpu_layers;
    // defect 5: repacked (CPU_REPACK) Q4_0 layouts have no OUT_PROD kernel; keep weights as stored.
    mp.use_extra_bufts = false;
    ov_log("forced use_extra_bufts=false: repacked CPU weight layouts cannot be differentiated through (OUT_PROD)");
    t->model = llama_model_load_from_file(p.model_path.c_str(), mp);
    if (!t->model) {
        delete t;
        return fmt_err("E_MODEL", "llama.cpp could not load %s (run with OVERNIGHT_NATIVE_VERBOSE=1 for its log)", p.model_path.c_str());
    }

    std::vector<ggml_type> wtypes;
    err = ov_check_model(t, &wtypes);
    if (err.empty()) err = ov_setup_backends(t);
    if (err.empty()) err = ov_setup_loras(t);
    if (err.empty()) err = ov_alloc_loras(t);
    if (err.empty()) {
        ov_init_loras(t);
        err = ov_setup_row_ids(t);
    }
    if (err.empty()) {
        ov_fill_hparams(t);
        err = ov_build_graphs(t);
    }
    if (!err.empty()) {
        ov_trainer_free(t);
        return err;
    }
    if (info) ov_fill_info(t, wtypes, info);
    *out = t;
    return "";
}

void ov_trainer_free(ov_trainer * t) {
    if (!t) return;
    if (t->sched) ggml_backend_sched_free(t->sched);
    for (auto & kv : t->graphs) ov_graph_free(kv.second);
    if (t->ctx_opt) ggml_free(t->ctx_opt);
    if (t->buf_ckpt) ggml_backend_buffer_free(t->buf_ckpt);
    if (t->ctx_ckpt) ggml_free(t->ctx_ckpt);
    for (auto * b : t->bufs_param) ggml_backend_buffer_free(b);
    for (auto * b : t->bufs_grad) ggml_backend_buffer_free(b);
    for (auto * b : t->bufs_moment) ggml_backend_buffer_free(b);
    if (t->buf_aux) ggml_backend_buffer_free(t->buf_aux);
    if (t->ctx_aux) ggml_free(t->ctx_aux);
    if (t->ctx_param) ggml_free(t->ctx_param);
    if (t->ctx_grad) ggml_free(t->ctx_grad);
    if (t->ctx_moment) ggml_free(t->ctx_moment);
    for (auto * b : t->backends) ggml_backend_free(b);
    if (t->model) llama_model_free(t->model);
    delete t;
}

void ov_trainer_cancel(ov_trainer * t, bool on) { t->cancel.store(on); }

// ---------------------------------------------------------------------------------------------
// one window -> graph inputs
// ---------------------------------------------------------------------------------------------

static std::string ov_check_window(ov_trainer * t, const ov_window & w, int64_t * n_kept) {
    const int64_t T = t->T;
    if ((int64_t) w.tokens.size() != T || (int64_t) w.labels.size() != T) {
        return fmt_err("E_INPUT", "window has %zu tokens and %zu labels, expected %lld of each (the sequence length)", w.tokens.size(), w.labels.size(), (long long) T);
    }
    if (!w.segments.empty() && (int64_t) w.segments.size() != T) {
        return fmt_err("E_INPUT", "window has %zu segment ids, expected %lld", w.segments.size(), (long long) T);
    }
    int64_t n = 0;
    for (int64_t i = 0; i < T; ++i) {
        if (w.tokens[i] < 0 || w.tokens[i] >= t->n_vocab) {
            return fmt_err("E_INPUT", "token %d at position %lld is outside the vocabulary [0, %lld)", w.tokens[i], (long long) i, (long long) t->n_vocab);
        }
        if (w.labels[i] < -1 || w.labels[i] >= t->n_vocab) {
            return fmt_err("E_INPUT", "label %d at position %lld is neither -1 nor a token id < %lld", w.labels[i], (long long) i, (long long) t->n_vocab);
        }
        n += w.labels[i] >= 0;
    }
    *n_kept = n;
    return "";
}

// One micro-batch of b windows on the host: tokens, positions (restarting at each segment) and
// labels of every position (window w's position i is row w*T + i), the trained rows in order
// with their labels, and the attention mask [T, T, 1, b] in t->mask_host (causal, inside the
// segment, per window: packed samples and windows never see each other).
struct ov_batch {
    int64_t b = 0, n_kept = 0;
    std::vector<int32_t> tokens, pos, labels;
    std::vector<int32_t> rows, row_labels;
};

static void ov_make_batch(ov_trainer * t, const std::vector<const ov_window *> & ws, ov_batch * bt) {
    const int64_t T = t->T, b = (int64_t) ws.size();
    bt->b = b;
    bt->tokens.resize((size_t) (T * b));
    bt->pos.resize((size_t) (T * b));
    bt->labels.resize((size_t) (T * b));
    bt->rows.clear();
    bt->row_labels.clear();
    t->mask_host.resize((size_t) (T * T * b));
    const float ninf = -INFINITY;
    for (int64_t iw = 0; iw < b; ++iw) {
        const ov_window & w = *ws[(size_t) iw];
        const bool segs = !w.segments.empty();
        int32_t * pos = bt->pos.data() + iw * T;
        for (int64_t i = 0; i < T; ++i) {
            if (i == 0 || (segs && w.segments[i] != w.segments[i - 1])) pos[i] = 0;
            else pos[i] = pos[i - 1] + 1;
            bt->tokens[(size_t) (iw * T + i)] = w.tokens[i];
            bt->labels[(size_t) (iw * T + i)] = w.labels[i];
            if (w.labels[i] >= 0) {
                bt->rows.push_back((int32_t) (iw * T + i));
                bt->row_labels.push_back(w.labels[i]);
            }
        }
        for (int64_t iq = 0; iq < T; ++iq) {
            float * row = t->mask_host.data() + (iw * T + iq) * T;
            for (int64_t ik = 0; ik < T; ++ik) {
                const bool ok = ik <= iq && (!segs || w.segments[ik] == w.segments[iq]);
                row[ik] = ok ? 0.0f : ninf;
            }
        }
    }
    bt->n_kept = (int64_t) bt->rows.size();
}

static void ov_set_attn_inputs(ov_trainer * t, ov_graph * G, const ov_batch & bt) {
    const int64_t N = t->T * bt.b;
    if (G->inp_tokens) ggml_backend_tensor_set(G->inp_tokens, bt.tokens.data(), 0, N * sizeof(int32_t));
    ggml_backend_tensor_set(G->inp_pos, bt.pos.data(), 0, N * sizeof(int32_t));
    ggml_backend_tensor_set(G->inp_mask, t->mask_host.data(), 0, (size_t) (N * t->T) * sizeof(float));
}

// The head's rows: the batch's trained rows [first, first + n_out), padded with row 0 / mask 0;
// a monolithic graph of every position (n_out == T*b, no gather) takes row i = position i.
static void ov_set_head_inputs(ov_trainer * t, ov_graph * G, const ov_batch & bt, int64_t first, float loss_scale) {
    const int64_t V = t->n_vocab, n_out = G->n_out, N = t->T * bt.b;
    const bool all = G->kind == OV_G_MONO && n_out == N;
    if ((int64_t) t->labels_host.size() < V * n_out) t->labels_host.resize((size_t) (V * n_out));
    std::fill(t->labels_host.begin(), t->labels_host.begin() + (size_t) (V * n_out), 0.0f);
    std::vector<int32_t> out_ids((size_t) n_out, 0);
    std::vector<float> rowmask((size_t) n_out, 0.0f);
    for (int64_t j = 0; j < n_out; ++j) {
        int32_t label = -1;
        if (all) {
            out_ids[(size_t) j] = (int32_t) j;
            label = bt.labels[(size_t) j];
        } else if (first + j < bt.n_kept) {
            out_ids[(size_t) j] = bt.rows[(size_t) (first + j)];
            label = bt.row_labels[(size_t) (first + j)];
        }
        if (label >= 0) {
            rowmask[(size_t) j] = 1.0f;
            t->labels_host[(size_t) (j * V + label)] = 1.0f;
        }
    }
    if (!all) ggml_backend_tensor_set(G->inp_out_ids, out_ids.data(), 0, n_out * sizeof(int32_t));
    ggml_backend_tensor_set(G->inp_labels, t->labels_host.data(), 0, (size_t) (V * n_out) * sizeof(float));
    ggml_backend_tensor_set(G->inp_rowmask, rowmask.data(), 0, n_out * sizeof(float));
    ggml_backend_tensor_set(G->inp_loss_scale, &loss_scale, 0, sizeof(float));
}

// Allocation rule (issue #8 item 1): a bucket's forward graph gf and its training graph gb share
// tensor objects (gb = dup(gf) + backward), and ggml-alloc treats any tensor whose data (or
// buffer) is already set as placed by someone else: it neither plans nor moves it. So after gf
// ran, allocating gb kept gf's addresses for the forward tensors while planning the backward
// tensors over the same memory (corrupt activations, then GGML_ASSERT in get_rows); a view keeps
// its address even after its source moved; and a grown compute buffer would leave every
// previously placed tensor pointing into freed memory. Therefore, before every allocation, every
// tensor of the graph's own context is unplaced (data and buffer cleared; the model, LoRA,
// gradient and moment tensors live in other contexts and keep theirs), and the scheduler makes
// a fresh plan whenever the graph differs from the one it planned last. Each graph then runs
// exactly as on a fresh trainer, in any order and whatever ran before.
static void ov_unplace(ggml_context * ctx) {
    for (ggml_tensor * x = ggml_get_first_tensor(ctx); x; x = ggml_get_next_tensor(ctx, x)) {
        x->data = nullptr;
        x->buffer = nullptr;
    }
}

static bool ov_sched_alloc(ov_trainer * t, ggml_context * ctx, ggml_cgraph * g) {
    ov_unplace(ctx);
    ov_restore_srcs(t, g);
    ggml_backend_sched_reset(t->sched);
    if (t->planned != g) {
        t->planned = nullptr;
        if (!ggml_backend_sched_reserve(t->sched, g)) return false;
        t->planned = g;
        ov_restore_srcs(t, g);  // the reservation split the graph too
    }
    return ggml_backend_sched_alloc_graph(t->sched, g);
}

// one graph evaluation: allocated as on a fresh trainer (ov_sched_alloc), inputs set by the
// caller in between, cancellable (abort / eval callback)
static std::string ov_alloc(ov_trainer * t, ov_graph * G, ggml_cgraph * g) {
    if (!ov_sched_alloc(t, G->ctx, g)) return fmt_err("E_OOM", "cannot allocate the compute graph");
    return "";
}

static std::string ov_compute(ov_trainer * t, ov_graph * G, ggml_cgraph * g) {
    if (g == G->gb && G->loss_grad) {
        const float one = 1.0f;
        ggml_backend_tensor_set(G->loss_grad, &one, 0, sizeof(float));
    }
    if (t->cancel.load()) return fmt_err("E_CANCELLED", "cancelled");  // between graph evaluations
    t->abort_enabled.store(true);
    const ggml_status st = ggml_backend_sched_graph_compute(t->sched, g);
    t->abort_enabled.store(false);
    if (st == GGML_STATUS_ABORTED || (!t->abort_native && t->cancel.load())) return fmt_err("E_CANCELLED", "cancelled");
    if (st != GGML_STATUS_SUCCESS) return fmt_err("E_COMPUTE", "graph compute failed (status %d)", (int) st);
    return "";
}

// Monolithic: one graph for the micro-batch (forward + loss, and backward when asked). The loss
// value is sum(CE over trained positions) / n_norm.
static std::string ov_run_mono(ov_trainer * t, const ov_batch & bt, double n_norm, bool backward, double * loss_out) {
    ov_graph * G = nullptr;
    std::string e = ov_get_graph(t, OV_G_MONO, bt.b, ov_bucket(t->T * bt.b, bt.n_kept), -1, &G);
    if (!e.empty()) return e;
    ggml_cgraph * g = backward ? G->gb : G->gf;
    e = ov_alloc(t, G, g);
    if (!e.empty()) return e;
    ov_set_attn_inputs(t, G, bt);
    ov_set_head_inputs(t, G, bt, 0, (float) ((double) G->n_out / n_norm));
    e = ov_compute(t, G, g);
    if (!e.empty()) return e;
    float l = 0.0f;
    ggml_backend_tensor_get(G->loss, &l, 0, sizeof(float));
    *loss_out = l;
    return "";
}

// Checkpointed: forward (writes X[0..L]), the loss head chunk by chunk (each adds its part of
// d loss / d X[L] into D), then layer L-1 .. 0 recomputed from X[l], each reading d loss / d X[l+1]
// and writing d loss / d X[l] (layer 0 writes none) while accumulating its LoRA gradients.
static std::string ov_run_ckpt(ov_trainer * t, const ov_batch & bt, double n_norm, bool backward, double * loss_out) {
    const int64_t b = bt.b, L = t->hp.n_layer;
    ov_graph * G = nullptr;
    std::string e = ov_get_graph(t, OV_G_FWD, b, 0, -1, &G);
    if (e.empty()) e = ov_alloc(t, G, G->gf);
    if (!e.empty()) return e;
    ov_set_attn_inputs(t, G, bt);
    e = ov_compute(t, G, G->gf);
    if (!e.empty()) return e;

    const int64_t C = ov_head_rows(t, b, bt.n_kept);
    e = ov_get_graph(t, OV_G_HEAD, b, C, -1, &G);
    if (!e.empty()) return e;
    if (backward) {
        ggml_tensor * d = ov_ckpt_d(t, b, L);
        ggml_backend_tensor_memset(d, 0, 0, ggml_nbytes(d));
    }
    double loss = 0.0;
    for (int64_t first = 0; first < bt.n_kept; first += C) {
        ggml_cgraph * g = backward ? G->gb : G->gf;
        e = ov_alloc(t, G, g);
        if (!e.empty()) return e;
        ov_set_head_inputs(t, G, bt, first, (float) ((double) C / n_norm));
        e = ov_compute(t, G, g);
        if (!e.empty()) return e;
        float l = 0.0f;
        ggml_backend_tensor_get(G->loss, &l, 0, sizeof(float));
        loss += l;
    }
    *loss_out = loss;
    if (!backward) return "";
    for (int64_t il = L - 1; il >= 0; --il) {
        e = ov_get_graph(t, OV_G_LAYER, b, 0, il, &G);
        if (e.empty()) e = ov_alloc(t, G, G->gb);
        if (!e.empty()) return e;
        ov_set_attn_inputs(t, G, bt);
        e = ov_compute(t, G, G->gb);
        if (!e.empty()) return e;
    }
    return "";
}

static std::string ov_run_batch(ov_trainer * t, const ov_batch & bt, double n_norm, bool backward, double * loss) {
    return t->params.checkpointing ? ov_run_ckpt(t, bt, n_norm, backward, loss) : ov_run_mono(t, bt, n_norm, backward, loss);
}

// the windows with trained tokens, in order, in micro-batches of up to B (the last may be smaller:
// it gets its own graph of that many windows, no padding windows)
static std::vector<std::vector<const ov_window *>> ov_micro_batches(ov_trainer * t, const std::vector<ov_window> & ws, const std::vector<int64_t> & kept) {
    std::vector<std::vector<const ov_window *>> r;
    for (size_t i = 0; i < ws.size(); ++i) {
        if (kept[i] == 0) continue;
        if (r.empty() || (int64_t) r.back().size() == t->B) r.emplace_back();
        r.back().push_back(&ws[i]);
    }
    return r;
}

// the AdamW graph: never aborted, so an update is applied completely or not at all
static std::string ov_run_opt(ov_trainer * t) {
    if (!ov_sched_alloc(t, t->ctx_opt, t->gopt)) return fmt_err("E_OOM", "cannot allocate the optimizer graph");
    const ggml_status st = ggml_backend_sched_graph_compute(t->sched, t->gopt);
    if (st != GGML_STATUS_SUCCESS) return fmt_err("E_COMPUTE", "optimizer step failed (status %d)", (int) st);
    return "";
}

// global L2 norm of the accumulated gradient (every A and B), what the optimizer would see
static std::string ov_grad_norm(ov_trainer * t, double * norm) {
    if (!ov_sched_alloc(t, t->ctx_opt, t->gnorm)) return fmt_err("E_OOM", "cannot allocate the gradient norm graph");
    const ggml_status st = ggml_backend_sched_graph_compute(t->sched, t->gnorm);
    if (st != GGML_STATUS_SUCCESS) return fmt_err("E_COMPUTE", "gradient norm failed (status %d)", (int) st);
    float sumsq = 0.0f;
    ggml_backend_tensor_get(t->grad_sumsq, &sumsq, 0, sizeof(float));
    *norm = sqrt((double) sumsq);
    return "";
}

// ---------------------------------------------------------------------------------------------
// step / grad / eval
// ---------------------------------------------------------------------------------------------

using ov_clock = std::chrono::steady_clock;

std::string ov_trainer_step(ov_trainer * t, const std::vector<ov_window> & mbs, const ov_adamw & opt, ov_step_result * res) {
    const auto t0 = ov_clock::now();
    if (mbs.empty()) return fmt_err("E_INPUT", "a step needs at least one window");
    if (!(opt.lr >= 0.0f) || !(opt.beta1 >= 0.0f && opt.beta1 < 1.0f) || !(opt.beta2 >= 0.0f && opt.beta2 < 1.0f) || !(opt.eps > 0.0f) || !(opt.weight_decay >= 0.0f)) {
        return fmt_err("E_CONFIG", "invalid AdamW parameters (lr %g, beta1 %g, beta2 %g, eps %g, weight decay %g)", opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
    }
    if (!(opt.clip_norm >= 0.0f) || !std::isfinite(opt.clip_norm)) {
        return fmt_err("E_CONFIG", "invalid gradient clipping norm %g (0 = off, else > 0)", opt.clip_norm);
    }
    std::vector<int64_t> kept(mbs.size());
    int64_t n_step = 0;
    for (size_t i = 0; i < mbs.size(); ++i) {
        std::string e = ov_check_window(t, mbs[i], &kept[i]);
        if (!e.empty()) return e;
        n_step += kept[i];
    }
    *res = ov_step_result{};
    if (n_step == 0) return fmt_err("E_NO_TOKENS", "no trained tokens in this step (every label is -1)");
    if (t->cancel.load()) return fmt_err("E_CANCELLED", "cancelled");

    // defect 1: zero the accumulators at the start of every accumulation cycle (moments untouched)
    for (auto * b : t->bufs_grad) ggml_backend_buffer_clear(b, 0);
    double loss = 0.0;
    ov_batch bt;
    for (const auto & group : ov_micro_batches(t, mbs, kept)) {
        ov_make_batch(t, group, &bt);
        double l = 0.0;
        std::string e = ov_run_batch(t, bt, (double) n_step, /*backward =*/ true, &l);
        if (!e.empty()) return e;
        loss += l;
    }
    if (!std::isfinite(loss)) return fmt_err("E_DIVERGED", "loss is not finite (%g); lower the learning rate", loss);

    // clipping by global norm: AdamW sees g * clip / (norm + 1e-6) when norm > clip, else g
    double norm = 0.0;
    std::string e = ov_grad_norm(t, &norm);
    if (!e.empty()) return e;
    if (!std::isfinite(norm)) return fmt_err("E_DIVERGED", "gradient norm is not finite (%g); lower the learning rate", norm);
    const float scale = opt.clip_norm > 0.0f && norm > opt.clip_norm ? (float) (opt.clip_norm / (norm + 1e-6)) : 1.0f;
    ggml_backend_tensor_set(t->grad_scale, &scale, 0, sizeof(float));

    t->adam_t += 1;
    const float p[7] = { opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay,
                         (float) (1.0 / (1.0 - pow(opt.beta1, (double) t->adam_t))),
                         (float) (1.0 / (1.0 - pow(opt.beta2, (double) t->adam_t))) };
    ggml_backend_tensor_set(t->adamw_params, p, 0, sizeof(p));
    e = ov_run_opt(t);
    if (!e.empty()) return e;

    res->loss = loss;
    res->n_trained = n_step;
    res->grad_norm = norm;
    res->ms = std::chrono::duration<double, std::milli>(ov_clock::now() - t0).count();
    return "";
}

std::string ov_trainer_grad(ov_trainer * t, const ov_window & w, ov_step_result * res) {
    int64_t kept = 0;
    std::string e = ov_check_window(t, w, &kept);
    if (!e.empty()) return e;
    if (kept == 0) return fmt_err("E_NO_TOKENS", "no trained tokens in this window");
    for (auto * b : t->bufs_grad) ggml_backend_buffer_clear(b, 0);
    ov_batch bt;
    ov_make_batch(t, { &w }, &bt);
    double l = 0.0;
    e = ov_run_batch(t, bt, (double) kept, /*backward =*/ true, &l);
    if (!e.empty()) return e;
    double norm = 0.0;
    e = ov_grad_norm(t, &norm);
    if (!e.empty()) return e;
    res->loss = l;
    res->n_trained = kept;
    res->grad_norm = norm;
    return "";
}

std::string ov_trainer_eval(ov_trainer * t, const std::vector<ov_window> & ws, double * loss_sum, int64_t * n_trained) {
    *loss_sum = 0.0;
    *n_trained = 0;
    std::vector<int64_t> kept(ws.size());
    for (size_t i = 0; i < ws.size(); ++i) {
        std::string e = ov_check_window(t, ws[i], &kept[i]);
        if (!e.empty()) return e;
    }
    ov_batch bt;
    for (const auto & group : ov_micro_batches(t, ws, kept)) {
        ov_make_batch(t, group, &bt);
        double l = 0.0;
        std::string e = ov_run_batch(t, bt, 1.0, /*backward =*/ false, &l);   // value = sum of CE over kept tokens
        if (!e.empty()) return e;
        *loss_sum += l;
        *n_trained += bt.n_kept;
    }
    return "";
}

// ---------------------------------------------------------------------------------------------
// tensors and state
// ---------------------------------------------------------------------------------------------

std::vector<ov_lora_info> ov_trainer_loras(ov_trainer * t) {
    std::vector<ov_lora_info> r;
    for (auto & l : t->loras) r.push_back({ l.name, l.w->ne[0], l.w->ne[1] });
    return r;
}

static ggml_tensor * ov_find(ov_trainer * t, const std::string & name, const std::string & kind) {
    for (auto & l : t->loras) {
        if (l.name != name) continue;
        if (kind == "a") return l.a;
        if (kind == "b") return l.b;
        if (kind == "grad_a") return l.ga;
        if (kind == "grad_b") return l.gb;
        if (kind == "m_a") return l.ma;
        if (kind == "v_a") return l.va;
        if (kind == "m_b") return l.mb;
        if (kind == "v_b") return l.vb;
    }
    return nullptr;
}

std::string ov_trainer_get_tensor(ov_trainer * t, const std::string & name, const std::string & kind, std::vector<float> * out) {
    ggml_tensor * x = ov_find(t, name, kind);
    if (!x) return fmt_err("E_INPUT", "no LoRA tensor '%s' of kind '%s'", name.c_str(), kind.c_str());
    out->resize((size_t) ggml_nelements(x));
    ggml_backend_tensor_get(x, out->data(), 0, ggml_nbytes(x));
    return "";
}

std::string ov_trainer_set_tensor(ov_trainer * t, const std::string & name, const std::string & kind, const std::vector<float> & in) {
    ggml_tensor * x = ov_find(t, name, kind);
    if (!x) return fmt_err("E_INPUT", "no LoRA tensor '%s' of kind '%s'", name.c_str(), kind.c_str());
    if ((int64_t) in.size() != ggml_nelements(x)) return fmt_err("E_INPUT", "%s.%s has %lld elements, got %zu", name.c_str(), kind.c_str(), (long long) ggml_nelements(x), in.size());
    ggml_backend_tensor_set(x, in.data(), 0, ggml_nbytes(x));
    return "";
}

// order: for each LoRA pair: a, b, m_a, v_a, m_b, v_b
std::string ov_trainer_get_state(ov_trainer * t, std::vector<uint8_t> * out, int64_t * adam_t) {
    size_t total = 0;
    for (auto & l : t->loras) total += 3 * (ggml_nbytes(l.a) + ggml_nbytes(l.b));
    out->resize(total);
    size_t off = 0;
    for (auto & l : t->loras) {
        for (ggml_tensor * x : { l.a, l.b, l.ma, l.va, l.mb, l.vb }) {
            ggml_backend_tensor_get(x, out->data() + off, 0, ggml_nbytes(x));
            off += ggml_nbytes(x);
        }
    }
    *adam_t = t->adam_t;
    return "";
}

std::string ov_trainer_set_state(ov_trainer * t, const std::vector<uint8_t> & in, int64_t adam_t) {
    size_t total = 0;
    for (auto & l : t->loras) total += 3 * (ggml_nbytes(l.a) + ggml_nbytes(l.b));
    if (in.size() != total) {
        return fmt_err("E_CHECKPOINT", "checkpoint state has %zu bytes, this model + LoRA config needs %zu (different model, rank or targets?)", in.size(), total);
    }
    if (adam_t < 0) return fmt_err("E_CHECKPOINT", "negative optimizer step count");
    size_t off = 0;
    for (auto & l : t->loras) {
        for (ggml_tensor * x : { l.a, l.b, l.ma, l.va, l.mb, l.vb }) {
            ggml_backend_tensor_set(x, in.data() + off, 0, ggml_nbytes(x));
            off += ggml_nbytes(x);
        }
    }
    t->adam_t = adam_t;
    return "";
}

// ---------------------------------------------------------------------------------------------
// adapter export, probe, tokenizer
// ---------------------------------------------------------------------------------------------

std::string ov_trainer_save_adapter(ov_trainer * t, const std::string & path, const std::vector<std::pair<std::string, std::string>> & kv) {
    std::vector<std::pair<std::string, const ggml_tensor *>> ts;
    for (auto & l : t->loras) {
        ts.push_back({ l.name + ".lora_a", l.a });
        ts.push_back({ l.name + ".lora_b", l.b });
    }
    return ov_write_adapter_gguf(path, llm_arch_name(t->model->arch), t->params.alpha, kv, ts);
}

std::string ov_trainer_probe(ov_trainer * t, const ov_probe_params & p, std::vector<int32_t> * out_tokens, std::string * text) {
    if (p.prompt.empty()) return fmt_err("E_INPUT", "probe prompt is empty");
    if (p.max_tokens <= 0) return fmt_err("E_INPUT", "probe maxTokens must be > 0");
    for (int32_t tok : p.prompt) {
        if (tok < 0 || tok >= t->n_vocab) return fmt_err("E_INPUT", "probe token %d is outside the vocabulary", tok);
    }
    const int64_t n_ctx_need = (int64_t) p.prompt.size() + p.max_tokens;
    if (n_ctx_need > t->model->hparams.n_ctx_train) return fmt_err("E_INPUT", "probe prompt + maxTokens (%lld) exceeds the model context", (long long) n_ctx_need);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) std::max<int64_t>(256, n_ctx_need);
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = std::min<uint32_t>(cp.n_ctx, 512);
    cp.n_threads = cp.n_threads_batch = t->params.n_threads > 0 ? t->params.n_threads : (int) std::max(1u, std::thread::hardware_concurrency());
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(t->model, cp);
    if (!ctx) return fmt_err("E_PROBE", "cannot create an inference context for the probe");
    llama_adapter_lora * ad = nullptr;
    if (!p.adapter_path.empty()) {
        ad = llama_adapter_lora_init(t->model, p.adapter_path.c_str());
        if (!ad) { llama_free(ctx); return fmt_err("E_PROBE", "llama.cpp rejected the adapter %s", p.adapter_path.c_str()); }
        float scale = 1.0f;
        llama_set_adapters_lora(ctx, &ad, 1, &scale);
    }
    llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (p.temperature > 0.0f) {
        llama_sampler_chain_add(smpl, llama_sampler_init_temp(p.temperature));
        llama_sampler_chain_add(smpl, llama_sampler_init_dist(p.seed));
    } else {
        llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    }
    const llama_vocab * vocab = llama_model_get_vocab(t->model);
    std::vector<llama_token> prompt(p.prompt.begin(), p.prompt.end());
    std::string err;
    llama_batch batch = llama_batch_get_one(prompt.data(), (int32_t) prompt.size());
    out_tokens->clear();
    llama_token tok = 0;
    for (int i = 0; i < p.max_tokens; ++i) {
        if (llama_decode(ctx, batch) != 0) { err = fmt_err("E_PROBE", "llama_decode failed"); break; }
        tok = llama_sampler_sample(smpl, ctx, -1);
        if (llama_vocab_is_eog(vocab, tok)) break;
        out_tokens->push_back(tok);
        batch = llama_batch_get_one(&tok, 1);
    }
    llama_sampler_free(smpl);
    llama_free(ctx);
    if (ad) llama_adapter_lora_free(ad);
    if (!err.empty()) return err;
    return ov_trainer_detokenize(t, *out_tokens, text);
}

// Reference: the same loss computed by llama.cpp's own inference graph (llama_decode, no
// adapter). With B = 0 our training graph must agree: this checks the graph against upstream for
// every architecture we accept (tests call it; it is not used in training).
std::string ov_trainer_reference_loss(ov_trainer * t, const ov_window & w, double * loss_sum, int64_t * n_trained) {
    int64_t kept = 0;
    std::string e = ov_check_window(t, w, &kept);
    if (!e.empty()) return e;
    if (!w.segments.empty()) return fmt_err("E_INPUT", "the reference loss supports single-segment windows only");
    const int64_t T = t->T;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) std::max<int64_t>(256, T);
    cp.n_batch = (uint32_t) T;
    cp.n_ubatch = (uint32_t) T;
    cp.n_threads = cp.n_threads_batch = t->params.n_threads > 0 ? t->params.n_threads : (int) std::max(1u, std::thread::hardware_concurrency());
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(t->model, cp);
    if (!ctx) return fmt_err("E_PROBE", "cannot create an inference context");
    llama_batch batch = llama_batch_init((int32_t) T, 0, 1);
    for (int64_t i = 0; i < T; ++i) {
        batch.token[i] = w.tokens[i];
        batch.pos[i] = (llama_pos) i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = (int32_t) T;
    std::string err;
    if (llama_decode(ctx, batch) != 0) err = fmt_err("E_PROBE", "llama_decode failed");
    double sum = 0.0;
    if (err.empty()) {
        for (int64_t i = 0; i < T; ++i) {
            if (w.labels[i] < 0) continue;
            const float * lg = llama_get_logits_ith(ctx, (int32_t) i);
            double mx = -INFINITY;
            for (int64_t v = 0; v < t->n_vocab; ++v) mx = std::max(mx, (double) lg[v]);
            double z = 0.0;
            for (int64_t v = 0; v < t->n_vocab; ++v) z += exp((double) lg[v] - mx);
            sum += (mx + log(z)) - (double) lg[w.labels[i]];
        }
    }
    llama_batch_free(batch);
    llama_free(ctx);
    *loss_sum = sum;
    *n_trained = kept;
    return err;
}

std::string ov_trainer_tokenize(ov_trainer * t, const std::string & text, bool add_special, std::vector<int32_t> * out) {
    const llama_vocab * vocab = llama_model_get_vocab(t->model);
    int32_t n = llama_tokenize(vocab, text.c_str(), (int32_t) text.size(), nullptr, 0, add_special, true);
    if (n < 0) n = -n;
    out->resize(n);
    int32_t m = llama_tokenize(vocab, text.c_str(), (int32_t) text.size(), out->data(), n, add_special, true);
    if (m < 0) return fmt_err("E_INPUT", "tokenization failed");
    out->resize(m);
    return "";
}

std::string ov_trainer_detokenize(ov_trainer * t, const std::vector<int32_t> & toks, std::string * out) {
    const llama_vocab * vocab = llama_model_get_vocab(t->model);
    std::vector<char> buf(toks.size() * 16 + 64);
    int32_t n = llama_detokenize(vocab, toks.data(), (int32_t) toks.size(), buf.data(), (int32_t) buf.size(), false, false);
    if (n < 0) {
        buf.resize(-n + 1);
        n = llama_detokenize(vocab, toks.data(), (int32_t) toks.size(), buf.data(), (int32_t) buf.size(), false, false);
    }
    if (n < 0) return fmt_err("E_INPUT", "detokenization failed");
    out->assign(buf.data(), n);
    return "";
}

void ov_trainer_device_memory(ov_trainer * t, int64_t * used, int64_t * total) {
    *used = -1;
    *total = -1;
    for (auto * b : t->backends) {
        ggml_backend_dev_t dev = ggml_backend_get_device(b);
        if (!dev || ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_GPU) continue;
        size_t fr = 0, tot = 0;
        ggml_backend_dev_memory(dev, &fr, &tot);
        if (*used < 0) { *used = 0; *total = 0; }
        *used += (int64_t) (tot - fr);
        *total += (int64_t) tot;
    }
}

static bool ov_is_view_op(ggml_op op) {
    return op == GGML_OP_NONE || op == GGML_OP_VIEW || op == GGML_OP_RESHAPE || op == GGML_OP_PERMUTE || op == GGML_OP_TRANSPOSE;
}

// Plans every graph of one full micro-batch (B windows, every position trained) and sums their
// nodes, splits and routed products: the monolithic training graph, or with checkpointing the
// forward, one loss-head chunk and every layer's backward graph.
std::string ov_trainer_placement(ov_trainer * t, ov_placement * out) {
    *out = ov_placement{};
    std::vector<std::pair<ov_graph *, ggml_cgraph *>> gs;
    const int64_t N = t->T * t->B;
    ov_graph * G = nullptr;
    std::string e;
    if (t->params.checkpointing) {
        e = ov_get_graph(t, OV_G_FWD, t->B, 0, -1, &G);
        if (e.empty()) { gs.emplace_back(G, G->gf); e = ov_get_graph(t, OV_G_HEAD, t->B, ov_head_rows(t, t->B, N), -1, &G); }
        if (e.empty()) gs.emplace_back(G, G->gb);
        for (int64_t il = 0; e.empty() && il < t->hp.n_layer; ++il) {
            e = ov_get_graph(t, OV_G_LAYER, t->B, 0, il, &G);
            if (e.empty()) gs.emplace_back(G, G->gb);
        }
    } else {
        e = ov_get_graph(t, OV_G_MONO, t->B, N, -1, &G);
        if (e.empty()) gs.emplace_back(G, G->gb);
    }
    if (!e.empty()) return e;
    const bool gpu = t->backends.size() > 1;
    std::map<std::string, int64_t> per;
    std::map<std::pair<std::string, std::string>, int64_t> cpu;
    for (auto & pg : gs) {
        if (!ov_sched_alloc(t, pg.first->ctx, pg.second)) return fmt_err("E_OOM", "cannot allocate the training graph");
        out->n_splits += ggml_backend_sched_get_n_splits(t->sched);
        if (pg.second == pg.first->gb) out->n_routed += pg.first->n_routed;
        for (int i = 0; i < ggml_graph_n_nodes(pg.second); ++i) {
            ggml_tensor * n = ggml_graph_node(pg.second, i);
            if (ov_is_view_op(n->op)) continue;
            ggml_backend_t be = ggml_backend_sched_get_tensor_backend(t->sched, n);
            per[be ? ggml_backend_name(be) : "?"]++;
            out->n_nodes++;
            if (!gpu || be != t->backend_cpu) continue;
            std::string op = ggml_op_desc(n);
            for (int j = 0; j < GGML_MAX_SRC && n->src[j]; ++j) op += (j ? "," : " (") + std::string(ggml_type_name(n->src[j]->type));
            op += n->src[0] ? ")" : "";
            std::string reason;
            for (auto * b : t->backends) {
                if (b == t->backend_cpu) continue;
                if (!ggml_backend_supports_op(b, n)) {
                    reason = std::string("not supported by ") + ggml_backend_name(b);
                    break;
                }
            }
            if (reason.empty()) {
                const bool host_weight = n->op == GGML_OP_GET_ROWS && n->src[0]->buffer && ggml_backend_buffer_is_host(n->src[0]->buffer) &&
                                         ggml_backend_buffer_get_usage(n->src[0]->buffer) == GGML_BACKEND_BUFFER_USAGE_WEIGHTS;
                reason = host_weight ? "input embedding lookup: llama.cpp keeps the token embeddings in host memory"
                                     : "supported by the GPU backend, scheduled on the CPU (its inputs live there)";
            }
            cpu[{ op, reason }]++;
        }
    }
    for (auto & kv : per) out->nodes.emplace_back(kv.first, kv.second);
    for (auto & kv : cpu) out->cpu_ops.push_back({ kv.first.first, kv.first.second, kv.second });
    return "";
}

static std::string ov_buft_device(ggml_backend_buffer_type_t bt) {
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(bt);
    if (dev && ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU && !ggml_backend_buft_is_host(bt)) return ggml_backend_dev_name(dev);
    return "CPU";
}

void ov_trainer_memory(ov_trainer * t, std::vector<ov_memory_entry> * out) {
    std::map<std::string, ov_memory_entry> m;
    for (auto & kv : t->model->memory_breakdown()) m[ov_buft_device(kv.first)].weights += (int64_t) kv.second;
    for (auto * v : { &t->bufs_param, &t->bufs_grad, &t->bufs_moment }) {
        for (auto * b : *v) m[ov_buft_device(ggml_backend_buffer_get_type(b))].lora += (int64_t) ggml_backend_buffer_get_size(b);
    }
    if (t->buf_ckpt) m[ov_buft_device(ggml_backend_buffer_get_type(t->buf_ckpt))].checkpoint += (int64_t) ggml_backend_buffer_get_size(t->buf_ckpt);
    if (t->sched) {
        for (auto * be : t->backends) {
            m[ov_buft_device(ggml_backend_get_default_buffer_type(be))].compute += (int64_t) ggml_backend_sched_get_buffer_size(t->sched, be);
        }
    }
    out->clear();
    for (auto & kv : m) { kv.second.device = kv.first; out->push_back(kv.second); }
}

// ---------------------------------------------------------------------------------------------
// matmul peak (the benchmark's reference)
// ---------------------------------------------------------------------------------------------

// Throughput of one ggml CPU kernel on an n x n x n product (GFLOP/s, best of reps):
// kind 0 = mul_mat F32 x F32; 1 = mul_mat Q4_0 weight x F32 (the forward through a 4-bit base);
// 2 = OUT_PROD(Q4_0 weight, transposed F32), the input gradient through that base.
double ov_bench_matmul_gflops(int n, int n_threads, int reps, int kind) {
    std::call_once(g_backend_once, [] {
        llama_log_set(ov_llama_log, nullptr);
        llama_backend_init();
    });
    ggml_init_params ip = { 16 * ggml_tensor_overhead() + ggml_graph_overhead(), nullptr, true };
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * a = ggml_new_tensor_2d(ctx, kind == 0 ? GGML_TYPE_F32 : GGML_TYPE_Q4_0, n, n);
    ggml_tensor * b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n, n);
    ggml_tensor * c = kind == 2 ? ggml_out_prod(ctx, a, ggml_transpose(ctx, b)) : ggml_mul_mat(ctx, a, b);
    ggml_cgraph * g = ggml_new_graph(ctx);
    ggml_build_forward_expand(g, c);
    ggml_backend_t be = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    ggml_backend_cpu_set_n_threads(be, n_threads > 0 ? n_threads : (int) std::max(1u, std::thread::hardware_concurrency()));
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, be);
    std::vector<float> data((size_t) n * n);
    uint64_t s = 1;
    for (auto & v : data) v = (float) ((splitmix64(s) >> 40) * (1.0 / 16777216.0)) - 0.5f;
    if (kind == 0) {
        ggml_backend_tensor_set(a, data.data(), 0, ggml_nbytes(a));
    } else {
        std::vector<uint8_t> q(ggml_nbytes(a));
        ggml_quantize_chunk(GGML_TYPE_Q4_0, data.data(), q.data(), 0, n, n, nullptr);
        ggml_backend_tensor_set(a, q.data(), 0, q.size());
    }
    ggml_backend_tensor_set(b, data.data(), 0, ggml_nbytes(b));
    ggml_backend_graph_compute(be, g);  // warm-up
    double best = 0.0;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = ov_clock::now();
        ggml_backend_graph_compute(be, g);
        const double s_el = std::chrono::duration<double>(ov_clock::now() - t0).count();
        best = std::max(best, 2.0 * n * (double) n * n / s_el / 1e9);
    }
    ggml_backend_buffer_free(buf);
    ggml_backend_free(be);
    ggml_free(ctx);
    return best;
}
