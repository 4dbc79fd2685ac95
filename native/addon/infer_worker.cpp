// predictAsync / evaluateAsync: clean forward passes on the libuv pool (they are short), each with its own
// scratch so several run at once. The model counts them: fit, dispose and every mutator answer ERR_BUSY until
// they finish. Each reads a native copy of its inputs (JS may transfer or shrink the arrays meanwhile) and
// shares ownership of the model. Execute() touches no Napi object; OnOK() never throws (on environment
// teardown, e.g. worker.terminate(), settling the promise fails and is skipped).
#include "addon/args.h"
#include "addon/model_wrap.h"

namespace of::addon {
namespace {

class InferWorker : public Napi::AsyncWorker {
   public:
    InferWorker(Napi::Env env, ModelWrap* self, bool evaluate)
        : Napi::AsyncWorker(env, "oneforward.infer"),
          deferred_(Napi::Promise::Deferred::New(env)),
          model_(self->model_),
          pending_(self->pending_),
          evaluate_(evaluate) {
        ++*pending_;
    }
    ~InferWorker() override { --*pending_; }
    Napi::Promise Promise() { return deferred_.Promise(); }
    OwnedData data;
    std::vector<float> out;      // rows x outputs (predict)
    Napi::ObjectReference keep;  // the model object, until the promise settles

    void Execute() override {
        try {
            const Model& m = *model_;
            status_ = evaluate_ ? m.evaluate(data.ref.x, data.ref.y, data.ref.rows, &loss_, &accuracy_, scratch_)
                                : m.forward(out.data(), data.ref.x, data.ref.rows, scratch_);
        } catch (...) {
            status_ = caught_status();
        }
    }
    void OnOK() override {
        try {
            Napi::Env env = Env();
            if (!status_.ok()) {
                deferred_.Reject(make_error(env, status_).Value());
            } else if (evaluate_) {
                Napi::Object r = Napi::Object::New(env);
                r.Set("loss", loss_);
                r.Set("accuracy", accuracy_);
                deferred_.Resolve(r);
            } else {
                Napi::Float32Array a = Napi::Float32Array::New(env, out.size());
                std::copy(out.begin(), out.end(), a.Data());
                deferred_.Resolve(a);
            }
        } catch (...) {  // JS cannot run (teardown): nobody awaits the promise any more
        }
    }
    void OnError(const Napi::Error& e) override {
        try {
            deferred_.Reject(e.Value());
        } catch (...) {
        }
    }

   private:
    Napi::Promise::Deferred deferred_;
    std::shared_ptr<const Model> model_;
    std::shared_ptr<int> pending_;
    bool evaluate_;
    InferScratch scratch_;
    Status status_;
    double loss_ = 0.0, accuracy_ = 0.0;
};

}  // namespace

// predictAsync(x, rows) -> Promise<Float32Array>; evaluateAsync(x, y, rows) -> Promise<{ loss, accuracy }>
Napi::Value start_infer(const Napi::CallbackInfo& info, ModelWrap* self, bool evaluate) {
    Napi::Env env = info.Env();
    Model& m = self->model(env);
    auto w = std::make_unique<InferWorker>(env, self, evaluate);
    if (evaluate) {
        own_data(env, m, info[0], info[1], info[2], &w->data);
    } else {
        own_inputs(env, m, info[0], info[1], &w->data);
        w->out.resize(size_t(w->data.ref.rows) * size_t(m.outputs));
    }
    w->keep = Napi::Persistent(info.This().As<Napi::Object>());
    Napi::Promise p = w->Promise();
    w.release()->Queue();  // the worker deletes itself after OnOK
    return p;
}

}  // namespace of::addon
