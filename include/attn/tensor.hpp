// Tensor: a float32 shape plus 64-byte aligned storage, owned (shared) or a view.
// Deliberately simple: no broadcasting, no autograd, no dtype other than float32.
// Copies share storage (cheap); use clone() for a deep copy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace attn {

using Shape = std::vector<int64_t>;

// Number of elements of a shape (1 for a scalar shape {}).
int64_t shape_size(const Shape& shape);
// "(784, 1)" style text, with None for a -1 (unknown batch) dimension.
std::string shape_to_string(const Shape& shape);
// A per-sample shape with Keras' batch axis in front: "(None, 6)", "(None, 784, 1)".
std::string batch_shape_to_string(const Shape& per_sample);

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled tensor of the given shape.
  explicit Tensor(Shape shape);
  Tensor(Shape shape, const std::vector<float>& values);
  // A view over memory the caller keeps alive.
  static Tensor view(float* data, Shape shape);
  // A view into `owner`'s memory that keeps it alive (a model's weights: a layer shared with
  // another model may outlive this one).
  static Tensor view(std::shared_ptr<float[]> owner, float* data, Shape shape);

  const Shape& shape() const { return shape_; }
  int64_t dim(int axis) const { return shape_.at(axis < 0 ? shape_.size() + axis : axis); }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t size() const { return size_; }
  bool empty() const { return data_ == nullptr; }
  float* data() { return data_; }
  const float* data() const { return data_; }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }

  // Same storage, new shape with the same element count.
  Tensor reshaped(Shape shape) const;
  // Rows [begin, end) along axis 0, sharing storage.
  Tensor rows(int64_t begin, int64_t end) const;
  Tensor clone() const;
  std::vector<float> to_vector() const { return {data_, data_ + size()}; }

 private:
  std::shared_ptr<float[]> storage_;
  float* data_ = nullptr;
  Shape shape_;
  // shape_size(shape_) (1 for the shape {}; 0 for a default-constructed tensor, which holds
  // nothing), kept in step: size() sits in inner loops.
  int64_t size_ = 0;
};

// 64-byte aligned, zero-initialised float buffer, touched once at allocation so
// later writes hit already-mapped pages.
std::shared_ptr<float[]> allocate_floats(int64_t count);

}  // namespace attn
