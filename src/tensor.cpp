// Tensor storage and views.
#include "attn/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>

namespace attn {

int64_t shape_size(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      throw std::invalid_argument("shape_size: dimension " + std::to_string(d) + " in " + shape_to_string(shape) +
                                  " is negative or unknown");
    if (__builtin_mul_overflow(n, d, &n))
      throw std::invalid_argument("shape_size: " + shape_to_string(shape) + " has more elements than fit 64 bits");
  }
  return n;
}

std::string shape_to_string(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += shape[i] < 0 ? "None" : std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

std::string batch_shape_to_string(const Shape& per_sample) {
  Shape shape = {-1};
  shape.insert(shape.end(), per_sample.begin(), per_sample.end());
  return shape_to_string(shape);
}

std::shared_ptr<float[]> allocate_floats(int64_t count) {
  if (count > static_cast<int64_t>(std::numeric_limits<size_t>::max() / sizeof(float) / 2)) throw std::bad_alloc();
  size_t bytes = static_cast<size_t>(count > 0 ? count : 1) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  // Small pages, even for the training arrays. 2 MB pages (madvise) made a shuffled batch's row
  // gathers cheaper (11-12 us a step instead of 16-17 on an AMD host, one thread), but on these
  // virtual machines a fresh huge page often costs ~2 ms per MB at first touch where small pages
  // cost 0.4: the reference run took 2.31-2.42 s with them and 1.97-2.08 s without, alternating
  // runs 5 s apart, with the same epoch times (Intel host).
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return std::shared_ptr<float[]>(static_cast<float*>(p), [](float* q) { std::free(q); });
}

Tensor::Tensor(Shape shape) : shape_(std::move(shape)), size_(shape_size(shape_)) {
  storage_ = allocate_floats(size_);
  data_ = storage_.get();
}

Tensor::Tensor(Shape shape, const std::vector<float>& values) : Tensor(std::move(shape)) {
  if (static_cast<int64_t>(values.size()) != size())
    throw std::invalid_argument("Tensor: " + std::to_string(values.size()) + " values for shape " +
                                shape_to_string(shape_));
  std::memcpy(data_, values.data(), values.size() * sizeof(float));
}

Tensor Tensor::view(float* data, Shape shape) {
  Tensor t;
  t.data_ = data;
  t.shape_ = std::move(shape);
  t.size_ = shape_size(t.shape_);
  if (data == nullptr && t.size_ > 0)
    throw std::invalid_argument("Tensor::view: no memory for shape " + shape_to_string(t.shape_));
  return t;
}

Tensor Tensor::view(std::shared_ptr<float[]> owner, float* data, Shape shape) {
  Tensor t = view(data, std::move(shape));
  t.storage_ = std::move(owner);
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  if (shape_size(shape) != size())
    throw std::invalid_argument("Tensor::reshaped: cannot reshape " + shape_to_string(shape_) + " to " +
                                shape_to_string(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;  // same size
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (shape_.empty() || begin < 0 || end < begin || end > shape_[0])
    throw std::out_of_range("Tensor::rows: [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") outside " + shape_to_string(shape_));
  Tensor t = *this;
  int64_t row = shape_[0] ? size() / shape_[0] : 0;
  t.data_ = data_ + begin * row;
  t.shape_[0] = end - begin;
  t.size_ = (end - begin) * row;
  return t;
}

Tensor Tensor::clone() const {
  if (data_ == nullptr) return {};  // a default tensor holds nothing to copy
  Tensor t(shape_);
  if (size()) std::memcpy(t.data_, data_, size() * sizeof(float));
  return t;
}

}  // namespace attn
