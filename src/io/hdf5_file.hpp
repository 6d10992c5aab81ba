// A thin RAII layer over the HDF5 C API for the model-file code: files on disk or in
// memory (a .keras archive holds its weights file as a zip member), groups, float and
// int64 datasets, string attributes. Every failure throws attn::io::FileError naming the
// file (the name the user gave) and the HDF5 path. HDF5's own error printing is
// switched off, so the user sees one clear line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <hdf5.h>

#include "attn/tensor.hpp"

namespace attn::io::h5 {

// Owns one HDF5 identifier and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  hid_t release() {  // gives up ownership without closing
    const hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return id;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Turns off HDF5's automatic error-stack printing (idempotent, cheap).
void silence_errors();

struct Array {
  Shape shape;
  std::vector<float> values;
};

// An open HDF5 file plus the name errors mention.
class File {
 public:
  // Opens an existing file read-only; a file that is not HDF5 is a FileError.
  static File open(const std::string& path);
  // Opens an HDF5 image held in memory (copied), read-only. `name` is for messages.
  static File open_image(const std::vector<char>& bytes, const std::string& name);
  // A new empty file in memory; image() returns its bytes.
  static File create_in_memory(const std::string& name);
  // A new file on disk (truncated if it exists).
  static File create(const std::string& path, const std::string& name);

  const std::string& name() const { return name_; }
  hid_t root() const { return file_.get(); }
  std::vector<char> image();
  void close();

  // Path helpers; `path` is relative to the root ("layers/dense/vars").
  bool exists(const std::string& path) const;
  bool is_group(const std::string& path) const;
  bool is_dataset(const std::string& path) const;
  // Opens (or, for ensure_group, creates with parents) a group.
  Handle open_group(const std::string& path) const;
  Handle ensure_group(const std::string& path) const;
  // Child link names of a group, in name order.
  std::vector<std::string> children(const std::string& path) const;

  // Reads a floating-point dataset (any float width; converted to float32).
  Array read_floats(const std::string& path) const;
  int64_t read_int64(const std::string& path) const;  // a scalar integer dataset
  // Writes a float32 dataset; an empty shape writes an HDF5 scalar.
  void write_floats(const std::string& path, const Shape& shape, const float* values) const;
  void write_int64(const std::string& path, int64_t value) const;

  // String attribute(s) of the object at `path` ("" = root): a scalar or an array, fixed
  // or variable length. Absent -> empty and *found = false. A numeric empty array reads
  // as an empty list (tf.keras writes weight_names=[] that way).
  std::vector<std::string> read_string_attr(const std::string& path, const std::string& attr,
                                            bool* found = nullptr) const;
  bool has_attr(const std::string& path, const std::string& attr) const;
  void write_string_attr(const std::string& path, const std::string& attr, const std::string& value) const;
  // A 1-D attribute of fixed-length strings, as h5py writes a list of bytes (Keras' layer_names,
  // weight_names); an empty list is an empty float64 array, as h5py writes [].
  void write_string_list_attr(const std::string& path, const std::string& attr,
                              const std::vector<std::string>& values) const;

  [[noreturn]] void fail(const std::string& what) const;

 private:
  std::string name_;
  Handle file_;
  Handle fapl_;
};

}  // namespace attn::io::h5
