// Merge a LoRA adapter into its base model and write the result as GGUF (issue #13, "merged").
//
// Phase 1 (ours): every base tensor W that the adapter targets becomes
//   W' = W + scale * (alpha / rank) * B·A
// computed in F32 from the dequantized W and stored at F16; every other tensor is copied byte for
// byte in its original type; every KV pair is copied (general.file_type = MOSTLY_F16). For type F16
// this file is the result.
// Phase 2 (other types): llama.cpp's own llama_model_quantize turns that F16 intermediate into the
// requested type. Tensors the adapter did not touch are pinned to their original type with
// per-tensor overrides (tt_overrides): the quantizer copies a tensor whose target type equals its
// current type, so they stay byte-identical; allow_requantize stays false, so a tensor that would
// be requantized anyway fails the merge instead of silently losing precision. Progress and cancel
// in this phase come through llama's log callback: the quantizer logs "[ i/ n] name ..." before
// each tensor; the callback reports it and, once cancel is set, throws there, which
// llama_model_quantize catches (it returns 1) after RAII closed its output file.
//
// Files: "<out>.partial" (and "<out>.f16.partial" for the intermediate of a quantized type), both
// removed on any failure or cancel; the final name appears only by rename after an fsync.
#include "merge.h"

#include "ggml.h"
#include "gguf.h"
#include "llama.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

std::string fmt(const char * code, const char * f, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof(buf), f, ap);
    va_end(ap);
    return std::string(code) + ": " + buf;
}

std::string shape_str(const int64_t * ne, int n) {
    std::string s = "[";
    for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

int n_dims_of(const int64_t * ne) {
    int n = GGML_MAX_DIMS;
    while (n > 1 && ne[n - 1] == 1) --n;
    return n;
}

double mib(uint64_t b) { return b / 1048576.0; }

struct gguf_deleter { void operator()(gguf_context * g) const { if (g) gguf_free(g); } };
struct ggml_deleter { void operator()(ggml_context * c) const { if (c) ggml_free(c); } };
using gguf_ptr = std::unique_ptr<gguf_context, gguf_deleter>;
using ggml_ptr = std::unique_ptr<ggml_context, ggml_deleter>;

struct fd_guard {
    int fd = -1;
    ~fd_guard() { if (fd >= 0) close(fd); }
};

// Files that must not survive a failure: removed unless released.
struct partial_files {
    std::vector<std::string> paths;
    ~partial_files() { for (auto & p : paths) unlink(p.c_str()); }
    void release(const std::string & p) { paths.erase(std::remove(paths.begin(), paths.end(), p), paths.end()); }
};

struct type_choice {
    const char * name;
    llama_ftype ftype;
};
const type_choice k_types[] = {
    { "F16", LLAMA_FTYPE_MOSTLY_F16 },
    { "Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0 },
    { "Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K },
    { "Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M },
    { "Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M },
};

std::string write_error(const std::string & path, int err, uint64_t written, uint64_t total) {
    if (err == ENOSPC || err == EDQUOT) {
        return fmt("E_DISK_FULL", "the disk filled up while writing %s (%.1f of %.1f MiB written): %s",
                   path.c_str(), mib(written), mib(total), strerror(err));
    }
    return fmt("E_IO", "cannot write %s: %s", path.c_str(), strerror(err));
}

// Writes everything or fails with *err = errno; *written counts the bytes that did land.
bool write_all(int fd, const void * data, size_t n, int * err, uint64_t * written) {
    const char * p = (const char *) data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            *err = errno;
            return false;
        }
        p += w;
        n -= (size_t) w;
        *written += (uint64_t) w;
    }
    return true;
}

bool read_at(int fd, void * data, size_t n, uint64_t off) {
    char * p = (char *) data;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t) off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= (size_t) r;
        off += (uint64_t) r;
    }
    return true;
}

// One LoRA pair of the adapter, resolved against the base.
struct lora_pair {
    int64_t base_id = -1;
    std::vector<float> a;  // [r][d_in]  (ggml ne = [d_in, r])
    std::vector<float> b;  // [d_out][r] (ggml ne = [r, d_out])
    int64_t r = 0;
};

bool tensor_to_f32(const ggml_tensor * t, std::vector<float> * out) {
    const int64_t n = ggml_nelements(t);
    out->resize((size_t) n);
    if (t->type == GGML_TYPE_F32) {
        memcpy(out->data(), t->data, (size_t) n * sizeof(float));
        return true;
    }
    const ggml_type_traits * tr = ggml_get_type_traits(t->type);
    if (!tr || !tr->to_float) return false;
    tr->to_float(t->data, out->data(), n);
    return true;
}

std::string dir_of(const std::string & p) {
    const size_t s = p.find_last_of('/');
    if (s == std::string::npos) return ".";
    if (s == 0) return "/";
    return p.substr(0, s);
}

std::string base_name(const std::string & p) {
    const size_t s = p.find_last_of('/');
    return s == std::string::npos ? p : p.substr(s + 1);
}

std::string regex_escape(const std::string & s) {
    std::string r;
    for (char c : s) {
        if (strchr("\\^$.|?*+()[]{}", c)) r += '\\';
        r += c;
    }
    return r;
}

// ---- phase 2: llama_model_quantize with progress and cancel through the log callback ----

std::mutex g_quant_mutex;  // the log callback is process-global: one quantization at a time

struct quant_log_state {
    std::thread::id caller;  // progress and cancel only on the thread running llama_model_quantize
    std::mutex mu;           // ggml may log errors from quantization worker threads
    const std::atomic<bool> * cancel = nullptr;
    const ov_merge_progress_cb * progress = nullptr;
    bool thrown = false;
    bool verbose = false;
    std::string last_error;
};

void quant_log(ggml_log_level level, const char * text, void * ud) {
    auto * st = (quant_log_state *) ud;
    {
        std::lock_guard<std::mutex> lock(st->mu);
        if (level == GGML_LOG_LEVEL_ERROR) {
            st->last_error += text;
            if (st->last_error.size() > 4000) st->last_error.erase(0, st->last_error.size() - 4000);
        }
        if (st->verbose || (level == GGML_LOG_LEVEL_ERROR && !st->thrown)) fputs(text, stderr);
    }
    if (std::this_thread::get_id() != st->caller) return;
    int i = 0, n = 0;
    // The quantizer's per-tensor line, logged at the top of its main loop (no destructor or
    // worker thread is active there, so throwing is safe; it is caught in llama_model_quantize).
    if (level == GGML_LOG_LEVEL_INFO && text[0] == '[' && sscanf(text, "[%d/%d]", &i, &n) == 2 && n > 0) {
        // report first: a cancel set from inside the progress callback stops this very tensor
        if (st->progress && *st->progress && !st->thrown) (*st->progress)({ "quantize", (int64_t) i - 1, (int64_t) n });
        if (st->cancel && st->cancel->load() && !st->thrown) {
            st->thrown = true;
            throw std::runtime_error("E_CANCELLED: cancelled");
        }
    }
}

bool verbose_env() {
    const char * v = getenv("OVERNIGHT_NATIVE_VERBOSE");
    return v && v[0] == '1';
}

}  // namespace

std::string ov_merge(const ov_merge_params & p, const std::atomic<bool> * cancel,
                     const ov_merge_progress_cb & progress, ov_merge_result * res) {
    const auto t0 = std::chrono::steady_clock::now();
    auto cancelled = [&] { return cancel && cancel->load(); };

    // ---- options ----
    const type_choice * tc = nullptr;
    for (auto & t : k_types) if (p.type == t.name) tc = &t;
    if (!tc) {
        return fmt("E_INPUT", "type must be one of F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M (got '%s')", p.type.c_str());
    }
    if (!std::isfinite(p.scale)) return fmt("E_INPUT", "scale must be a finite number");
    if (p.n_threads < 0) return fmt("E_INPUT", "threads must be >= 0 (0 = all cores)");
    const int n_threads = p.n_threads > 0 ? p.n_threads : std::max(1u, std::thread::hardware_concurrency());
    if (p.out_path.empty()) return fmt("E_INPUT", "outPath is empty");
    const std::string out_dir = dir_of(p.out_path);
    struct stat st_dir;
    if (stat(out_dir.c_str(), &st_dir) != 0 || !S_ISDIR(st_dir.st_mode)) {
        return fmt("E_IO", "output folder %s does not exist", out_dir.c_str());
    }
    struct stat st_out;
    if (!p.overwrite && stat(p.out_path.c_str(), &st_out) == 0) {
        return fmt("E_EXISTS", "%s already exists (pass overwrite to replace it)", p.out_path.c_str());
    }

    // ---- base model: metadata, tensor infos, size ----
    struct stat st_base;
    if (stat(p.base_path.c_str(), &st_base) != 0) {
        return fmt("E_MODEL", "cannot open base model %s: %s", p.base_path.c_str(), strerror(errno));
    }
    gguf_ptr base(gguf_init_from_file(p.base_path.c_str(), { /*no_alloc =*/ true, /*ctx =*/ nullptr }));
    if (!base) return fmt("E_MODEL", "%s is not a valid GGUF file (bad magic, version or header)", p.base_path.c_str());
    {
        const int64_t k = gguf_find_key(base.get(), "split.count");
        if (k >= 0 && gguf_get_kv_type(base.get(), k) == GGUF_TYPE_UINT16 && gguf_get_val_u16(base.get(), k) > 1) {
            return fmt("E_MODEL", "%s is one part of a split GGUF; merging split models is not supported", p.base_path.c_str());
        }
    }
    const int64_t n_tensors = gguf_get_n_tensors(base.get());
    if (n_tensors == 0) return fmt("E_MODEL", "%s has no tensors", p.base_path.c_str());
    const uint64_t base_data = gguf_get_data_offset(base.get());
    for (int64_t i = 0; i < n_tensors; ++i) {
        const uint64_t end = base_data + gguf_get_tensor_offset(base.get(), i) + gguf_get_tensor_size(base.get(), i);
        if (end > (uint64_t) st_base.st_size) {
            return fmt("E_MODEL", "%s is truncated: tensor %s ends at byte %llu but the file has %llu bytes",
                       p.base_path.c_str(), gguf_get_tensor_name(base.get(), i), (unsigned long long) end,
                       (unsigned long long) st_base.st_size);
        }
    }
    std::string base_arch;
    {
        const int64_t k = gguf_find_key(base.get(), "general.architecture");
        if (k < 0 || gguf_get_kv_type(base.get(), k) != GGUF_TYPE_STRING) {
            return fmt("E_MODEL", "%s has no general.architecture", p.base_path.c_str());
        }
        base_arch = gguf_get_val_str(base.get(), k);
    }

    // ---- adapter: read whole (small), pair lora_a/lora_b, check against the base ----
    ggml_context * actx_raw = nullptr;
    gguf_ptr ad(gguf_init_from_file(p.adapter_path.c_str(), { /*no_alloc =*/ false, /*ctx =*/ &actx_raw }));
    ggml_ptr actx(actx_raw);
    if (!ad) {
        return fmt("E_ADAPTER", "%s is not a readable GGUF LoRA adapter (missing, bad header or truncated)", p.adapter_path.c_str());
    }
    {
        const int64_t k = gguf_find_key(ad.get(), "adapter.type");
        if (k < 0 || gguf_get_kv_type(ad.get(), k) != GGUF_TYPE_STRING || std::string(gguf_get_val_str(ad.get(), k)) != "lora") {
            return fmt("E_ADAPTER", "%s is not a LoRA adapter (adapter.type is not 'lora')", p.adapter_path.c_str());
        }
        const int64_t ka = gguf_find_key(ad.get(), "general.architecture");
        if (ka >= 0 && gguf_get_kv_type(ad.get(), ka) == GGUF_TYPE_STRING && base_arch != gguf_get_val_str(ad.get(), ka)) {
            return fmt("E_MISMATCH", "the adapter is for architecture '%s' but the base model is '%s'",
                       gguf_get_val_str(ad.get(), ka), base_arch.c_str());
        }
    }
    float alpha = 0.0f;
    {
        const int64_t k = gguf_find_key(ad.get(), "adapter.lora.alpha");
        if (k >= 0) {
            if (gguf_get_kv_type(ad.get(), k) != GGUF_TYPE_FLOAT32) return fmt("E_ADAPTER", "adapter.lora.alpha must be a float32");
            alpha = gguf_get_val_f32(ad.get(), k);
        }
    }
    std::map<std::string, lora_pair> pairs;  // by base tensor name
    {
        std::map<std::string, std::pair<ggml_tensor *, ggml_tensor *>> ab;
        for (int64_t ti = 0; ti < gguf_get_n_tensors(ad.get()); ++ti) {
            const std::string name = gguf_get_tensor_name(ad.get(), ti);
            ggml_tensor * t = ggml_get_tensor(actx.get(), name.c_str());
            if (!t) return fmt("E_ADAPTER", "tensor %s of the adapter has no data", name.c_str());
            auto ends = [&](const char * suf) {
                const size_t n = strlen(suf);
                return name.size() > n && name.compare(name.size() - n, n, suf) == 0;
            };
            if (ends(".lora_a")) ab[name.substr(0, name.size() - 7)].first = t;
            else if (ends(".lora_b")) ab[name.substr(0, name.size() - 7)].second = t;
            else return fmt("E_ADAPTER", "unexpected tensor %s in the adapter (expected <name>.lora_a / <name>.lora_b)", name.c_str());
        }
        if (ab.empty()) return fmt("E_ADAPTER", "%s has no LoRA tensors", p.adapter_path.c_str());
        int64_t rank = -1;
        for (auto & kv : ab) {
            ggml_tensor * a = kv.second.first;
            ggml_tensor * b = kv.second.second;
            if (!a || !b) {
                return fmt("E_ADAPTER", "%s.%s is missing from the adapter", kv.first.c_str(), a ? "lora_b" : "lora_a");
            }
            const int64_t id = gguf_find_tensor(base.get(), kv.first.c_str());
            if (id < 0) {
                return fmt("E_MISMATCH", "the adapter targets %s, which the base model does not have: an adapter for a different base model?", kv.first.c_str());
            }
            const int64_t * ne = gguf_get_tensor_ne(base.get(), id);
            const int nd = n_dims_of(ne);
            if (nd != 2 || ggml_n_dims(a) != 2 || ggml_n_dims(b) != 2 || a->ne[0] != ne[0] || b->ne[1] != ne[1] || a->ne[1] != b->ne[0]) {
                return fmt("E_MISMATCH", "%s is %s in the base model, but the adapter's lora_a is %s and lora_b %s (expected lora_a [%lld, r] and lora_b [r, %lld]): an adapter for a different base model?",
                           kv.first.c_str(), shape_str(ne, nd).c_str(), shape_str(a->ne, ggml_n_dims(a)).c_str(),
                           shape_str(b->ne, ggml_n_dims(b)).c_str(), (long long) ne[0], (long long) ne[1]);
            }
            if (rank >= 0 && a->ne[1] != rank) {
                return fmt("E_ADAPTER", "%s has rank %lld but other tensors have rank %lld", kv.first.c_str(), (long long) a->ne[1], (long long) rank);
            }
            rank = a->ne[1];
            lora_pair lp;
            lp.base_id = id;
            lp.r = rank;
            if (!tensor_to_f32(a, &lp.a) || !tensor_to_f32(b, &lp.b)) {
                return fmt("E_ADAPTER", "%s: unsupported LoRA tensor type %s", kv.first.c_str(), ggml_type_name(a->type));
            }
            for (float v : lp.a) if (!std::isfinite(v)) return fmt("E_ADAPTER", "%s.lora_a has non-finite values", kv.first.c_str());
            for (float v : lp.b) if (!std::isfinite(v)) return fmt("E_ADAPTER", "%s.lora_b has non-finite values", kv.first.c_str());
            pairs.emplace(kv.first, std::move(lp));
        }
        res->rank = rank;
    }
    res->alpha = alpha;
    // llama.cpp's convention (llama_adapter_lora): scale * alpha / rank, or scale when alpha is 0
    const float factor = alpha != 0.0f ? p.scale * alpha / (float) res->rank : p.scale;
    actx.reset();  // A and B now live in `pairs`

    // ---- output layout (the F16 intermediate, or the final F16 file) ----
    gguf_ptr out(gguf_init_empty());
    gguf_set_kv(out.get(), base.get());
    {
        // our writer pads to the default alignment; keep the key only when it says the same
        const int64_t k = gguf_find_key(out.get(), "general.alignment");
        if (k >= 0 && (gguf_get_kv_type(out.get(), k) != GGUF_TYPE_UINT32 || gguf_get_val_u32(out.get(), k) != GGUF_DEFAULT_ALIGNMENT)) {
            gguf_remove_key(out.get(), "general.alignment");
        }
    }
    gguf_set_val_u32(out.get(), "general.file_type", (uint32_t) LLAMA_FTYPE_MOSTLY_F16);
    gguf_set_val_str(out.get(), "overnight.merge.adapter", base_name(p.adapter_path).c_str());
    gguf_set_val_f32(out.get(), "overnight.merge.scale", p.scale);
    gguf_set_val_f32(out.get(), "overnight.merge.alpha", alpha);
    gguf_set_val_u32(out.get(), "overnight.merge.rank", (uint32_t) res->rank);

    ggml_ptr mctx(ggml_init({ (size_t) (n_tensors + 1) * ggml_tensor_overhead(), nullptr, /*no_alloc =*/ true }));
    if (!mctx) return fmt("E_OOM", "cannot allocate tensor metadata");
    std::vector<bool> merged((size_t) n_tensors, false);
    for (auto & kv : pairs) merged[(size_t) kv.second.base_id] = true;
    uint64_t untouched_bytes = 0, merged_elems = 0;
    for (int64_t i = 0; i < n_tensors; ++i) {
        const int64_t * ne = gguf_get_tensor_ne(base.get(), i);
        const ggml_type ty = merged[(size_t) i] ? GGML_TYPE_F16 : gguf_get_tensor_type(base.get(), i);
        ggml_tensor * t = ggml_new_tensor(mctx.get(), ty, n_dims_of(ne), ne);
        ggml_set_name(t, gguf_get_tensor_name(base.get(), i));
        gguf_add_tensor(out.get(), t);
        if (merged[(size_t) i]) merged_elems += (uint64_t) ggml_nelements(t);
        else untouched_bytes += gguf_get_tensor_size(base.get(), i);
    }
    const size_t meta_size = gguf_get_meta_size(out.get());
    const uint64_t inter_size = meta_size + gguf_get_tensor_offset(out.get(), n_tensors - 1) +
        GGML_PAD(gguf_get_tensor_size(out.get(), n_tensors - 1), GGUF_DEFAULT_ALIGNMENT);

    // ---- disk space: the F16 file, plus (quantized types) the final file beside it ----
    // The final file is bounded by the untouched tensors plus the merged ones at 8.5 bits per
    // weight (Q8_0, the widest of the quantized types; the K mixes are smaller).
    uint64_t need = inter_size;
    if (tc->ftype != LLAMA_FTYPE_MOSTLY_F16) need += meta_size + untouched_bytes + merged_elems * 34 / 32 + (uint64_t) n_tensors * 32;
    need += need / 100 + (4u << 20);  // 1% + 4 MiB margin
    res->needed_bytes = (int64_t) need;
    if (p.check_space) {
        struct statvfs sv;
        if (statvfs(out_dir.c_str(), &sv) == 0) {
            const uint64_t avail = (uint64_t) sv.f_bavail * (uint64_t) sv.f_frsize;
            if (avail < need) {
                return fmt("E_DISK_FULL", "not enough free space in %s: the %s merge needs about %.1f MiB (%s), %.1f MiB are free; nothing was written",
                           out_dir.c_str(), tc->name, mib(need),
                           tc->ftype == LLAMA_FTYPE_MOSTLY_F16 ? "the merged file" : "the F16 intermediate and the quantized file",
                           mib(avail));
            }
        }
    }
    if (cancelled()) return "E_CANCELLED: cancelled";

    // ---- phase 1: write the F16 file ----
    partial_files partials;
    const std::string final_partial = p.out_path + ".partial";
    const std::string inter_path = tc->ftype == LLAMA_FTYPE_MOSTLY_F16 ? final_partial : p.out_path + ".f16.partial";
    fd_guard in_fd, out_fd;
    in_fd.fd = open(p.base_path.c_str(), O_RDONLY);
    if (in_fd.fd < 0) return fmt("E_MODEL", "cannot open base model %s: %s", p.base_path.c_str(), strerror(errno));
    out_fd.fd = open(inter_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd.fd < 0) return fmt("E_IO", "cannot create %s: %s", inter_path.c_str(), strerror(errno));
    partials.paths.push_back(inter_path);

    uint64_t written = 0;
    int err = 0;
    {
        std::vector<uint8_t> meta(meta_size);
        gguf_get_meta_data(out.get(), meta.data());
        if (!write_all(out_fd.fd, meta.data(), meta.size(), &err, &written)) return write_error(inter_path, err, written, inter_size);
    }
    const size_t chunk = 64u << 20;
    std::vector<uint8_t> buf;
    std::vector<float> w;
    std::vector<ggml_fp16_t> w16;
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT] = { 0 };
    for (int64_t i = 0; i < n_tensors; ++i) {
        if (cancelled()) return "E_CANCELLED: cancelled";
        const char * name = gguf_get_tensor_name(base.get(), i);
        const uint64_t src_off = base_data + gguf_get_tensor_offset(base.get(), i);
        const size_t src_size = gguf_get_tensor_size(base.get(), i);
        size_t out_size = 0;
        if (!merged[(size_t) i]) {
            for (size_t off = 0; off < src_size; off += chunk) {
                if (off > 0 && cancelled()) return "E_CANCELLED: cancelled";
                const size_t n = std::min(chunk, src_size - off);
                buf.resize(n);
                if (!read_at(in_fd.fd, buf.data(), n, src_off + off)) return fmt("E_MODEL", "cannot read tensor %s from %s", name, p.base_path.c_str());
                if (!write_all(out_fd.fd, buf.data(), n, &err, &written)) return write_error(inter_path, err, written, inter_size);
            }
            out_size = src_size;
            res->n_copied++;
        } else {
            const lora_pair & lp = pairs.at(name);
            const ggml_type ty = gguf_get_tensor_type(base.get(), i);
            const int64_t * ne = gguf_get_tensor_ne(base.get(), i);
            const int64_t d_in = ne[0], d_out = ne[1], r = lp.r;
            buf.resize(src_size);
            if (!read_at(in_fd.fd, buf.data(), src_size, src_off)) return fmt("E_MODEL", "cannot read tensor %s from %s", name, p.base_path.c_str());
            w.resize((size_t) (d_in * d_out));
            if (ty == GGML_TYPE_F32) {
                memcpy(w.data(), buf.data(), w.size() * sizeof(float));
            } else {
                const ggml_type_traits * tr = ggml_get_type_traits(ty);
                if (!tr || !tr->to_float) return fmt("E_TYPE", "%s: cannot dequantize type %s", name, ggml_type_name(ty));
                tr->to_float(buf.data(), w.data(), d_in * d_out);
            }
            // W'[o][:] += factor * sum_j B[o][j] * A[j][:], rows split across threads
            auto rows = [&](int64_t o0, int64_t o1) {
                for (int64_t o = o0; o < o1; ++o) {
                    float * wr = w.data() + o * d_in;
                    for (int64_t j = 0; j < r; ++j) {
                        const float c = factor * lp.b[(size_t) (o * r + j)];
                        const float * ar = lp.a.data() + j * d_in;
                        for (int64_t k = 0; k < d_in; ++k) wr[k] += c * ar[k];
                    }
                }
            };
            const int nt = (int) std::min<int64_t>(n_threads, std::max<int64_t>(1, d_out / 16));
            if (nt <= 1) {
                rows(0, d_out);
            } else {
                std::vector<std::thread> ths;
                for (int t = 0; t < nt; ++t) ths.emplace_back(rows, d_out * t / nt, d_out * (t + 1) / nt);
                for (auto & th : ths) th.join();
            }
            for (float v : w) {
                if (!std::isfinite(v)) return fmt("E_ADAPTER", "%s: the merged weights are not finite", name);
            }
            w16.resize(w.size());
            ggml_fp32_to_fp16_row(w.data(), w16.data(), (int64_t) w.size());
            out_size = w16.size() * sizeof(ggml_fp16_t);
            if (!write_all(out_fd.fd, w16.data(), out_size, &err, &written)) return write_error(inter_path, err, written, inter_size);
            res->n_merged++;
        }
        const size_t pad = GGML_PAD(out_size, GGUF_DEFAULT_ALIGNMENT) - out_size;
        if (pad && !write_all(out_fd.fd, zeros, pad, &err, &written)) return write_error(inter_path, err, written, inter_size);
        if (progress) progress({ "merge", i + 1, n_tensors });
    }
    if (fsync(out_fd.fd) != 0) return write_error(inter_path, errno, written, inter_size);
    {
        const int fd = out_fd.fd;
        out_fd.fd = -1;
        if (close(fd) != 0) return write_error(inter_path, errno, written, inter_size);
    }
    res->n_tensors = n_tensors;

    // ---- phase 2: llama.cpp's quantizer, untouched tensors pinned to their type ----
    if (tc->ftype != LLAMA_FTYPE_MOSTLY_F16) {
        if (cancelled()) return "E_CANCELLED: cancelled";
        std::vector<std::string> patterns;
        std::vector<llama_model_tensor_override> overrides;
        for (int64_t i = 0; i < n_tensors; ++i) {
            if (merged[(size_t) i]) continue;
            patterns.push_back("^" + regex_escape(gguf_get_tensor_name(base.get(), i)) + "$");
        }
        {
            int64_t j = 0;
            for (int64_t i = 0; i < n_tensors; ++i) {
                if (merged[(size_t) i]) continue;
                overrides.push_back({ patterns[(size_t) j++].c_str(), gguf_get_tensor_type(base.get(), i) });
            }
        }
        overrides.push_back({ nullptr, GGML_TYPE_COUNT });
        llama_model_quantize_params qp = llama_model_quantize_default_params();
        qp.nthread = n_threads;
        qp.ftype = tc->ftype;
        qp.allow_requantize = false;       // a quantized tensor never gets quantized again
        qp.quantize_output_tensor = true;  // only matters if the adapter touched output.weight
        qp.pure = false;                   // the type's own mix (e.g. Q4_K_M: Q6_K for some tensors)
        qp.tt_overrides = overrides.data();

        partials.paths.push_back(final_partial);
        quant_log_state ls;
        ls.cancel = cancel;
        ls.progress = &progress;
        ls.verbose = verbose_env();
        ls.caller = std::this_thread::get_id();
        uint32_t rc;
        int q_errno = 0;
        {
            std::lock_guard<std::mutex> lock(g_quant_mutex);
            static std::once_flag once;
            std::call_once(once, [] { llama_backend_init(); });
            ggml_log_callback prev_cb = nullptr;
            void * prev_ud = nullptr;
            llama_log_get(&prev_cb, &prev_ud);
            llama_log_set(quant_log, &ls);
            errno = 0;
            rc = llama_model_quantize(inter_path.c_str(), final_partial.c_str(), &qp);
            q_errno = errno;
            llama_log_set(prev_cb, prev_ud);
        }
        if (rc != 0) {
            if (cancelled()) return "E_CANCELLED: cancelled";
            struct statvfs sv;
            const bool full = q_errno == ENOSPC || q_errno == EDQUOT ||
                (statvfs(out_dir.c_str(), &sv) == 0 && (uint64_t) sv.f_bavail * sv.f_frsize < (1u << 20));
            std::string msg = ls.last_error;
            while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
            if (full) return fmt("E_DISK_FULL", "the disk filled up while quantizing into %s: %s", final_partial.c_str(), msg.c_str());
            return fmt("E_QUANTIZE", "llama_model_quantize failed for %s: %s", p.type.c_str(), msg.empty() ? "(no message)" : msg.c_str());
        }
        // llama_model_quantize writes through an ofstream without fsync
        {
            const int fd = open(final_partial.c_str(), O_RDONLY);
            if (fd < 0 || fsync(fd) != 0) {
                const int e = errno;
                if (fd >= 0) close(fd);
                return write_error(final_partial, e, 0, 0);
            }
            close(fd);
        }
        unlink(inter_path.c_str());
        partials.release(inter_path);
        if (progress) progress({ "quantize", n_tensors, n_tensors });
    }

    // ---- publish ----
    if (cancelled()) return "E_CANCELLED: cancelled";
    if (!p.overwrite && stat(p.out_path.c_str(), &st_out) == 0) {
        return fmt("E_EXISTS", "%s appeared while merging; not replaced", p.out_path.c_str());
    }
    if (rename(final_partial.c_str(), p.out_path.c_str()) != 0) {
        return fmt("E_IO", "cannot rename %s to %s: %s", final_partial.c_str(), p.out_path.c_str(), strerror(errno));
    }
    partials.release(final_partial);
    {
        const int dfd = open(out_dir.c_str(), O_RDONLY);
        if (dfd >= 0) { fsync(dfd); close(dfd); }
    }
    struct stat st_fin;
    if (stat(p.out_path.c_str(), &st_fin) == 0) res->bytes = (int64_t) st_fin.st_size;
    res->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return "";
}
