// fit() off the event loop: a dedicated std::thread per call (not the 4-thread libuv pool, which a server
// needs for its own I/O) runs the native epoch loop; progress and epoch events come back through a
// thread-safe function (an epoch end waits until its callback has run); the promise settles in the TSFN
// finalizer, on the JS thread, after the thread ends.
// Its queue is bounded (kQueue events) and every event is posted blocking: when JS falls behind (a slow
// onBatchEnd), training waits instead of queueing without limit, and no event is dropped.
// A distributed fit's all-reduce is a request like the loss: the thread posts its values and waits until the JS
// all-reduce calls back (it may be asynchronous).
// The thread touches no Napi object; it reads native copies of the data sets and shares ownership of the model.
// Environment teardown (worker.terminate(), process.exit() in a worker) cancels and joins it (teardown()), and
// nothing calls into JS or throws from then on.
#include <condition_variable>
#include <mutex>
#include <thread>

#include "addon/args.h"
#include "addon/js_loss.h"
#include "addon/model_wrap.h"

namespace of::addon {
namespace {

// A request from the training thread; it waits (FitJob::answered) until `done` or teardown. Shared with its event: a
// request still queued at teardown is answered after the thread has gone.
struct Request {
    Status status;
    bool done = false;
};

// The losses of R rows of outputs (R x C) with targets y.
struct LossRequest : Request {
    const float* outputs;
    Targets y;
    int R, C, rep;
    float* loss;
};

// An all-reduce: values (n) are replaced by their sum over the ranks.
struct AllreduceRequest : Request {
    float* values;
    size_t n;
};

struct Event {
    bool is_epoch;
    ProgressEvent progress;
    EpochStats epoch;
    std::shared_ptr<LossRequest> loss;
    std::string diverged;  // non-empty: a divergence report (progress.epoch / progress.step say where)
    bool is_batch = false;
    BatchEvent batch;
    std::shared_ptr<Request> handled;  // an epoch end: its thread waits until call_js has run it
    std::shared_ptr<AllreduceRequest> allreduce;
};

constexpr size_t kQueue = 1024;

struct FitJob;
void call_js(Napi::Env env, Napi::Function, FitJob* job, Event* ev);
using Tsfn = Napi::TypedThreadSafeFunction<FitJob, Event, call_js>;

struct FitJob {
    explicit FitJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise::Deferred deferred;
    std::shared_ptr<Model> model;
    Napi::ObjectReference keep;  // the model object
    Napi::FunctionReference on_progress, on_epoch, on_diverged, on_batch, loss_fn;
    Napi::FunctionReference allreduce_fn;  // (values: Float32Array, done: (error?, values?) => void) => void
    Thrown callback_error;                 // first value thrown by a JS callback, as thrown
    OwnedData train, val;                  // copies: JS may transfer or shrink its arrays while the thread reads
    std::mutex mu;                         // guards Request::done and closing
    std::condition_variable answered;
    bool closing = false;  // the environment is being torn down
    bool has_val = false;
    FitConfig cfg;
    Tsfn tsfn;
    std::thread thread;
    Status status;
    std::vector<EpochStats> epochs;
};

Napi::Object epoch_object(Napi::Env env, const EpochStats& e) {
    Napi::Object o = number_object(env, {{"epoch", e.epoch}, {"loss", e.loss}, {"accuracy", e.accuracy}});
    if (e.has_val) set_numbers(o, {{"valLoss", e.val_loss}, {"valAccuracy", e.val_accuracy}});
    return set_numbers(o, {{"seconds", e.seconds}, {"steps", double(e.steps)}, {"lr", e.lr}});
}

// One callback; what it throws (any value) is kept and stops the run.
void invoke(Napi::Env env, FitJob* job, const Napi::FunctionReference& fn, Napi::Value arg) {
    napi_value argv[] = {arg};
    if (!call_catching(env, fn.Value(), 1, argv, &job->callback_error)) job->model->cancel.store(true);
}

void answer(FitJob* job, Request* q, Status status) {
    {
        std::lock_guard<std::mutex> lock(job->mu);
        if (q->done) return;
        q->status = std::move(status);
        q->done = true;
    }
    job->answered.notify_all();
}

// Hands the values to the JS all-reduce with a `done` callback that copies the sums back (or keeps the error it
// is given, which then rejects fit) and releases the training thread. The thread waits for `done`, so the job is
// alive whenever `done` can still answer.
void start_allreduce(Napi::Env env, FitJob* job, std::shared_ptr<AllreduceRequest> req) {
    AllreduceRequest* q = req.get();
    if (env == nullptr || job->closing) return answer(job, q, {StatusCode::Abort, "shutting down"});
    try {
        Napi::Float32Array values = Napi::Float32Array::New(env, q->n);
        std::copy(q->values, q->values + q->n, values.Data());
        Napi::Function done = Napi::Function::New(env, [job, req](const Napi::CallbackInfo& info) {
            AllreduceRequest* r = req.get();
            if (r->done) return;
            if (!info[0].IsUndefined()) {
                job->callback_error.set(info.Env(), info[0]);
                return answer(job, r, {StatusCode::Abort, "the all-reduce failed"});
            }
            if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
                info[1].As<Napi::Float32Array>().ElementLength() != r->n)
                return answer(
                    job, r,
                    {StatusCode::Backend, "the all-reduce did not return its " + std::to_string(r->n) + " values"});
            const float* sum = info[1].As<Napi::Float32Array>().Data();
            std::copy(sum, sum + r->n, r->values);  // the training thread waits: nothing else touches them
            answer(job, r, {});
        });
        napi_value argv[] = {values, done};
        if (!call_catching(env, job->allreduce_fn.Value(), 2, argv, &job->callback_error))
            answer(job, q, {StatusCode::Abort, "the all-reduce threw"});
    } catch (...) {  // JS cannot run (the environment is stopping), or building the arguments failed
        answer(job, q, {StatusCode::Abort, "the all-reduce could not run"});
    }
}

// Runs on the JS thread, or with env == nullptr when the function is torn down with events still queued.
// Never throws: it is called from libuv, and from the teardown of the environment.
void call_js(Napi::Env env, Napi::Function, FitJob* job, Event* ev) {
    std::unique_ptr<Event> owned(ev);
    struct Handled {  // releases a waiting epoch end on every way out, after its callback ran (or could not)
        FitJob* job;
        std::shared_ptr<Request> request;
        ~Handled() {
            if (request) answer(job, request.get(), {});
        }
    } handled{job, ev->handled};
    if (LossRequest* q = ev->loss.get()) {  // always answered: the training thread may be waiting for it
        Status st{StatusCode::Abort, "shutting down"};
        if (env != nullptr && !job->closing)
            st = call_js_loss(env, job->loss_fn.Value(), q->outputs, q->y, q->R, q->C, q->rep, q->loss,
                              &job->callback_error);
        if (!job->callback_error.IsEmpty()) job->model->cancel.store(true);
        return answer(job, q, st);
    }
    if (ev->allreduce) {  // answered now, or by `done` once the all-reduce settles
        start_allreduce(env, job, ev->allreduce);
        return;
    }
    if (env == nullptr || job->closing) return;  // shutting down
    try {
        if (!ev->diverged.empty()) {
            if (!job->on_diverged.IsEmpty()) {
                Napi::Object o = Napi::Object::New(env);
                o.Set("reason", ev->diverged);
                o.Set("epoch", ev->progress.epoch);
                o.Set("step", double(ev->progress.step));
                invoke(env, job, job->on_diverged, o);
            }
        } else if (ev->is_batch) {  // none after a callback threw: fit is stopping and rejects with that error
            const BatchEvent& b = ev->batch;
            if (!job->on_batch.IsEmpty() && job->callback_error.IsEmpty())
                invoke(env, job, job->on_batch,
                       number_object(env, {{"epoch", b.epoch},
                                           {"batch", double(b.batch)},
                                           {"batches", double(b.batches)},
                                           {"loss", b.loss},
                                           {"accuracy", b.accuracy},
                                           {"lr", b.lr}}));
        } else if (ev->is_epoch) {
            if (!job->on_epoch.IsEmpty()) {
                Napi::Object e = epoch_object(env, ev->epoch);
                job->model->at_epoch_end.store(true);  // training waits: the callback may save the model
                invoke(env, job, job->on_epoch, e);
                job->model->at_epoch_end.store(false);
            }
        } else if (!job->on_progress.IsEmpty()) {
            const ProgressEvent& p = ev->progress;
            invoke(env, job, job->on_progress,
                   number_object(env, {{"epoch", p.epoch},
                                       {"epochs", p.epochs},
                                       {"step", double(p.step)},
                                       {"steps", double(p.steps)},
                                       {"loss", p.loss},
                                       {"accuracy", p.accuracy},
                                       {"samplesPerSecond", p.samples_per_sec},
                                       {"elapsed", p.elapsed},
                                       {"eta", p.eta},
                                       {"lr", p.lr}}));
        }
    } catch (const Napi::Error& e) {  // building the argument failed (JS cannot run): stop the run
        job->model->cancel.store(true);
        try {
            job->callback_error.set(env, e.Value());
        } catch (...) {
        }
    } catch (...) {
        job->model->cancel.store(true);
    }
}

// Queues ev for the JS thread, waiting while the queue is full; false (ev freed) once the function is closing.
bool post(FitJob* j, Event* ev) {
    if (j->tsfn.BlockingCall(ev) == napi_ok) return true;
    delete ev;
    return false;
}

// Posts ev, which carries the request q, and waits for its answer.
Status ask(FitJob* j, Event* ev, const Request& q) {
    if (!post(j, ev)) return Status{StatusCode::Abort, "training was cancelled"};
    std::unique_lock<std::mutex> lock(j->mu);
    j->answered.wait(lock, [&] { return q.done || j->closing; });
    return q.done ? q.status : Status{StatusCode::Abort, "shutting down"};
}

// Environment teardown with fit running (a cleanup hook, registered after the thread-safe function's so it runs
// first): stop the thread at its next step, wake it if it waits for a loss or for room in the queue, and join it
// before the function and the environment go away. The thread is one step from done, so this is quick.
void teardown(void* arg) {
    FitJob* j = static_cast<FitJob*>(arg);
    {
        std::lock_guard<std::mutex> lock(j->mu);
        j->closing = true;
    }
    j->answered.notify_all();
    j->model->cancel.store(true);
    j->tsfn.Abort();  // a post() blocked on a full queue returns; later ones fail
    if (j->thread.joinable()) j->thread.join();
}

// The TSFN finalizer: on the JS thread after the training thread released it, or during teardown. Never throws.
void finish(Napi::Env env, void*, FitJob* job) {
    std::unique_ptr<FitJob> owned(job);
    if (job->thread.joinable()) job->thread.join();
    job->model->busy.store(false);
    job->model->cancel.store(false);
    if (job->closing) return;  // teardown: the promise has no one left to settle for
    napi_remove_env_cleanup_hook(env, teardown, job);
    try {
        if (!job->callback_error.IsEmpty()) {
            job->deferred.Reject(job->callback_error.Value());
        } else if (!job->status.ok()) {
            job->deferred.Reject(make_error(env, job->status).Value());
        } else {
            Napi::Array out = Napi::Array::New(env, job->epochs.size());
            for (size_t i = 0; i < job->epochs.size(); i++) out.Set(uint32_t(i), epoch_object(env, job->epochs[i]));
            job->deferred.Resolve(out);
        }
    } catch (...) {  // JS cannot run any more (the environment is stopping)
    }
}

// A JS callback to keep: v's function, or none for undefined or null; another value is an argument error where the
// callback has a name (`what`), else none as well.
Napi::FunctionReference callback(const Napi::Value& v, const char* what = nullptr) {
    if (v.IsFunction()) return Napi::Persistent(v.As<Napi::Function>());
    if (what && !v.IsUndefined() && !v.IsNull())
        throw_status(v.Env(), arg_error(std::string("Expected ") + what + " to be a function"));
    return {};
}

// config.distributed: { rank, size, mode: 'data' | 'copies' | 'seeds', allreduce(values, done) }.
void parse_distributed(Napi::Env env, const Napi::Object& o, FitJob* j) {
    DistributedConfig& d = j->cfg.distributed;
    d.size = int(require_int(o.Get("size"), "distributed.size", 1, 1 << 20));
    d.rank = int(require_int(o.Get("rank"), "distributed.rank", 0, d.size - 1));
    const std::string mode = require_string(o.Get("mode"), "distributed.mode");
    if (mode == "data") d.mode = DistributedConfig::Mode::Data;
    else if (mode == "copies") d.mode = DistributedConfig::Mode::Copies;
    else if (mode == "seeds") d.mode = DistributedConfig::Mode::Seeds;
    else throw_status(env, arg_error("distributed.mode must be 'data', 'copies' or 'seeds', not '" + mode + "'"));
    Napi::Value fn = o.Get("allreduce");
    if (!fn.IsFunction()) throw_status(env, arg_error("Expected distributed.allreduce to be a function"));
    j->allreduce_fn = Napi::Persistent(fn.As<Napi::Function>());
    d.allreduce = [j](float* values, size_t n) {
        auto q = std::make_shared<AllreduceRequest>(AllreduceRequest{{}, values, n});
        Event* ev = new Event{};
        ev->allreduce = q;
        return ask(j, ev, *q);
    };
}

}  // namespace

// fit(x, y, rows, valX | null, valY | null, valRows, config, onProgress?, onEpoch?) -> Promise<EpochStats[]>
Napi::Value ModelWrap::Fit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env, Use::Mutate);  // refused while async predictions read it
    auto job = std::make_unique<FitJob>(env);
    job->model = model_;
    own_data(env, m, info[0], info[1], info[2], &job->train);
    if (!info[3].IsNull() && !info[3].IsUndefined()) {
        own_data(env, m, info[3], info[4], info[5], &job->val);
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
    job->on_progress = callback(info[7]);
    job->on_epoch = callback(info[8]);
    job->on_diverged = callback(cfg.Get("onDiverged"));
    job->on_batch = callback(cfg.Get("onBatchEnd"), "config.onBatchEnd");
    job->loss_fn = callback(cfg.Get("loss"), "config.loss");
    if (!job->loss_fn.IsEmpty()) {
        FitJob* jp = job.get();
        // One JS round trip per step: the training thread posts its outputs and waits for the losses.
        job->cfg.loss_hook = [jp](const float* out, const Targets& y, int R, int C, int rep, float* loss) {
            auto q = std::make_shared<LossRequest>(LossRequest{{}, out, y, R, C, rep, loss});
            Event* ev = new Event{};
            ev->loss = q;
            return ask(jp, ev, *q);
        };
    }
    Napi::Value dist = cfg.Get("distributed");
    if (!dist.IsUndefined() && !dist.IsNull())
        parse_distributed(env, require_object(dist, "config.distributed"), job.get());
    check(env, validate_estimator(m, job->cfg.estimator, job->cfg.loss_hook ? &job->cfg.loss_hook : nullptr));

    job->keep = Napi::Persistent(info.This().As<Napi::Object>());

    FitJob* j = job.get();
    Napi::Promise promise = j->deferred.Promise();
    j->tsfn = Tsfn::New(env, "oneforward.fit", kQueue, 1, j, finish, static_cast<void*>(nullptr));
    job.release();  // finish() owns it now
    napi_add_env_cleanup_hook(env, teardown, j);
    m.cancel.store(false);
    m.busy.store(true);
    const bool batch_events = !j->on_batch.IsEmpty();
    auto run = [j, batch_events] {
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
            post(j, ev);
        };
        // The epoch callback runs before the next epoch starts (Keras' order): a cancel from it stops training
        // at this epoch's end (early stopping), and it reads the parameters while nothing writes them.
        hooks.epoch = [j](const EpochStats& e) {
            j->epochs.push_back(e);
            auto handled = std::make_shared<Request>();
            Event* ev = new Event{true, {}, e};
            ev->handled = handled;
            ask(j, ev, *handled);
        };
        try {
            j->status = fit(*j->model, j->train.ref, j->has_val ? &j->val.ref : nullptr, j->cfg, hooks);
        } catch (...) {
            j->status = caught_status(" during fit");
        }
        j->tsfn.Release();
    };
    try {
        j->thread = std::thread(run);
    } catch (...) {  // no thread: fit rejects through finish()
        j->status = {StatusCode::Internal, "could not start the training thread"};
        j->tsfn.Release();
    }
    return promise;
}

}  // namespace of::addon
