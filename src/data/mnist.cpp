// Finds and loads an MNIST-shaped data set in a directory: the four IDX files (each raw or
// .gz, as Debian's dataset-fashion-mnist ships them) or else Keras' mnist.npz, and checks
// that images and labels agree. Also where that directory lives by default.
// Deliberately does not download anything: scripts/setup.sh fetches and verifies the data.
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "attn/data.hpp"

namespace attn::data {
namespace {

namespace fs = std::filesystem;

// The IDX file `name` in dir, raw preferred over .gz when both exist.
std::optional<std::string> find_idx(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  for (const std::string& candidate : {name, name + ".gz"}) {
    fs::path p = dir / candidate;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return std::nullopt;
}

Split load_idx_split(const std::string& images_path, const std::string& labels_path) {
  Split s{load_idx_images(images_path), load_idx_labels(labels_path)};
  if (s.x.dim(0) != s.y.dim(0))
    throw DataError(labels_path + ": " + std::to_string(s.y.dim(0)) + " labels but " + images_path + " has " +
                    std::to_string(s.x.dim(0)) + " images");
  if (s.x.dim(0) == 0) throw DataError(images_path + ": holds no images");
  return s;
}

// A split of 0 images of the same size as `other` (the split a caller did not ask for).
Split no_images_like(const Split& other) { return {Tensor({0, other.x.dim(1), other.x.dim(2)}), Tensor({0})}; }

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

Mnist load_mnist(const std::string& dir, Splits splits) {
  std::error_code ec;
  const fs::path d(dir);
  if (!fs::exists(d, ec)) throw DataError("MNIST directory " + dir + " does not exist");
  if (!fs::is_directory(d, ec)) throw DataError("MNIST directory " + dir + " is not a directory");

  const char* names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                          "t10k-labels-idx1-ubyte"};
  const bool with_train = splits == Splits::kBoth;
  std::optional<std::string> found[4];
  int missing = -1;
  for (int i = with_train ? 0 : 2; i < 4; ++i) {
    found[i] = find_idx(d, names[i]);
    if (!found[i] && missing < 0) missing = i;
  }

  Mnist m;
  if (missing < 0) {
    m.test = load_idx_split(*found[2], *found[3]);
    m.train = with_train ? load_idx_split(*found[0], *found[1]) : no_images_like(m.test);
  } else {
    // A half-present IDX set falls back to mnist.npz, and the error names the first gap.
    const fs::path npz = d / "mnist.npz";
    if (!fs::is_regular_file(npz, ec))
      throw DataError(dir + ": no " + names[missing] + "[.gz] or mnist.npz");
    m = load_npz(npz.string(), splits);
    if ((with_train && m.train.x.dim(0) == 0) || m.test.x.dim(0) == 0)
      throw DataError(npz.string() + ": " + (m.test.x.dim(0) == 0 ? "x_test" : "x_train") + " holds no images");
  }
  if (!with_train) return m;  // load_npz or the IDX branch left train as 0 images
  if (m.train.x.dim(1) != m.test.x.dim(1) || m.train.x.dim(2) != m.test.x.dim(2))
    throw DataError(dir + ": training images are " + std::to_string(m.train.x.dim(1)) + "x" +
                    std::to_string(m.train.x.dim(2)) + " but test images are " + std::to_string(m.test.x.dim(1)) +
                    "x" + std::to_string(m.test.x.dim(2)));
  return m;
}

std::string default_mnist_dir() {
  // Empty variables count as unset, as the XDG base-directory spec asks.
  if (std::string v = env("ATTN_DATA_DIR"); !v.empty()) return v;
  if (std::string v = env("XDG_CACHE_HOME"); !v.empty()) return (fs::path(v) / "attn" / "mnist").string();
  std::string home = env("HOME");
  if (home.empty()) {
    // No $HOME (some service managers): ask the password database, as a shell would.
    if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir) home = pw->pw_dir;
  }
  const fs::path base = home.empty() ? fs::current_path() : fs::path(home);
  return (base / ".cache" / "attn" / "mnist").string();
}

}  // namespace attn::data
