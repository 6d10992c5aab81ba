// ThreadPool: generation counter + pending count, spin then atomic wait.
// Training runs two pool rounds per step, tens of microseconds apart; on these virtual
// machines a futex sleep + wake costs about as much as a round, so threads spin for
// about a millisecond (with pause) before sleeping, and wake-ups are only sent to
// threads that actually sleep.
#include "model/thread_pool.hpp"

#include <stdexcept>
#include <string>
#include <system_error>

#include "model/flush_denormals.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ATTN_CPU_RELAX() _mm_pause()
#else
#define ATTN_CPU_RELAX() ((void)0)
#endif

namespace attn {

namespace {
constexpr int kSpins = 1 << 15;
// Barrier waits inside a step are short when every thread has a core; when threads outnumber
// cores, spinning only delays the thread being waited for, so the spin yields now and then.
constexpr int kBarrierSpins = 1 << 16;
constexpr int kBarrierYieldEvery = 1 << 10;
}

ThreadPool::ThreadPool(int threads) : size_(threads < 1 ? 1 : threads) {
  try {
    workers_.reserve(size_ - 1);
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this, i] { worker(i); });
  } catch (const std::system_error& e) {
    // The system refused a thread (too many asked for): stop the ones started, then say so,
    // instead of destroying running threads (which terminates the program).
    const size_t started = workers_.size();
    stop_workers();
    throw std::runtime_error("could not start " + std::to_string(size_) + " threads (the system refused thread " +
                             std::to_string(started + 2) + "): " + e.what());
  }
}

void ThreadPool::stop_workers() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::run_erased(void (*call)(void*, int), void* fn) {
  // The caller computes as the workers do, and gets its own mode back afterwards.
  ScopedFlushDenormals flush;
  if (size_ == 1) {
    call(fn, 0);
    return;
  }
  call_ = call;
  fn_ = fn;
  pending_.store(size_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) != 0) generation_.notify_all();
  call(fn, 0);
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpins) {
      ATTN_CPU_RELAX();
      continue;
    }
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    int p = pending_.load(std::memory_order_seq_cst);
    if (p != 0) pending_.wait(p, std::memory_order_acquire);
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }
}

void ThreadPool::barrier() {
  if (size_ == 1) return;
  // The phase cannot advance before this thread arrives, so reading it first is safe.
  const uint64_t phase = barrier_phase_.load(std::memory_order_acquire);
  if (barrier_arrived_.fetch_add(1, std::memory_order_acq_rel) == size_ - 1) {
    barrier_arrived_.store(0, std::memory_order_relaxed);
    barrier_phase_.fetch_add(1, std::memory_order_seq_cst);
    if (barrier_sleepers_.load(std::memory_order_seq_cst) != 0) barrier_phase_.notify_all();
    return;
  }
  // Spin (yielding the core every so often), then sleep. A wait inside a step is usually a few
  // microseconds, but the other thread is sometimes held up by tens (interrupts, the host): a
  // futex sleep and wake-up there costs far more than the wait itself on these virtual machines.
  // The yields let the awaited thread run first where threads outnumber cores.
  for (int spin = 0; barrier_phase_.load(std::memory_order_acquire) == phase; ++spin) {
    if (spin < kBarrierSpins) {
      if (spin % kBarrierYieldEvery == kBarrierYieldEvery - 1)
        std::this_thread::yield();
      else
        ATTN_CPU_RELAX();
      continue;
    }
    barrier_sleepers_.fetch_add(1, std::memory_order_seq_cst);
    if (barrier_phase_.load(std::memory_order_seq_cst) == phase) barrier_phase_.wait(phase, std::memory_order_seq_cst);
    barrier_sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void ThreadPool::worker(int index) {
  ScopedFlushDenormals flush;
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen; ++spin) {
      if (spin < kSpins) {
        ATTN_CPU_RELAX();
      } else {
        // Announce the sleep before re-checking, so run() either sees a sleeper and
        // notifies, or this thread sees the new generation and does not sleep.
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        if (generation_.load(std::memory_order_seq_cst) == seen) generation_.wait(seen, std::memory_order_seq_cst);
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      }
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load()) return;
    call_(fn_, index);
    if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_sleeping_.load(std::memory_order_seq_cst))
      pending_.notify_one();
  }
}

}  // namespace attn
