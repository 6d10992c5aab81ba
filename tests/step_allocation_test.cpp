// DESIGN.md: "nothing allocated inside a training step". After a warm-up step,
// Model::train_step on the reference model (batch 20, 1 and 2 threads) must not touch
// the heap. This file replaces the global operator new/delete (every form) and
// aligned_alloc (the library's float buffers come from it) with versions that count
// calls while a flag is set, on any thread. Replacing these is allowed under ASan: the
// replacements allocate through malloc/posix_memalign, which ASan still intercepts, and
// everything is released with free.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <random>
#include <vector>

#include "attn/attn.hpp"
#include "attn/reference_model.hpp"

namespace {

std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

void note_allocation() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
}

void* allocate(std::size_t size) {
  note_allocation();
  void* p = std::malloc(size ? size : 1);
  if (!p) throw std::bad_alloc();
  return p;
}

void* allocate_aligned(std::size_t size, std::size_t alignment) {
  note_allocation();
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  void* p = nullptr;
  if (posix_memalign(&p, alignment, size ? size : 1) != 0) return nullptr;
  return p;
}

void* allocate_aligned_or_throw(std::size_t size, std::align_val_t alignment) {
  void* p = allocate_aligned(size, static_cast<std::size_t>(alignment));
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n) { return allocate(n); }
void* operator new[](std::size_t n) { return allocate(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  note_allocation();
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  note_allocation();
  return std::malloc(n ? n : 1);
}
void* operator new(std::size_t n, std::align_val_t a) { return allocate_aligned_or_throw(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return allocate_aligned_or_throw(n, a); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate_aligned(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate_aligned(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

// attn::allocate_floats uses std::aligned_alloc; this definition takes its place in the
// test binary (memory from it is released with free, as aligned_alloc's is).
extern "C" void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
  return allocate_aligned(size, alignment);
}

namespace {

void* volatile g_sink = nullptr;

// The counter must see what it is meant to see, or a zero below proves nothing.
TEST(StepAllocation, CounterSeesNewAndAlignedAlloc) {
  g_allocations = 0;
  g_counting = true;
  g_sink = new int(3);
  delete static_cast<int*>(g_sink);
  {
    auto buffer = attn::allocate_floats(100);
    g_sink = buffer.get();
  }
  g_sink = std::aligned_alloc(64, 128);
  const bool aligned = reinterpret_cast<std::uintptr_t>(g_sink) % 64 == 0;
  std::free(g_sink);
  g_counting = false;
  // new int, the buffer (and its shared_ptr control block), and aligned_alloc.
  EXPECT_GE(g_allocations.load(), 3);
  EXPECT_TRUE(aligned);
}

// n MNIST-like samples (mostly zeros) with labels 0..9 in turn.
void mnist_like(int64_t n, uint32_t seed, attn::Tensor& x, attn::Tensor& y) {
  x = attn::Tensor({n, 784, 1});
  y = attn::Tensor({n});
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int64_t i = 0; i < x.size(); ++i) x[i] = u(gen) < 0.8f ? 0.0f : u(gen);
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(i % 10);
}

attn::Model compiled_reference_model(int threads) {
  attn::clear_session();
  attn::set_random_seed(9);
  attn::Model model = attn::reference_model();
  model.set_threads(threads);
  model.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}),
                {"accuracy"}, {.warn = false});
  return model;
}

TEST(StepAllocation, ReferenceModelTrainStepAllocatesNothing) {
  attn::Tensor x, y;
  mnist_like(20, 5, x, y);
  const std::vector<attn::Tensor> xs{x};
  for (int threads : {1, 2}) {
    attn::Model model = compiled_reference_model(threads);
    model.train_step(xs, y);  // warm-up: plans the buffers and builds the optimizer
    const auto before = model.get_weights_flat();
    g_allocations = 0;
    g_counting = true;
    double losses = 0;
    for (int step = 0; step < 3; ++step) {
      const auto r = model.train_step(xs, y);
      losses += r.loss + r.accuracy;
    }
    g_counting = false;
    EXPECT_EQ(g_allocations.load(), 0) << threads << " thread(s)";
    EXPECT_TRUE(std::isfinite(losses));
    EXPECT_NE(model.get_weights_flat(), before);  // the steps did train
    EXPECT_EQ(model.optimizer()->iterations(), 4);
  }
}

// Two models sharing a layer and training in turn (an encoder and the full model, a GAN's two
// halves): each step points the shared weights back at its model's buffer, without allocating.
TEST(StepAllocation, ModelsSharingALayerTrainInTurnWithoutAllocating) {
  namespace L = attn::layers;
  attn::clear_session();
  attn::set_random_seed(9);
  L::Dense shared(8, {.activation = "relu"});
  auto in = attn::Input({6});
  attn::Model full(in, L::Dense(3)(shared(in)));
  auto in2 = attn::Input({6});
  attn::Model side(in2, L::Dense(2)(shared(in2)));
  attn::Tensor x({10, 6}), y3({10}), y2({10});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.3f * static_cast<float>(i));
  for (int64_t i = 0; i < 10; ++i) y3[i] = static_cast<float>(i % 3), y2[i] = static_cast<float>(i % 2);
  for (attn::Model* m : {&full, &side})
    m->compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}),
               {"accuracy"});
  const std::vector<attn::Tensor> xs{x};
  full.train_step(xs, y3);  // warm-up: plans, optimizers, the first claims
  side.train_step(xs, y2);
  g_allocations = 0;
  g_counting = true;
  for (int step = 0; step < 3; ++step) {
    full.train_step(xs, y3);
    side.train_step(xs, y2);
  }
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0);
}

// One warm-up step (plans the buffers, builds the optimizer), then three counted steps: none may
// allocate, and the weights must move.
void expect_steps_allocate_nothing(attn::Model& model, const attn::Tensor& x, const attn::Tensor& y, int threads) {
  const std::vector<attn::Tensor> xs{x};
  model.train_step(xs, y);
  const auto before = model.get_weights_flat();
  g_allocations = 0;
  g_counting = true;
  for (int step = 0; step < 3; ++step) model.train_step(xs, y);
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0) << threads << " thread(s)";
  EXPECT_NE(model.get_weights_flat(), before);
}

// A Transformer encoder block (MultiHeadAttention on its fused kernel, residual Adds,
// LayerNormalization, pooling) trains without allocating either, with dropout in the attention.
TEST(StepAllocation, EncoderBlockTrainStepAllocatesNothing) {
  namespace L = attn::layers;
  for (int threads : {1, 2}) {
    attn::clear_session();
    attn::set_random_seed(9);
    auto in = attn::Input({12, 5});
    auto x = L::Dense(8)(in);
    auto a = L::MultiHeadAttention(2, 4, {.dropout = 0.1f})({x, x});
    x = L::LayerNormalization()(L::Add()({x, a}));
    x = L::LayerNormalization()(L::Add()({x, L::Dense(8)(L::Dense(16, {.activation = "relu"})(x))}));
    attn::Model model(in, L::Dense(3)(L::GlobalAveragePooling1D()(x)));
    model.set_threads(threads);
    model.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}),
                  {"accuracy"});
    attn::Tensor xt({16, 12, 5}), yt({16});
    for (int64_t i = 0; i < xt.size(); ++i) xt[i] = std::sin(0.37f * static_cast<float>(i));
    for (int64_t i = 0; i < 16; ++i) yt[i] = static_cast<float>(i % 3);
    expect_steps_allocate_nothing(model, xt, yt, threads);
  }
}

// Token ids through an Embedding (mask_zero: MultiHeadAttention takes the ids' mask):
// train_on_batch checks every batch's ids (on the calling thread) and the table's gradient rows
// are added per use; neither allocates.
TEST(StepAllocation, EmbeddingTrainStepAllocatesNothing) {
  namespace L = attn::layers;
  for (int threads : {1, 2}) {
    attn::clear_session();
    attn::set_random_seed(4);
    auto in = attn::Input({10});
    auto x = L::Embedding(20, 8, {.mask_zero = true})(in);
    x = L::LayerNormalization()(L::Add()({x, L::MultiHeadAttention(2, 4)({x, x})}));
    attn::Model model(in, L::Dense(3)(L::Dense(64, {.activation = "relu"})(L::Flatten()(x))));
    model.set_threads(threads);
    model.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}));
    attn::Tensor xt({16, 10}), yt({16});
    for (int64_t i = 0; i < xt.size(); ++i) xt[i] = static_cast<float>(i * 7 % 20);
    for (int64_t i = 0; i < 16; ++i) yt[i] = static_cast<float>(i % 3);
    expect_steps_allocate_nothing(model, xt, yt, threads);
  }
}

// A convnet: Conv2D's patch products (through sgemm and the small-row kernels), the 2D
// poolings, Dropout, BatchNormalization (a team on 2 threads: its batch statistics).
TEST(StepAllocation, ConvnetTrainStepAllocatesNothing) {
  namespace L = attn::layers;
  for (int threads : {1, 2}) {
    attn::clear_session();
    attn::set_random_seed(6);
    auto in = attn::Input({10, 9, 2});
    auto x = L::MaxPooling2D(2)(L::Conv2D(4, 3, {.padding = "same", .activation = "relu"})(in));
    x = L::BatchNormalization()(x);
    x = L::AveragePooling2D(2, {.padding = "same"})(L::Conv2D(6, {2, 2}, {.activation = "tanh"})(x));
    x = L::Concatenate()({L::GlobalMaxPooling2D()(x), L::GlobalAveragePooling2D()(x)});
    attn::Model model(in, L::Dense(3)(L::Dropout(0.2f)(x)));
    model.set_threads(threads);
    model.compile(attn::optimizers::Adam(), attn::losses::SparseCategoricalCrossentropy({.from_logits = true}));
    attn::Tensor xt({16, 10, 9, 2}), yt({16});
    for (int64_t i = 0; i < xt.size(); ++i) xt[i] = std::sin(0.21f * static_cast<float>(i));
    for (int64_t i = 0; i < 16; ++i) yt[i] = static_cast<float>(i % 3);
    expect_steps_allocate_nothing(model, xt, yt, threads);
  }
}

// fit's own loop around the steps (shuffled gather, running means, the logs handed to
// callbacks, the progress line at verbose 0 and 2) allocates nothing per step either: a
// callback counts the allocations between the ends of batches 2 and 7.
class CountBetweenBatches : public attn::callbacks::Callback {
 public:
  void on_train_batch_end(int batch, const attn::callbacks::Logs& logs) override {
    if (batch == 2) {
      g_allocations = 0;
      g_counting = true;
    } else if (batch == 7) {
      g_counting = false;
      counted = g_allocations.load();
      seen_loss = logs.count("loss") == 1 && std::isfinite(logs.at("loss"));
    }
  }
  long counted = -1;
  bool seen_loss = false;
};

TEST(StepAllocation, FitLoopAllocatesNothingPerStep) {
  attn::Tensor x, y;
  mnist_like(200, 6, x, y);
  for (int threads : {1, 2})
    for (int verbose : {0, 2}) {
      attn::Model model = compiled_reference_model(threads);
      auto counter = std::make_shared<CountBetweenBatches>();
      model.fit(x, y, {.epochs = 1, .batch_size = 20, .verbose = verbose, .callbacks = {counter}});
      EXPECT_EQ(counter->counted, 0) << threads << " thread(s), verbose " << verbose;
      EXPECT_TRUE(counter->seen_loss);
    }
}

}  // namespace
