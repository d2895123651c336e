// N-API surface of the merge (native/src/merge.cpp): mergeAdapter(options, onProgress) returns
// { promise, cancel }. The merge runs on a libuv pool thread. Progress is delivered through a
// thread-safe function and the merge thread waits until the JS callback has returned, so a
// cancel() called from inside onProgress is seen at the very next tensor (deterministic "cancel
// within one tensor"; the cost is one event-loop round trip per tensor). Every option is required;
// native/ts/binding.ts validates them first, this file re-checks types.
#include <napi.h>

#include "napi_errors.h"

#include "merge.h"

#include <future>
#include <memory>

namespace {

Napi::Error merge_error(Napi::Env env, const std::string & msg) { return ov_napi_error(env, msg); }

std::string req_str(const Napi::Object & o, const char * k) {
    Napi::Value v = o.Get(k);
    if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string(k) + " is required (a string)");
    return v.As<Napi::String>().Utf8Value();
}
double req_num(const Napi::Object & o, const char * k) {
    Napi::Value v = o.Get(k);
    if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(k) + " is required (a number)");
    return v.As<Napi::Number>().DoubleValue();
}
bool req_bool(const Napi::Object & o, const char * k) {
    Napi::Value v = o.Get(k);
    if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string(k) + " is required (a boolean)");
    return v.As<Napi::Boolean>().Value();
}

class MergeWorker : public Napi::AsyncWorker {
public:
    MergeWorker(Napi::Env env, ov_merge_params p, Napi::Function on_progress, std::shared_ptr<std::atomic<bool>> cancel)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), p_(std::move(p)), cancel_(std::move(cancel)) {
        tsfn_ = Napi::ThreadSafeFunction::New(env, on_progress, "overnight-merge-progress", 0, 1);
    }
    Napi::Promise promise() { return deferred_.Promise(); }

    void Execute() override {
        auto cb_error = std::make_shared<std::string>();
        auto report = [this, cb_error](const ov_merge_progress & pr) {
            auto done = std::make_shared<std::promise<void>>();
            std::future<void> fut = done->get_future();
            auto * data = new ov_merge_progress(pr);
            auto cancel = cancel_;
            const napi_status s = tsfn_.BlockingCall(data, [done, cancel, cb_error](Napi::Env env, Napi::Function fn, ov_merge_progress * d) {
                if (env != nullptr && fn != nullptr) {
                    try {
                        auto o = Napi::Object::New(env);
                        o.Set("phase", d->phase);
                        o.Set("done", (double) d->done);
                        o.Set("total", (double) d->total);
                        fn.Call({ o });
                    } catch (const Napi::Error & e) {
                        // a throwing progress callback stops the merge and becomes its error
                        *cb_error = std::string("E_CALLBACK: onProgress threw: ") + e.Message();
                        cancel->store(true);
                    }
                }
                delete d;
                done->set_value();
            });
            if (s != napi_ok) {
                delete data;
                return;
            }
            fut.wait();
        };
        try {
            err_ = ov_merge(p_, cancel_.get(), report, &res_);
        } catch (const std::exception & e) {
            err_ = std::string("E_NATIVE: ") + e.what();
        }
        if (!cb_error->empty() && !err_.empty()) err_ = *cb_error;
    }
    void OnOK() override {
        tsfn_.Release();
        Napi::Env env = Env();
        if (!err_.empty()) {
            deferred_.Reject(merge_error(env, err_).Value());
            return;
        }
        auto r = Napi::Object::New(env);
        r.Set("outPath", p_.out_path);
        r.Set("type", p_.type);
        r.Set("nTensors", (double) res_.n_tensors);
        r.Set("nMerged", (double) res_.n_merged);
        r.Set("nCopied", (double) res_.n_copied);
        r.Set("rank", (double) res_.rank);
        r.Set("alpha", res_.alpha);
        r.Set("bytes", (double) res_.bytes);
        r.Set("neededBytes", (double) res_.needed_bytes);
        r.Set("ms", res_.ms);
        deferred_.Resolve(r);
    }
    void OnError(const Napi::Error & e) override {
        tsfn_.Release();
        deferred_.Reject(e.Value());
    }

private:
    Napi::Promise::Deferred deferred_;
    ov_merge_params p_;
    std::shared_ptr<std::atomic<bool>> cancel_;
    Napi::ThreadSafeFunction tsfn_;
    ov_merge_result res_;
    std::string err_;
};

}  // namespace

Napi::Value ov_merge_adapter_napi(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "mergeAdapter(options, onProgress) expects an options object");
    if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "mergeAdapter(options, onProgress) expects an onProgress function");
    auto o = info[0].As<Napi::Object>();
    ov_merge_params p;
    p.base_path = req_str(o, "basePath");
    p.adapter_path = req_str(o, "adapterPath");
    p.out_path = req_str(o, "outPath");
    p.type = req_str(o, "type");
    p.scale = (float) req_num(o, "scale");
    p.n_threads = (int32_t) req_num(o, "threads");
    p.check_space = req_bool(o, "checkSpace");
    p.overwrite = req_bool(o, "overwrite");
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    auto * w = new MergeWorker(env, p, info[1].As<Napi::Function>(), cancel);
    auto r = Napi::Object::New(env);
    r.Set("promise", w->promise());
    r.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo & ci) {
        cancel->store(true);
        return ci.Env().Undefined();
    }, "cancel"));
    w->Queue();
    return r;
}
