// N-API surface of the trainer. Only native/ts/binding.ts loads this module.
// Long operations (open, step, grad, evaluate, saveAdapter, probe, benchMatmul) run on the libuv
// thread pool through PromiseWorker and settle a Promise; the JS thread never blocks on ggml.
// Errors from trainer.cpp are "CODE: message" strings; they become JS Errors with .code = CODE.
// One long operation per trainer at a time (E_BUSY otherwise); cancel() is safe at any time.
#include <napi.h>

#include "napi_errors.h"

#include "trainer.h"

#include <sys/resource.h>

#include <functional>
#include <memory>

Napi::Value ov_merge_adapter_napi(const Napi::CallbackInfo & info);  // merge_addon.cpp

namespace {

Napi::Error make_error(Napi::Env env, const std::string & msg) { return ov_napi_error(env, msg); }

class PromiseWorker : public Napi::AsyncWorker {
public:
    using Work = std::function<std::string()>;
    using Done = std::function<Napi::Value(Napi::Env)>;
    PromiseWorker(Napi::Env env, Work work, Done done, std::function<void()> finally)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)),
          work_(std::move(work)), done_(std::move(done)), finally_(std::move(finally)) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
        try {
            err_ = work_();
        } catch (const std::exception & e) {
            err_ = std::string("E_NATIVE: ") + e.what();
        }
    }
    void OnOK() override {
        if (finally_) finally_();
        Napi::Env env = Env();
        if (!err_.empty()) {
            deferred_.Reject(make_error(env, err_).Value());
            return;
        }
        deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    }
    void OnError(const Napi::Error & e) override {
        if (finally_) finally_();
        deferred_.Reject(e.Value());
    }
private:
    Napi::Promise::Deferred deferred_;
    Work work_;
    Done done_;
    std::function<void()> finally_;
    std::string err_;
};

std::vector<int32_t> to_i32(const Napi::Value & v, const char * what) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an Int32Array");
    }
    auto a = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

ov_window to_window(const Napi::Value & v) {
    if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "window must be an object {tokens, labels, segments?}");
    auto o = v.As<Napi::Object>();
    ov_window w;
    w.tokens = to_i32(o.Get("tokens"), "window.tokens");
    w.labels = to_i32(o.Get("labels"), "window.labels");
    Napi::Value s = o.Get("segments");
    if (!s.IsUndefined() && !s.IsNull()) w.segments = to_i32(s, "window.segments");
    // optional mask (label convention 2): mask[t] == 0 means "not trained" whatever labels[t] says
    Napi::Value m = o.Get("mask");
    if (!m.IsUndefined() && !m.IsNull()) {
        std::vector<int32_t> mask = to_i32(m, "window.mask");
        if (mask.size() != w.labels.size()) throw Napi::RangeError::New(v.Env(), "window.mask must have one entry per label");
        for (size_t i = 0; i < mask.size(); ++i) if (mask[i] == 0) w.labels[i] = -1;
    }
    return w;
}

std::vector<ov_window> to_windows(const Napi::Value & v) {
    if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "windows must be an array");
    auto a = v.As<Napi::Array>();
    std::vector<ov_window> r;
    for (uint32_t i = 0; i < a.Length(); ++i) r.push_back(to_window(a.Get(i)));
    return r;
}

// A required numeric field: the caller (native/ts/binding.ts) passes every value explicitly, so
// a missing or non-numeric field is a TypeError naming it; the addon holds no defaults (the
// contract does: contract/runs.ts runConfigDefaults / optimizerDefaults).
double num(const Napi::Object & o, const char * k) {
    Napi::Value v = o.Get(k);
    if (v.IsUndefined()) throw Napi::TypeError::New(o.Env(), std::string(k) + " is required (a number)");
    if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(k) + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
}

class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(env, "Trainer", {
            InstanceMethod("open", &TrainerWrap::Open),
            InstanceMethod("step", &TrainerWrap::Step),
            InstanceMethod("grad", &TrainerWrap::Grad),
            InstanceMethod("evaluate", &TrainerWrap::Evaluate),
            InstanceMethod("referenceLoss", &TrainerWrap::ReferenceLoss),
            InstanceMethod("loras", &TrainerWrap::Loras),
            InstanceMethod("getTensor", &TrainerWrap::GetTensor),
            InstanceMethod("setTensor", &TrainerWrap::SetTensor),
            InstanceMethod("getState", &TrainerWrap::GetState),
            InstanceMethod("setState", &TrainerWrap::SetState),
            InstanceMethod("saveAdapter", &TrainerWrap::SaveAdapter),
            InstanceMethod("probe", &TrainerWrap::Probe),
            InstanceMethod("tokenize", &TrainerWrap::Tokenize),
            InstanceMethod("detokenize", &TrainerWrap::Detokenize),
            InstanceMethod("cancel", &TrainerWrap::Cancel),
            InstanceMethod("deviceMemory", &TrainerWrap::DeviceMemory),
            InstanceMethod("memory", &TrainerWrap::Memory),
            InstanceMethod("placement", &TrainerWrap::Placement),
            InstanceMethod("close", &TrainerWrap::Close),
        });
    }
    explicit TrainerWrap(const Napi::CallbackInfo & info) : Napi::ObjectWrap<TrainerWrap>(info) {}
    ~TrainerWrap() override {
        if (t_ && !busy_) ov_trainer_free(t_);
    }

private:
    ov_trainer * t_ = nullptr;
    bool busy_ = false;

    void need_idle(Napi::Env env, bool need_open = true) {
        if (busy_) throw make_error(env, "E_BUSY: another trainer operation is still running");
        if (need_open && !t_) throw make_error(env, "E_STATE: the trainer is not open");
    }
    Napi::Value start(Napi::Env env, PromiseWorker::Work work, PromiseWorker::Done done) {
        busy_ = true;
        Napi::Reference<Napi::Value> * self = new Napi::Reference<Napi::Value>(Napi::Persistent(Value().As<Napi::Value>()));
        auto * w = new PromiseWorker(env, std::move(work), std::move(done), [this, self] { busy_ = false; self->Reset(); delete self; });
        Napi::Promise p = w->promise();
        w->Queue();
        return p;
    }

    Napi::Value Open(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env, false);
        if (t_) throw make_error(env, "E_STATE: the trainer is already open");
        if (!info[0].IsObject()) throw Napi::TypeError::New(env, "open(options) expects an object");
        auto o = info[0].As<Napi::Object>();
        ov_open_params p;
        Napi::Value mp = o.Get("modelPath");
        if (!mp.IsString()) throw Napi::TypeError::New(env, "modelPath must be a string");
        p.model_path = mp.As<Napi::String>().Utf8Value();
        Napi::Value tg = o.Get("targets");
        if (!tg.IsArray()) throw Napi::TypeError::New(env, "targets is required (an array of LoRA target names)");
        {
            auto a = tg.As<Napi::Array>();
            for (uint32_t i = 0; i < a.Length(); ++i) {
                Napi::Value s = a.Get(i);
                if (!s.IsString()) throw Napi::TypeError::New(env, "targets must be strings");
                p.targets.push_back(s.As<Napi::String>().Utf8Value());
            }
        }
        p.rank = (int32_t) num(o, "rank");
        p.alpha = (float) num(o, "alpha");
        p.seed = (uint64_t) num(o, "seed");
        p.seq_len = (int32_t) num(o, "seqLen");
        p.n_threads = (int32_t) num(o, "threads");
        p.n_gpu_layers = (int32_t) num(o, "gpuLayers");
        p.backward_route = (int32_t) num(o, "backwardRoute");
        if (p.backward_route < 0 || p.backward_route > 2) throw Napi::TypeError::New(env, "backwardRoute must be 0 (auto), 1 (dequantize) or 2 (OUT_PROD)");
        p.route_chunk_bytes = (int64_t) num(o, "routeChunkMiB") * 1048576;
        if (p.route_chunk_bytes < 0) throw Napi::TypeError::New(env, "routeChunkMiB must be >= 0 (0 = never split)");
        Napi::Value ck = o.Get("checkpointing");
        if (ck.IsUndefined()) throw Napi::TypeError::New(env, "checkpointing is required (a boolean)");
        if (!ck.IsBoolean()) throw Napi::TypeError::New(env, "checkpointing must be a boolean");
        p.checkpointing = ck.As<Napi::Boolean>().Value();
        p.loss_chunk = (int32_t) num(o, "lossChunk");
        p.micro_batch = (int32_t) num(o, "microBatch");
        auto info_out = std::make_shared<ov_model_info>();
        return start(env,
            [this, p, info_out] { return ov_trainer_open(p, &t_, info_out.get()); },
            [info_out](Napi::Env env) -> Napi::Value {
                auto r = Napi::Object::New(env);
                r.Set("arch", info_out->arch);
                r.Set("desc", info_out->desc);
                r.Set("nVocab", (double) info_out->n_vocab);
                r.Set("nEmbd", (double) info_out->n_embd);
                r.Set("nLayer", (double) info_out->n_layer);
                r.Set("nHead", (double) info_out->n_head);
                r.Set("nHeadKv", (double) info_out->n_head_kv);
                r.Set("nFf", (double) info_out->n_ff);
                r.Set("nCtxTrain", (double) info_out->n_ctx_train);
                r.Set("nLoraParams", (double) info_out->n_lora_params);
                r.Set("backend", info_out->backend);
                auto types = Napi::Array::New(env);
                for (size_t i = 0; i < info_out->weight_types.size(); ++i) types.Set((uint32_t) i, info_out->weight_types[i]);
                r.Set("weightTypes", types);
                return r;
            });
    }

    static Napi::Value step_result(Napi::Env env, const ov_step_result & s) {
        auto r = Napi::Object::New(env);
        r.Set("loss", s.loss);
        r.Set("nTrained", (double) s.n_trained);
        r.Set("ms", s.ms);
        r.Set("gradNorm", s.grad_norm);
        return r;
    }

    Napi::Value Step(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        auto wins = std::make_shared<std::vector<ov_window>>(to_windows(info[0]));
        if (!info[1].IsObject()) throw Napi::TypeError::New(env, "step(windows, adamw) expects an options object");
        auto o = info[1].As<Napi::Object>();
        ov_adamw a;
        a.lr = (float) num(o, "lr");
        a.beta1 = (float) num(o, "beta1");
        a.beta2 = (float) num(o, "beta2");
        a.eps = (float) num(o, "eps");
        a.weight_decay = (float) num(o, "weightDecay");
        a.clip_norm = (float) num(o, "clipNorm");
        auto res = std::make_shared<ov_step_result>();
        ov_trainer * t = t_;
        return start(env, [t, wins, a, res] { return ov_trainer_step(t, *wins, a, res.get()); },
                     [res](Napi::Env env) { return step_result(env, *res); });
    }

    Napi::Value Grad(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        auto w = std::make_shared<ov_window>(to_window(info[0]));
        auto res = std::make_shared<ov_step_result>();
        ov_trainer * t = t_;
        return start(env, [t, w, res] { return ov_trainer_grad(t, *w, res.get()); },
                     [res](Napi::Env env) { return step_result(env, *res); });
    }

    Napi::Value Evaluate(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        auto wins = std::make_shared<std::vector<ov_window>>(to_windows(info[0]));
        auto sum = std::make_shared<double>(0.0);
        auto n = std::make_shared<int64_t>(0);
        ov_trainer * t = t_;
        return start(env, [t, wins, sum, n] { return ov_trainer_eval(t, *wins, sum.get(), n.get()); },
                     [sum, n](Napi::Env env) -> Napi::Value {
                         auto r = Napi::Object::New(env);
                         r.Set("lossSum", *sum);
                         r.Set("nTrained", (double) *n);
                         return r;
                     });
    }

    Napi::Value ReferenceLoss(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        auto w = std::make_shared<ov_window>(to_window(info[0]));
        auto sum = std::make_shared<double>(0.0);
        auto n = std::make_shared<int64_t>(0);
        ov_trainer * t = t_;
        return start(env, [t, w, sum, n] { return ov_trainer_reference_loss(t, *w, sum.get(), n.get()); },
                     [sum, n](Napi::Env env) -> Napi::Value {
                         auto r = Napi::Object::New(env);
                         r.Set("lossSum", *sum);
                         r.Set("nTrained", (double) *n);
                         return r;
                     });
    }

    Napi::Value Loras(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        auto ls = ov_trainer_loras(t_);
        auto arr = Napi::Array::New(env, ls.size());
        for (size_t i = 0; i < ls.size(); ++i) {
            auto o = Napi::Object::New(env);
            o.Set("name", ls[i].name);
            o.Set("dIn", (double) ls[i].d_in);
            o.Set("dOut", (double) ls[i].d_out);
            arr.Set((uint32_t) i, o);
        }
        return arr;
    }

    Napi::Value GetTensor(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        std::vector<float> v;
        std::string e = ov_trainer_get_tensor(t_, info[0].ToString().Utf8Value(), info[1].ToString().Utf8Value(), &v);
        if (!e.empty()) throw make_error(env, e);
        auto out = Napi::Float32Array::New(env, v.size());
        std::copy(v.begin(), v.end(), out.Data());
        return out;
    }

    Napi::Value SetTensor(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
            throw Napi::TypeError::New(env, "setTensor(name, kind, data) expects a Float32Array");
        }
        auto a = info[2].As<Napi::Float32Array>();
        std::vector<float> v(a.Data(), a.Data() + a.ElementLength());
        std::string e = ov_trainer_set_tensor(t_, info[0].ToString().Utf8Value(), info[1].ToString().Utf8Value(), v);
        if (!e.empty()) throw make_error(env, e);
        return env.Undefined();
    }

    Napi::Value GetState(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        std::vector<uint8_t> st;
        int64_t at = 0;
        std::string e = ov_trainer_get_state(t_, &st, &at);
        if (!e.empty()) throw make_error(env, e);
        auto r = Napi::Object::New(env);
        r.Set("state", Napi::Buffer<uint8_t>::Copy(env, st.data(), st.size()));
        r.Set("adamT", (double) at);
        return r;
    }

    Napi::Value SetState(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "setState(buffer, adamT) expects a Buffer");
        auto b = info[0].As<Napi::Buffer<uint8_t>>();
        std::vector<uint8_t> st(b.Data(), b.Data() + b.Length());
        std::string e = ov_trainer_set_state(t_, st, (int64_t) info[1].ToNumber().DoubleValue());
        if (!e.empty()) throw make_error(env, e);
        return env.Undefined();
    }

    Napi::Value SaveAdapter(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        std::string path = info[0].ToString().Utf8Value();
        std::vector<std::pair<std::string, std::string>> kv;
        if (info[1].IsObject()) {
            auto o = info[1].As<Napi::Object>();
            auto keys = o.GetPropertyNames();
            for (uint32_t i = 0; i < keys.Length(); ++i) {
                std::string k = keys.Get(i).ToString().Utf8Value();
                kv.push_back({ k, o.Get(k).ToString().Utf8Value() });
            }
        }
        ov_trainer * t = t_;
        return start(env, [t, path, kv] { return ov_trainer_save_adapter(t, path, kv); }, nullptr);
    }

    Napi::Value Probe(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        if (!info[0].IsObject()) throw Napi::TypeError::New(env, "probe(options) expects an object");
        auto o = info[0].As<Napi::Object>();
        ov_probe_params p;
        p.prompt = to_i32(o.Get("prompt"), "prompt");
        p.max_tokens = (int32_t) num(o, "maxTokens");
        p.temperature = (float) num(o, "temperature");
        p.seed = (uint32_t) num(o, "seed");
        Napi::Value ap = o.Get("adapterPath");
        if (ap.IsString()) p.adapter_path = ap.As<Napi::String>().Utf8Value();
        auto toks = std::make_shared<std::vector<int32_t>>();
        auto text = std::make_shared<std::string>();
        ov_trainer * t = t_;
        return start(env, [t, p, toks, text] { return ov_trainer_probe(t, p, toks.get(), text.get()); },
                     [toks, text](Napi::Env env) -> Napi::Value {
                         auto r = Napi::Object::New(env);
                         auto a = Napi::Int32Array::New(env, toks->size());
                         std::copy(toks->begin(), toks->end(), a.Data());
                         r.Set("tokens", a);
                         r.Set("text", *text);
                         return r;
                     });
    }

    Napi::Value Tokenize(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        std::vector<int32_t> v;
        std::string e = ov_trainer_tokenize(t_, info[0].ToString().Utf8Value(), info[1].ToBoolean().Value(), &v);
        if (!e.empty()) throw make_error(env, e);
        auto a = Napi::Int32Array::New(env, v.size());
        std::copy(v.begin(), v.end(), a.Data());
        return a;
    }

    Napi::Value Detokenize(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        std::string s;
        std::string e = ov_trainer_detokenize(t_, to_i32(info[0], "tokens"), &s);
        if (!e.empty()) throw make_error(env, e);
        return Napi::String::New(env, s);
    }

    Napi::Value Cancel(const Napi::CallbackInfo & info) {
        if (t_) ov_trainer_cancel(t_, info.Length() == 0 || info[0].ToBoolean().Value());
        return info.Env().Undefined();
    }

    Napi::Value DeviceMemory(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        int64_t used = -1, total = -1;
        if (t_ && !busy_) ov_trainer_device_memory(t_, &used, &total);
        auto r = Napi::Object::New(env);
        r.Set("used", (double) used);
        r.Set("total", (double) total);
        return r;
    }

    // the trainer's own buffers per device; [] while an operation runs
    Napi::Value Memory(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        std::vector<ov_memory_entry> m;
        if (t_ && !busy_) ov_trainer_memory(t_, &m);
        auto r = Napi::Array::New(env);
        for (size_t i = 0; i < m.size(); ++i) {
            auto o = Napi::Object::New(env);
            o.Set("device", m[i].device);
            o.Set("weights", (double) m[i].weights);
            o.Set("lora", (double) m[i].lora);
            o.Set("compute", (double) m[i].compute);
            o.Set("checkpoint", (double) m[i].checkpoint);
            r.Set((uint32_t) i, o);
        }
        return r;
    }

    Napi::Value Placement(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env);
        ov_placement pl;
        std::string e = ov_trainer_placement(t_, &pl);
        if (!e.empty()) throw make_error(env, e);
        auto r = Napi::Object::New(env);
        auto nodes = Napi::Object::New(env);
        for (auto & kv : pl.nodes) nodes.Set(kv.first, (double) kv.second);
        r.Set("nodes", nodes);
        auto ops = Napi::Array::New(env);
        for (size_t i = 0; i < pl.cpu_ops.size(); ++i) {
            auto o = Napi::Object::New(env);
            o.Set("op", pl.cpu_ops[i].op);
            o.Set("reason", pl.cpu_ops[i].reason);
            o.Set("count", (double) pl.cpu_ops[i].count);
            ops.Set((uint32_t) i, o);
        }
        r.Set("cpuOps", ops);
        r.Set("nNodes", (double) pl.n_nodes);
        r.Set("nSplits", (double) pl.n_splits);
        r.Set("nRouted", (double) pl.n_routed);
        return r;
    }

    Napi::Value Close(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        need_idle(env, false);
        if (t_) ov_trainer_free(t_);
        t_ = nullptr;
        return env.Undefined();
    }
};

Napi::Value BenchMatmul(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    const int n = info[0].ToNumber().Int32Value();
    const int threads = info[1].ToNumber().Int32Value();
    const int reps = info[2].ToNumber().Int32Value();
    const int kind = info.Length() > 3 ? info[3].ToNumber().Int32Value() : 0;
    if (n < 32 || n > 8192 || n % 32 != 0 || reps < 1 || kind < 0 || kind > 2)
        throw make_error(env, "E_INPUT: benchMatmul(n: a multiple of 32 in [32, 8192], threads, reps >= 1, kind 0|1|2)");
    auto out = std::make_shared<double>(0.0);
    auto * w = new PromiseWorker(env, [=] { *out = ov_bench_matmul_gflops(n, threads, reps, kind); return std::string(); },
                                 [out](Napi::Env env) { return Napi::Number::New(env, *out); }, nullptr);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

Napi::Value PeakRss(const Napi::CallbackInfo & info) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
#ifdef __APPLE__
    return Napi::Number::New(info.Env(), (double) ru.ru_maxrss);          // bytes on macOS
#else
    return Napi::Number::New(info.Env(), (double) ru.ru_maxrss * 1024.0); // KiB on Linux
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("Trainer", TrainerWrap::Init(env));
    exports.Set("benchMatmul", Napi::Function::New(env, BenchMatmul));
    exports.Set("mergeAdapter", Napi::Function::New(env, ov_merge_adapter_napi));
    exports.Set("peakRss", Napi::Function::New(env, PeakRss));
    return exports;
}

}  // namespace

NODE_API_MODULE(overnight_native, Init)
