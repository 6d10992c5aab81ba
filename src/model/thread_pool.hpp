// A fixed set of worker threads that run one function on every thread index and
// wait for all of them. Built for steps of ~0.1 ms: workers spin briefly, then
// sleep on an atomic; run() allocates nothing. Every thread computes with subnormals flushed to
// zero (model/flush_denormals.hpp), the caller only inside run().
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace attn {

class ThreadPool {
 public:
  // Throws std::runtime_error when the system refuses a thread.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }
  // Calls fn(thread_index) for every index in [0, size()), index 0 on the caller.
  template <class Fn>
  void run(Fn& fn) {
    run_erased([](void* f, int i) { (*static_cast<Fn*>(f))(i); }, &fn);
  }
  // Inside run(): returns once every thread of the pool has called it (each thread the same
  // number of times per run). Spins with pause, then sleeps.
  void barrier();

 private:
  void run_erased(void (*call)(void*, int), void* fn);
  void worker(int index);
  void stop_workers();

  int size_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};              // workers blocked in generation_.wait
  std::atomic<bool> caller_sleeping_{false};  // run() blocked in pending_.wait
  std::atomic<int> barrier_arrived_{0};
  std::atomic<uint64_t> barrier_phase_{0};
  std::atomic<int> barrier_sleepers_{0};
  void (*call_)(void*, int) = nullptr;
  void* fn_ = nullptr;
};

}  // namespace attn
