// predictAsync / evaluateAsync: clean forward passes on the libuv pool (they are short), each with its own
// scratch so several run at once. The model counts them: fit and dispose answer ERR_BUSY until they finish.
// Execute() touches no Napi object.
#include "addon/args.h"
#include "addon/model_wrap.h"

namespace of::addon {
namespace {

class InferWorker : public Napi::AsyncWorker {
   public:
    InferWorker(Napi::Env env, ModelWrap* self, DataRef data, bool evaluate, Napi::Float32Array out)
        : Napi::AsyncWorker(env, "oneforward.infer"),
          deferred_(Napi::Promise::Deferred::New(env)),
          self_(self),
          data_(data),
          evaluate_(evaluate) {
        if (!evaluate_) out_ = Napi::Persistent(out);
        self_->pending_++;
    }
    ~InferWorker() override { self_->pending_--; }
    Napi::Promise Promise() { return deferred_.Promise(); }
    std::vector<Napi::Reference<Napi::Value>> keep;  // the model object and the input arrays

    void Execute() override {
        try {
            const Model& m = *self_->model_;
            status_ = evaluate_ ? m.evaluate(data_.x, data_.y, data_.rows, &loss_, &accuracy_, scratch_)
                                : m.forward(out_data_, data_.x, data_.rows, scratch_);
        } catch (const std::bad_alloc&) {
            status_ = {StatusCode::OutOfMemory, "out of memory"};
        } catch (const std::exception& e) {
            status_ = {StatusCode::Internal, e.what()};
        } catch (...) {
            status_ = {StatusCode::Internal, "unknown native exception"};
        }
    }
    void OnOK() override {
        Napi::Env env = Env();
        if (!status_.ok()) {
            deferred_.Reject(make_error(env, status_).Value());
        } else if (evaluate_) {
            Napi::Object r = Napi::Object::New(env);
            r.Set("loss", loss_);
            r.Set("accuracy", accuracy_);
            deferred_.Resolve(r);
        } else {
            deferred_.Resolve(out_.Value());
        }
    }
    void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

    float* out_data_ = nullptr;

   private:
    Napi::Promise::Deferred deferred_;
    ModelWrap* self_;
    DataRef data_;
    bool evaluate_;
    Napi::Reference<Napi::Float32Array> out_;
    InferScratch scratch_;
    Status status_;
    double loss_ = 0.0, accuracy_ = 0.0;
};

}  // namespace

// predictAsync(x, rows) -> Promise<Float32Array>; evaluateAsync(x, y, rows) -> Promise<{ loss, accuracy }>
Napi::Value start_infer(const Napi::CallbackInfo& info, ModelWrap* self, bool evaluate) {
    Napi::Env env = info.Env();
    Model& m = self->model(env);
    DataRef d;
    Napi::Float32Array out;
    if (evaluate) {
        d = parse_data(env, m, info[0], info[1], info[2]);
    } else {
        d = parse_inputs(env, m, info[0], info[1]);
        out = Napi::Float32Array::New(env, size_t(d.rows) * m.outputs);
    }
    auto* w = new InferWorker(env, self, d, evaluate, out);
    if (!evaluate) w->out_data_ = out.Data();
    for (int i : {0, 1})
        if (info[i].IsObject()) w->keep.push_back(Napi::Persistent(info[i]));
    w->keep.push_back(Napi::Persistent(Napi::Value(info.This())));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
}

}  // namespace of::addon
