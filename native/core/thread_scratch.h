// Per-thread scratch: one T per thread that runs a job's tasks (pool workers and the calling thread), grown on
// demand and kept across steps, like a thread_local. release_thread_scratch() frees every thread's scratch of
// every type, so that allocation statistics (core/buffer.h) see the whole need of the next step.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

namespace of {

namespace scratch_detail {
inline std::atomic<uint64_t>& epoch() {
    static std::atomic<uint64_t> e{0};
    return e;
}
struct Types {  // every T used so far: release_thread_scratch visits each on each thread
    std::mutex mutex;
    std::vector<void (*)()> touch;
};
inline Types& types() {
    static Types t;
    return t;
}
}  // namespace scratch_detail

template <class T>
T& thread_scratch() {
    static const bool registered = [] {
        std::lock_guard<std::mutex> lk(scratch_detail::types().mutex);
        scratch_detail::types().touch.push_back([] { thread_scratch<T>(); });
        return true;
    }();
    (void)registered;
    thread_local T t;
    thread_local uint64_t seen = 0;
    const uint64_t e = scratch_detail::epoch().load(std::memory_order_relaxed);
    if (seen != e) t = T(), seen = e;
    return t;
}

// Test hook: frees the scratch of every pool thread and of the calling thread now (each thread takes one task of
// a job and waits, up to a second, for the others, so every thread runs one). Call it between steps only.
inline void release_thread_scratch() {
    scratch_detail::epoch().fetch_add(1);
    std::vector<void (*)()> touch;
    {
        std::lock_guard<std::mutex> lk(scratch_detail::types().mutex);
        touch = scratch_detail::types().touch;
    }
    const int n = ThreadPool::instance().threads();
    std::atomic<int> arrived{0};
    ThreadPool::instance().parallel_for(n, [&](int) {
        for (auto f : touch) f();
        arrived.fetch_add(1);
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        while (arrived.load() < n && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    });
    for (auto f : touch) f();
}

}  // namespace of
