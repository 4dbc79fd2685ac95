// ThreadPool implementation: workers spin briefly on a generation counter (a training step issues
// several short jobs back to back, and a condition-variable wake costs ~10-50 us), then sleep.
#include "core/thread_pool.h"

#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OF_PAUSE() _mm_pause()
#else
#define OF_PAUSE() std::this_thread::yield()
#endif

namespace of {

// True while this thread runs tasks of a job: a kernel called from inside a task (the ULR block pass calls
// GEMMs per block) then runs its own tasks inline instead of re-entering the pool.
static thread_local bool t_in_job = false;
// The CancelScope flag of this thread; pool workers take the flag of the job they run tasks of.
static thread_local const std::atomic<bool>* t_cancel = nullptr;

static bool is_set(const std::atomic<bool>* flag) { return flag && flag->load(std::memory_order_relaxed); }

ThreadPool::CancelScope::CancelScope(const std::atomic<bool>* flag) : prev_(t_cancel) { t_cancel = flag; }
ThreadPool::CancelScope::~CancelScope() { t_cancel = prev_; }
bool ThreadPool::cancelled() { return is_set(t_cancel); }

int default_thread_count() {
    if (const char* env = std::getenv("ONEFORWARD_THREADS")) {
        int n = std::atoi(env);
        if (n > 0) return n > 256 ? 256 : n;
    }
    unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : int(hc);
}

ThreadPool& ThreadPool::instance() {
    static ThreadPool* pool = new ThreadPool();  // never destroyed: workers may outlive static teardown
    return *pool;
}

ThreadPool::ThreadPool() { start(default_thread_count()); }
ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int n) {
    n_threads_ = n < 1 ? 1 : n;
    quit_ = false;
    // Workers start from the generation of now: a job posted before a new thread first runs is not missed.
    uint64_t gen = generation_.load();
    for (int i = 1; i < n_threads_; i++) workers_.emplace_back(&ThreadPool::worker, this, gen);
}

void ThreadPool::stop() {
    {
        std::lock_guard<std::mutex> lk(wake_mutex_);
        quit_ = true;
        generation_++;
    }
    wake_cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
}

void ThreadPool::set_threads(int n) {
    std::lock_guard<std::mutex> job(job_mutex_);
    if (n <= 0) n = default_thread_count();
    if (n == n_threads_) return;
    stop();
    start(n);
}

void ThreadPool::run_tasks() {
    t_in_job = true;
    const std::atomic<bool>* outer = t_cancel;
    t_cancel = cancel_;  // kernels nested in these tasks see the job's flag
    for (;;) {
        int t = next_task_.fetch_add(1, std::memory_order_relaxed);
        if (t >= n_tasks_) break;
        if (!is_set(cancel_)) (*fn_)(t);  // a cancelled job still drains its task counter
    }
    t_cancel = outer;
    t_in_job = false;
}

void ThreadPool::worker(uint64_t seen) {
    for (;;) {
        // Spin for a while before sleeping: jobs arrive in bursts within one training step.
        int spins = 0;
        while (generation_.load(std::memory_order_acquire) == seen && spins < 20000) {
            OF_PAUSE();
            spins++;
        }
        if (generation_.load(std::memory_order_acquire) == seen) {
            std::unique_lock<std::mutex> lk(wake_mutex_);
            wake_cv_.wait(lk, [&] { return generation_.load() != seen; });
        }
        seen = generation_.load();
        if (quit_) return;
        run_tasks();
        active_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

void ThreadPool::parallel_for(int n_tasks, const TaskFn& fn, int64_t cycles) {
    if (n_tasks <= 0) return;
    const std::atomic<bool>* flag = t_cancel;
    if (n_tasks == 1 || n_threads_ == 1 || cycles < kInlineCycles || t_in_job) {
        for (int t = 0; t < n_tasks && !is_set(flag); t++) fn(t);
        return;
    }
    std::unique_lock<std::mutex> job(job_mutex_, std::try_to_lock);
    if (!job.owns_lock()) {
        for (int t = 0; t < n_tasks && !is_set(flag); t++) fn(t);
        return;
    }
    fn_ = &fn;
    cancel_ = flag;
    n_tasks_ = n_tasks;
    next_task_.store(0, std::memory_order_relaxed);
    active_.store(n_threads_ - 1, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lk(wake_mutex_);
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_cv_.notify_all();
    run_tasks();
    // Wait for the workers; yield after a while so an oversubscribed machine can run them.
    for (int spins = 0; active_.load(std::memory_order_acquire) != 0; spins++) {
        if (spins < 4096) OF_PAUSE();
        else std::this_thread::yield();
    }
    fn_ = nullptr;
    cancel_ = nullptr;
}

}  // namespace of
