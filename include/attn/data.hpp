// Data set loaders: MNIST IDX (raw or gzip), Keras' mnist.npz, any NumPy .npz, and a directory
// finder; NumPy .npy/.npz writers.
// Every loader checks the header against the file size before allocating and throws
// attn::DataError naming the file and what is wrong. Pixels stay 0..255 as Keras loads them.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "attn/tensor.hpp"

namespace attn::data {

class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Split {
  Tensor x;  // [n, rows, cols], values 0..255 as float
  Tensor y;  // [n], class ids as float
};

struct Mnist {
  Split train;
  Split test;
};

// IDX image file (magic 2051), raw or gzip (detected from the content, not the name).
Tensor load_idx_images(const std::string& path);
// IDX label file (magic 2049), raw or gzip.
Tensor load_idx_labels(const std::string& path);
// Which splits to read: evaluating or predicting needs only the test set, and the training
// images are 188 MB of floats that would be read and converted for nothing.
enum class Splits { kBoth, kTestOnly };
// Keras mnist.npz (x_train, y_train, x_test, y_test), zip stored or deflated. With kTestOnly,
// train is left empty.
Mnist load_npz(const std::string& path, Splits splits = Splits::kBoth);
// Arrays of any NumPy .npz (np.savez or np.savez_compressed), by name without ".npy": each a
// float32 tensor of its stored shape (integer, bool, float32 and float64 arrays; C order). Only
// the arrays named are read; a name the file lacks is an error naming the file and the arrays
// it holds.
std::map<std::string, Tensor> load_npz_arrays(const std::string& path, const std::vector<std::string>& names);
// The names of the arrays a .npz holds, in file order.
std::vector<std::string> npz_array_names(const std::string& path);
// float32 arrays as NumPy writes them (np.save, np.savez: '<f4', C order, stored members),
// written to a temporary name and renamed.
void save_npy(const std::string& path, const Tensor& array);
void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& arrays);

// A directory holding train-images-idx3-ubyte[.gz] etc. (or mnist.npz); throws naming
// the directory and the missing file. With kTestOnly, only the t10k files are needed and
// train is left empty.
Mnist load_mnist(const std::string& dir, Splits splits = Splits::kBoth);

// One grey image of a digit as a [rows, cols] tensor of 0..255 values, MNIST-style
// (a light digit on a dark background): PNG (any colour type; colour is averaged to grey,
// transparency composited on white) or PGM (P2/P5). A mostly light picture (dark ink on
// paper) is inverted; anything not rows x cols is area-resampled to it.
struct ImageOptions {
  int64_t rows = 28;
  int64_t cols = 28;
  bool auto_invert = true;
};
Tensor load_grey_image(const std::string& path, ImageOptions options = {});

// $ATTN_DATA_DIR if set, else $XDG_CACHE_HOME/attn/mnist, else ~/.cache/attn/mnist.
std::string default_mnist_dir();

}  // namespace attn::data
