// ModelWrap: the JS-visible native model (Napi::ObjectWrap). Each method validates its arguments, then
// calls one core function. fit() hands the model to a dedicated thread (train_worker.cpp); while it runs,
// every other method answers ERR_BUSY.
#pragma once
#include <napi.h>

#include <memory>

#include "estimators/estimator.h"
#include "model/model.h"
#include "model/train.h"

namespace of::addon {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
   public:
    static Napi::Function Init(Napi::Env env);
    explicit ModelWrap(const Napi::CallbackInfo& info);

    Model& model(Napi::Env env, bool allow_busy = false);  // throws ERR_DISPOSED / ERR_BUSY
    std::unique_ptr<Model> model_;
    int pending_ = 0;  // async predict/evaluate in flight (JS thread only)

   private:
    Napi::Value Parameters(const Napi::CallbackInfo& info);
    Napi::Value Predict(const Napi::CallbackInfo& info);
    Napi::Value PredictAsync(const Napi::CallbackInfo& info);
    Napi::Value EvaluateAsync(const Napi::CallbackInfo& info);
    Napi::Value Evaluate(const Napi::CallbackInfo& info);
    Napi::Value Gradients(const Napi::CallbackInfo& info);
    Napi::Value TrainStep(const Napi::CallbackInfo& info);
    Napi::Value ApplyGradients(const Napi::CallbackInfo& info);
    Napi::Value PerturbationLosses(const Napi::CallbackInfo& info);
    Napi::Value CopyLosses(const Napi::CallbackInfo& info);
    Napi::Value CopyGradients(const Napi::CallbackInfo& info);
    Napi::Value ApplyPerturbationUpdate(const Napi::CallbackInfo& info);
    Napi::Value Fit(const Napi::CallbackInfo& info);
    Napi::Value Cancel(const Napi::CallbackInfo& info);
    Napi::Value Dispose(const Napi::CallbackInfo& info);
    Napi::Value State(const Napi::CallbackInfo& info);
    Napi::Value ExportState(const Napi::CallbackInfo& info);
    Napi::Value ImportState(const Napi::CallbackInfo& info);
    Napi::Value SetFrozen(const Napi::CallbackInfo& info);
    Napi::Value InputGradients(const Napi::CallbackInfo& info);
    Napi::Value SetBackend(const Napi::CallbackInfo& info);
    Napi::Value Backend(const Napi::CallbackInfo& info);
};

// Parsing shared by the methods (model_wrap.cpp).
EstimatorConfig parse_estimator(Napi::Env env, const Napi::Value& v);
OptimizerConfig parse_optimizer(Napi::Env env, const Napi::Value& v);
// x (rows, inputs) for a forward pass; sizes checked against the model.
DataRef parse_inputs(Napi::Env env, const Model& m, const Napi::Value& x, const Napi::Value& rows);
// x (rows, inputs) and y (labels or values) of a data set; validated against the model.
DataRef parse_data(Napi::Env env, const Model& m, const Napi::Value& x, const Napi::Value& y, const Napi::Value& rows);

// Starts fit on a dedicated thread; returns the promise (train_worker.cpp).
Napi::Value start_fit(const Napi::CallbackInfo& info, ModelWrap* self);
// Starts an async predict or evaluate on the libuv pool; returns the promise (infer_worker.cpp).
Napi::Value start_infer(const Napi::CallbackInfo& info, ModelWrap* self, bool evaluate);

}  // namespace of::addon
