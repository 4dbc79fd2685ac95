// ThreadPool: one persistent process-wide pool (size = cores, ONEFORWARD_THREADS overrides) that runs
// parallel_for jobs. Work is split into tasks whose results never depend on which thread ran them, so
// every kernel gives bit-identical output for any thread count. Not a scheduler: one job at a time; a
// second caller (another model training concurrently) runs its job inline on its own thread.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace of {

class ThreadPool {
   public:
    using TaskFn = std::function<void(int task)>;

    static ThreadPool& instance();
    ~ThreadPool();

    int threads() const { return n_threads_; }
    // Rebuilds the pool with n threads (n <= 0: the default). Waits for a running job to finish.
    void set_threads(int n);
    // Runs fn(0..n_tasks-1) across the pool; returns when all tasks are done. `cycles` estimates the whole
    // job's cost: below ~a pool round trip (kInlineCycles) the tasks run inline on the calling thread.
    // Either way each task does the same work, so results do not change.
    void parallel_for(int n_tasks, const TaskFn& fn, int64_t cycles = INT64_MAX);
    static constexpr int64_t kInlineCycles = 30000;

    // Cancellation of one thread's work (a training step). While a CancelScope lives on a thread, every job
    // that thread starts -- and every kernel nested in that job's tasks -- skips its remaining tasks once the
    // flag is set, so a large step stops within one task (a GEMM tile, a block of rows) instead of running to
    // its end. The outputs of a skipped job are incomplete: whoever opened the scope discards them (cancelled()).
    class CancelScope {
       public:
        explicit CancelScope(const std::atomic<bool>* flag);
        ~CancelScope();
        CancelScope(const CancelScope&) = delete;
        CancelScope& operator=(const CancelScope&) = delete;

       private:
        const std::atomic<bool>* prev_;
    };
    // True when the calling thread's scope (or the job it is a task of) has been cancelled.
    static bool cancelled();

   private:
    ThreadPool();
    void start(int n);
    void stop();
    void worker(uint64_t start_generation);
    void run_tasks();

    int n_threads_ = 1;
    std::vector<std::thread> workers_;
    std::mutex job_mutex_;  // one job at a time
    std::mutex wake_mutex_;
    std::condition_variable wake_cv_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> quit_{false};
    const TaskFn* fn_ = nullptr;
    const std::atomic<bool>* cancel_ = nullptr;  // the job starter's CancelScope flag (nullptr: none)
    int n_tasks_ = 0;
    std::atomic<int> next_task_{0};
    std::atomic<int> active_{0};
};

int default_thread_count();

}  // namespace of
