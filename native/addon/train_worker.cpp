// fit() off the event loop: a dedicated std::thread per call (not the 4-thread libuv pool, which a server
// needs for its own I/O) runs the native epoch loop; progress and epoch events come back through a
// thread-safe function; the promise settles in the TSFN finalizer, on the JS thread, after the thread ends.
// Its queue is bounded (kQueue events) and every event is posted blocking: when JS falls behind (a slow
// onBatchEnd), training waits instead of queueing without limit, and no event is dropped.
// The thread touches no Napi object. Input arrays are held by references for the duration.
#include <thread>

#include <future>

#include "addon/args.h"
#include "addon/js_loss.h"
#include "addon/model_wrap.h"

namespace of::addon {
namespace {

// A loss request from the training thread; it waits on `done` while the JS thread answers.
struct LossRequest {
    const float* outputs;
    Targets y;
    int R, C, rep;
    float* loss;
    Status status;
    std::promise<void> done;
};

struct Event {
    bool is_epoch;
    ProgressEvent progress;
    EpochStats epoch;
    LossRequest* loss = nullptr;
    std::string diverged;  // non-empty: a divergence report (progress.epoch / progress.step say where)
    bool is_batch = false;
    BatchEvent batch;
};

constexpr size_t kQueue = 1024;

struct FitJob;
void call_js(Napi::Env env, Napi::Function, FitJob* job, Event* ev);
using Tsfn = Napi::TypedThreadSafeFunction<FitJob, Event, call_js>;

struct FitJob {
    explicit FitJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise::Deferred deferred;
    Model* model = nullptr;
    std::vector<Napi::Reference<Napi::Value>> keep;  // the model object and the data arrays
    Napi::FunctionReference on_progress, on_epoch, on_diverged, on_batch, loss_fn;
    Napi::Reference<Napi::Value> callback_error;      // first exception thrown by a JS callback
    DataRef train, val;
    bool has_val = false;
    FitConfig cfg;
    Tsfn tsfn;
    std::thread thread;
    Status status;
    std::vector<EpochStats> epochs;
};

Napi::Object epoch_object(Napi::Env env, const EpochStats& e) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("epoch", e.epoch);
    o.Set("loss", e.loss);
    o.Set("accuracy", e.accuracy);
    if (e.has_val) {
        o.Set("valLoss", e.val_loss);
        o.Set("valAccuracy", e.val_accuracy);
    }
    o.Set("seconds", e.seconds);
    o.Set("steps", double(e.steps));
    o.Set("lr", e.lr);
    return o;
}

Napi::Object batch_object(Napi::Env env, const BatchEvent& b) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("epoch", b.epoch);
    o.Set("batch", double(b.batch));
    o.Set("batches", double(b.batches));
    o.Set("loss", b.loss);
    o.Set("accuracy", b.accuracy);
    o.Set("lr", b.lr);
    return o;
}

void call_js(Napi::Env env, Napi::Function, FitJob* job, Event* ev) {
    std::unique_ptr<Event> owned(ev);
    if (LossRequest* q = ev->loss) {  // always answered: the training thread is waiting for it
        q->status = env == nullptr ? Status{StatusCode::Abort, "shutting down"}
                                   : call_js_loss(env, job->loss_fn.Value(), q->outputs, q->y, q->R, q->C, q->rep,
                                                  q->loss, &job->callback_error);
        if (!job->callback_error.IsEmpty()) job->model->cancel.store(true);
        q->done.set_value();
        return;
    }
    if (env == nullptr) return;  // shutting down
    try {
        if (!ev->diverged.empty()) {
            if (!job->on_diverged.IsEmpty()) {
                Napi::Object o = Napi::Object::New(env);
                o.Set("reason", ev->diverged);
                o.Set("epoch", ev->progress.epoch);
                o.Set("step", double(ev->progress.step));
                job->on_diverged.Call({o});
            }
        } else if (ev->is_batch) {  // none after a callback threw: fit is stopping and rejects with that error
            if (!job->on_batch.IsEmpty() && job->callback_error.IsEmpty()) job->on_batch.Call({batch_object(env, ev->batch)});
        } else if (ev->is_epoch) {
            if (!job->on_epoch.IsEmpty()) job->on_epoch.Call({epoch_object(env, ev->epoch)});
        } else if (!job->on_progress.IsEmpty()) {
            const ProgressEvent& p = ev->progress;
            Napi::Object o = Napi::Object::New(env);
            o.Set("epoch", p.epoch);
            o.Set("epochs", p.epochs);
            o.Set("step", double(p.step));
            o.Set("steps", double(p.steps));
            o.Set("loss", p.loss);
            o.Set("accuracy", p.accuracy);
            o.Set("samplesPerSecond", p.samples_per_sec);
            o.Set("elapsed", p.elapsed);
            o.Set("eta", p.eta);
            o.Set("lr", p.lr);
            job->on_progress.Call({o});
        }
    } catch (const Napi::Error& e) {
        // A throwing callback stops the run; fit() rejects with that error.
        if (job->callback_error.IsEmpty()) job->callback_error = Napi::Reference<Napi::Value>::New(e.Value(), 1);
        job->model->cancel.store(true);
    }
}

// Queues ev for the JS thread, waiting while the queue is full; false (ev freed) once the function is closing.
bool post(FitJob* j, Event* ev) {
    if (j->tsfn.BlockingCall(ev) == napi_ok) return true;
    delete ev;
    return false;
}

void finish(Napi::Env env, void*, FitJob* job) {
    std::unique_ptr<FitJob> owned(job);
    job->thread.join();
    job->model->busy.store(false);
    job->model->cancel.store(false);
    if (!job->callback_error.IsEmpty()) {
        job->deferred.Reject(job->callback_error.Value());
    } else if (!job->status.ok()) {
        job->deferred.Reject(make_error(env, job->status).Value());
    } else {
        Napi::Array out = Napi::Array::New(env, job->epochs.size());
        for (size_t i = 0; i < job->epochs.size(); i++) out.Set(uint32_t(i), epoch_object(env, job->epochs[i]));
        job->deferred.Resolve(out);
    }
}

}  // namespace

// fit(x, y, rows, valX | null, valY | null, valRows, config, onProgress?, onEpoch?) -> Promise<EpochStats[]>
Napi::Value start_fit(const Napi::CallbackInfo& info, ModelWrap* self) {
    Napi::Env env = info.Env();
    Model& m = self->model(env);
    if (self->pending_ > 0) throw_status(env, {StatusCode::Busy, "predictions are pending on this model; await them first"});
    auto job = std::make_unique<FitJob>(env);
    job->model = &m;
    job->train = parse_data(env, m, info[0], info[1], info[2]);
    if (!info[3].IsNull() && !info[3].IsUndefined()) {
        job->val = parse_data(env, m, info[3], info[4], info[5]);
        job->has_val = true;
    }
    Napi::Object cfg = require_object(info[6], "config");
    job->cfg.epochs = int(require_int(cfg.Get("epochs"), "epochs", 0, 1 << 24));
    job->cfg.batch = int(require_int(cfg.Get("batchSize"), "batchSize", 1, 1 << 24));
    job->cfg.shuffle = opt_bool(cfg, "shuffle", true);
    job->cfg.resume = opt_bool(cfg, "resume", false);
    job->cfg.max_grad_norm = opt_number(cfg, "maxGradNorm", 0.0);
    if (job->cfg.max_grad_norm < 0.0) throw_status(env, arg_error("maxGradNorm must be >= 0"));
    job->cfg.estimator = parse_estimator(env, cfg.Get("estimator"));
    job->cfg.optimizer = parse_optimizer(env, cfg.Get("optimizer"));
    if (info[7].IsFunction()) job->on_progress = Napi::Persistent(info[7].As<Napi::Function>());
    if (info[8].IsFunction()) job->on_epoch = Napi::Persistent(info[8].As<Napi::Function>());
    Napi::Value dv = cfg.Get("onDiverged");
    if (dv.IsFunction()) job->on_diverged = Napi::Persistent(dv.As<Napi::Function>());
    Napi::Value bv = cfg.Get("onBatchEnd");
    if (bv.IsFunction()) job->on_batch = Napi::Persistent(bv.As<Napi::Function>());
    else if (!bv.IsUndefined() && !bv.IsNull()) throw_status(env, arg_error("Expected config.onBatchEnd to be a function"));
    Napi::Value lf = cfg.Get("loss");
    if (lf.IsFunction()) {
        job->loss_fn = Napi::Persistent(lf.As<Napi::Function>());
        FitJob* jp = job.get();
        // One JS round trip per step: the training thread posts its outputs and waits for the losses.
        job->cfg.loss_hook = [jp](const float* out, const Targets& y, int R, int C, int rep, float* loss) {
            LossRequest q{out, y, R, C, rep, loss, {}, {}};
            std::future<void> answered = q.done.get_future();
            if (jp->tsfn.BlockingCall(new Event{false, {}, {}, &q}) != napi_ok)
                return Status{StatusCode::Abort, "training was cancelled"};
            answered.wait();
            return q.status;
        };
    } else if (!lf.IsUndefined() && !lf.IsNull()) {
        throw_status(env, arg_error("Expected config.loss to be a function"));
    }
    check(env, validate_estimator(m, job->cfg.estimator, job->cfg.loss_hook ? &job->cfg.loss_hook : nullptr));

    for (int i : {0, 1, 3, 4})
        if (info[i].IsObject()) job->keep.push_back(Napi::Persistent(info[i]));
    job->keep.push_back(Napi::Persistent(Napi::Value(info.This())));

    FitJob* j = job.release();
    Napi::Promise promise = j->deferred.Promise();
    m.cancel.store(false);
    m.busy.store(true);
    j->tsfn = Tsfn::New(env, "oneforward.fit", kQueue, 1, j, finish, static_cast<void*>(nullptr));
    const bool batch_events = !j->on_batch.IsEmpty();
    j->thread = std::thread([j, batch_events] {
        FitHooks hooks;
        hooks.cancel = &j->model->cancel;
        hooks.progress = [j](const ProgressEvent& p) { post(j, new Event{false, p, {}}); };
        if (batch_events)  // without a callback, no event at all
            hooks.batch = [j](const BatchEvent& b) {
                Event* ev = new Event{};
                ev->is_batch = true, ev->batch = b;
                if (!post(j, ev)) j->model->cancel.store(true);  // JS is going away: stop at the next step
            };
        hooks.diverged = [j](const std::string& reason, int epoch, int64_t step) {
            Event* ev = new Event{false, {}, {}, nullptr, reason};
            ev->progress.epoch = epoch, ev->progress.step = step;
            j->tsfn.BlockingCall(ev);
        };
        hooks.epoch = [j](const EpochStats& e) {
            j->epochs.push_back(e);
            j->tsfn.BlockingCall(new Event{true, {}, e});
        };
        try {
            j->status = fit(*j->model, j->train, j->has_val ? &j->val : nullptr, j->cfg, hooks);
        } catch (const std::bad_alloc&) {
            j->status = {StatusCode::OutOfMemory, "out of memory during fit"};
        } catch (const std::exception& e) {
            j->status = {StatusCode::Internal, e.what()};
        } catch (...) {
            j->status = {StatusCode::Internal, "unknown exception during fit"};
        }
        j->tsfn.Release();
    });
    return promise;
}

}  // namespace of::addon
