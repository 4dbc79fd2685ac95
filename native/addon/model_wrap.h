// ModelWrap: the JS-visible native model (Napi::ObjectWrap). Each method validates its arguments, then
// calls one core function. fit() hands the model to a dedicated thread (train_worker.cpp); while it runs,
// every other method answers ERR_BUSY. No method runs inside another (a JS loss or a getter it calls), and
// nothing changes the model while async predictions read it: both are ERR_BUSY too.
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "addon/parse.h"
#include "estimators/estimator.h"
#include "model/model.h"
#include "model/train.h"

namespace of::addon {

// What a method may do while the model is busy elsewhere. Read: metadata and parameter views, any time.
// Run: reads the parameters (refused during fit). Snapshot: reads the whole training state, refused during fit
// except in its epoch callback, while training waits (so that it may save the model). Mutate: changes parameters,
// state or structure (also refused while async predictions read them).
enum class Use { Read, Run, Snapshot, Mutate };

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
   public:
    static Napi::Function Init(Napi::Env env);
    explicit ModelWrap(const Napi::CallbackInfo& info);

    Model& model(Napi::Env env, Use use = Use::Run);  // throws ERR_DISPOSED / ERR_BUSY
    // Shared with the native work in flight (fit's thread, async predictions): the model outlives a finalized
    // wrapper, so environment teardown never frees it under a running thread.
    std::shared_ptr<Model> model_;
    std::shared_ptr<int> pending_ = std::make_shared<int>(0);  // async predict/evaluate in flight (JS thread only)

   private:
    bool in_call_ = false;  // an exclusive method is on the stack (JS thread only)
    // Runs Method under rethrow_as_js (errors.h). An exclusive one runs with in_call_ set, and is refused (ERR_BUSY)
    // while another is on the stack; the others (metadata, views, cancel) may run from inside one.
    template <Napi::Value (ModelWrap::*Method)(const Napi::CallbackInfo&), bool Exclusive = true>
    Napi::Value Enter(const Napi::CallbackInfo& info);

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
    Napi::Value Fit(const Napi::CallbackInfo& info);  // train_worker.cpp: starts fit on its own thread
    Napi::Value Cancel(const Napi::CallbackInfo& info);
    Napi::Value Dispose(const Napi::CallbackInfo& info);
    Napi::Value State(const Napi::CallbackInfo& info);
    Napi::Value ExportState(const Napi::CallbackInfo& info);
    Napi::Value ImportState(const Napi::CallbackInfo& info);
    Napi::Value SetFrozen(const Napi::CallbackInfo& info);
    Napi::Value InputGradients(const Napi::CallbackInfo& info);
    Napi::Value SetBackend(const Napi::CallbackInfo& info);
    Napi::Value Backend(const Napi::CallbackInfo& info);
    Napi::Value CheckIdle(const Napi::CallbackInfo& info);
    Napi::Value MemoryEstimate(const Napi::CallbackInfo& info);
};

// describeLayers(spec) -> { layers: [{ output, tensors }], error? }: the layout of spec.layers (describe.cpp).
Napi::Value DescribeLayersJs(const Napi::CallbackInfo& info);

// Starts an async predict or evaluate on the libuv pool; returns the promise (infer_worker.cpp).
Napi::Value start_infer(const Napi::CallbackInfo& info, ModelWrap* self, bool evaluate);

}  // namespace of::addon
