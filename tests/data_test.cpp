// Data loaders: small IDX (raw and gzip) and npz (stored and deflated) files written into a
// temporary directory, loaded back, and each kind of damage checked for a message that names
// the file and the problem. The real MNIST and Fashion-MNIST are checked only when present
// (scripts/setup.sh fetches MNIST; Debian's dataset-fashion-mnist ships the other).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <zip.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "attn/data.hpp"
#include "temp_dir.hpp"

namespace attn::data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

// Each test's files live in their own directory.
struct TempDir : attn::testing::TempDir {
  TempDir() : attn::testing::TempDir("attn-data-test") {}
};

void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(v >> s));
}

// An IDX file: big-endian magic and dimensions, then the payload.
Bytes idx(uint32_t magic, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes b;
  put_be32(b, magic);
  for (uint32_t d : dims) put_be32(b, d);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// n images of rows x cols whose pixel i is (i * 37 + 11) mod 256, so values span 0..255.
Bytes pixels(size_t n) {
  Bytes p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>((i * 37 + 11) % 256);
  return p;
}

void write_raw(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile gz = gzopen(path.c_str(), "wb9");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
}

Bytes read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

// A .npy file (format 1.0 or 2.0) with the header padded to 64 bytes as NumPy does.
Bytes npy(const std::string& descr, const std::string& shape, const Bytes& data, bool fortran = false,
          int major = 1) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                     ", 'shape': " + shape + ", }";
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(major), 0};
  const uint32_t len = static_cast<uint32_t>(dict.size());
  for (size_t i = 0; i < prefix - 8; ++i) b.push_back(static_cast<unsigned char>(len >> (8 * i)));
  b.insert(b.end(), dict.begin(), dict.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

template <typename T>
Bytes little_endian(const std::vector<T>& values) {
  // One memcpy into a sized buffer (the test machines are little-endian, as .npy '<' is);
  // inserting byte ranges trips a false GCC 12 -Wstringop-overflow.
  Bytes b(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(b.data(), values.data(), b.size());
  return b;
}

void write_zip(const std::string& path, const std::map<std::string, Bytes>& members, bool deflate) {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(z, nullptr) << "zip_open error " << err;
  for (const auto& [name, bytes] : members) {
    // The buffer must outlive zip_close, which is where libzip reads it; `members` does.
    zip_source_t* src = zip_source_buffer(z, bytes.data(), bytes.size(), 0);
    ASSERT_NE(src, nullptr);
    zip_int64_t index = zip_file_add(z, name.c_str(), src, ZIP_FL_OVERWRITE);
    ASSERT_GE(index, 0) << zip_strerror(z);
    ASSERT_EQ(zip_set_file_compression(z, static_cast<zip_uint64_t>(index), deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0),
              0);
  }
  ASSERT_EQ(zip_close(z), 0) << zip_strerror(z);
}

// A small Keras-shaped npz: 3 training and 2 test images of 2x4, labels 7 5 9 / 0 255.
std::map<std::string, Bytes> mnist_members() {
  return {{"x_train.npy", npy("|u1", "(3, 2, 4)", pixels(24))},
          {"y_train.npy", npy("|u1", "(3,)", {7, 5, 9})},
          {"x_test.npy", npy("|u1", "(2, 2, 4)", pixels(16))},
          {"y_test.npy", npy("|u1", "(2,)", {0, 255})}};
}

// The IDX twin of mnist_members(), written raw or gzip.
void write_idx_set(const TempDir& dir, bool gzip) {
  auto w = [&](const std::string& name, const Bytes& b) {
    if (gzip) write_gz(dir.file(name + ".gz"), b);
    else write_raw(dir.file(name), b);
  };
  w("train-images-idx3-ubyte", idx(2051, {3, 2, 4}, pixels(24)));
  w("train-labels-idx1-ubyte", idx(2049, {3}, {7, 5, 9}));
  w("t10k-images-idx3-ubyte", idx(2051, {2, 2, 4}, pixels(16)));
  w("t10k-labels-idx1-ubyte", idx(2049, {2}, {0, 255}));
}

// The DataError message of f(), or a failure when it does not throw one.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than DataError: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

#define EXPECT_MESSAGE(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

void expect_small_mnist(const Mnist& m) {
  EXPECT_EQ(m.train.x.shape(), (Shape{3, 2, 4}));
  EXPECT_EQ(m.train.y.shape(), (Shape{3}));
  EXPECT_EQ(m.test.x.shape(), (Shape{2, 2, 4}));
  EXPECT_EQ(m.test.y.shape(), (Shape{2}));
  Bytes p = pixels(24);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(m.train.x[i], static_cast<float>(p[i]));
  EXPECT_EQ(m.train.y.to_vector(), (std::vector<float>{7, 5, 9}));
  EXPECT_EQ(m.test.y.to_vector(), (std::vector<float>{0, 255}));
}

// ---- IDX ----

TEST(Idx, RawImagesAndLabels) {
  TempDir dir;
  write_raw(dir.file("img"), idx(2051, {3, 2, 4}, pixels(24)));
  write_raw(dir.file("lab"), idx(2049, {3}, {7, 5, 9}));
  Tensor x = load_idx_images(dir.file("img"));
  ASSERT_EQ(x.shape(), (Shape{3, 2, 4}));
  Bytes p = pixels(24);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(x[i], static_cast<float>(p[i]));
  // Stays 0..255 as Keras loads it, not normalised.
  EXPECT_EQ(*std::max_element(x.data(), x.data() + 24), static_cast<float>(*std::max_element(p.begin(), p.end())));
  EXPECT_GT(x[1], 1.0f);
  EXPECT_EQ(load_idx_labels(dir.file("lab")).to_vector(), (std::vector<float>{7, 5, 9}));
}

// Raw files are read in pieces straight into the tensor: 150 images are 117,600 bytes, one
// full 64 KiB piece and a partial one; gzip gives the same values.
TEST(Idx, LargerThanOneReadPieceRawAndGzip) {
  TempDir dir;
  const Bytes p = pixels(150 * 784);
  write_raw(dir.file("raw"), idx(2051, {150, 28, 28}, p));
  write_gz(dir.file("gz"), idx(2051, {150, 28, 28}, p));
  for (const char* name : {"raw", "gz"}) {
    Tensor x = load_idx_images(dir.file(name));
    ASSERT_EQ(x.shape(), (Shape{150, 28, 28})) << name;
    int64_t wrong = 0;
    for (int64_t i = 0; i < x.size(); ++i) wrong += x[i] != static_cast<float>(p[static_cast<size_t>(i)]);
    EXPECT_EQ(wrong, 0) << name;
  }
}

TEST(Idx, GzipIsDetectedByContentNotName) {
  TempDir dir;
  write_gz(dir.file("images-no-suffix"), idx(2051, {3, 2, 4}, pixels(24)));
  write_raw(dir.file("labels.gz"), idx(2049, {3}, {7, 5, 9}));  // misnamed raw file
  EXPECT_EQ(load_idx_images(dir.file("images-no-suffix")).shape(), (Shape{3, 2, 4}));
  EXPECT_EQ(load_idx_labels(dir.file("labels.gz")).to_vector(), (std::vector<float>{7, 5, 9}));
}

TEST(Idx, EmptySetIsAllowed) {
  TempDir dir;
  write_raw(dir.file("img"), idx(2051, {0, 28, 28}, {}));
  EXPECT_EQ(load_idx_images(dir.file("img")).shape(), (Shape{0, 28, 28}));
}

TEST(Idx, MissingFile) {
  TempDir dir;
  std::string msg = error_of([&] { load_idx_images(dir.file("t10k-images-idx3-ubyte")); });
  EXPECT_MESSAGE(msg, "t10k-images-idx3-ubyte: cannot open: No such file or directory");
}

TEST(Idx, TruncatedRaw) {
  TempDir dir;
  Bytes b = idx(2051, {10, 28, 28}, pixels(1000));
  write_raw(dir.file("t10k-images-idx3-ubyte"), b);
  std::string msg = error_of([&] { load_idx_images(dir.file("t10k-images-idx3-ubyte")); });
  EXPECT_MESSAGE(msg, "t10k-images-idx3-ubyte: truncated: header says 10 images of 28x28 (7856 bytes) but the file "
                      "has 1016 bytes");
  write_raw(dir.file("short"), {0, 0, 8, 1, 0});
  msg = error_of([&] { load_idx_labels(dir.file("short")); });
  EXPECT_MESSAGE(msg, "short: truncated");
}

TEST(Idx, TruncatedGzip) {
  TempDir dir;
  // The stream is complete but holds fewer bytes than the header claims.
  write_gz(dir.file("short-payload.gz"), idx(2049, {100}, Bytes(60, 1)));
  std::string msg = error_of([&] { load_idx_labels(dir.file("short-payload.gz")); });
  EXPECT_MESSAGE(msg, "short-payload.gz: truncated: header says 100 labels (108 bytes) but the decompressed stream "
                      "has 68 bytes");
  // The compressed stream itself is cut off, as an interrupted download would be.
  write_gz(dir.file("full.gz"), idx(2051, {200, 28, 28}, pixels(200 * 784)));
  Bytes gz = read_all(dir.file("full.gz"));
  gz.resize(gz.size() / 2);
  write_raw(dir.file("cut.gz"), gz);
  msg = error_of([&] { load_idx_images(dir.file("cut.gz")); });
  EXPECT_MESSAGE(msg, "cut.gz: truncated");
}

TEST(Idx, TrailingData) {
  TempDir dir;
  write_raw(dir.file("long"), idx(2049, {3}, {1, 2, 3, 4}));
  EXPECT_MESSAGE(error_of([&] { load_idx_labels(dir.file("long")); }), "long: trailing data");
  write_gz(dir.file("long.gz"), idx(2049, {3}, {1, 2, 3, 4}));
  EXPECT_MESSAGE(error_of([&] { load_idx_labels(dir.file("long.gz")); }), "long.gz: trailing data");
}

TEST(Idx, WrongMagic) {
  TempDir dir;
  write_raw(dir.file("t10k-images-idx3-ubyte"), idx(2049, {3}, {1, 2, 3}));
  std::string msg = error_of([&] { load_idx_images(dir.file("t10k-images-idx3-ubyte")); });
  EXPECT_MESSAGE(msg, "t10k-images-idx3-ubyte: wrong magic number 0x00000801 (expected 2051 for an IDX image file)");
  write_raw(dir.file("floats"), idx(0x0d01, {3}, Bytes(12)));
  msg = error_of([&] { load_idx_labels(dir.file("floats")); });
  EXPECT_MESSAGE(msg, "floats: wrong magic number 0x00000d01");
  EXPECT_MESSAGE(msg, "element type 0x0d");
  write_raw(dir.file("text"), {'h', 'e', 'l', 'l', 'o', '\n'});
  EXPECT_MESSAGE(error_of([&] { load_idx_labels(dir.file("text")); }), "text: wrong magic number");
}

TEST(Idx, HugeHeaderFailsBeforeAllocating) {
  TempDir dir;
  // 4 billion images of 65535x65535: must be a size error, never a bad_alloc.
  write_raw(dir.file("huge"), idx(2051, {0xffffffffu, 65535, 65535}, pixels(100)));
  EXPECT_MESSAGE(error_of([&] { load_idx_images(dir.file("huge")); }), "huge: header says 4294967295 images");
  write_gz(dir.file("huge.gz"), idx(2051, {1000000, 1000, 1000}, pixels(100)));
  EXPECT_MESSAGE(error_of([&] { load_idx_images(dir.file("huge.gz")); }), "huge.gz: truncated");
}

// ---- npz ----

TEST(Npz, StoredAndDeflated) {
  for (bool deflate : {false, true}) {
    TempDir dir;
    write_zip(dir.file("mnist.npz"), mnist_members(), deflate);
    expect_small_mnist(load_npz(dir.file("mnist.npz")));
  }
}

TEST(Npz, OtherDtypesAndFormatVersion2) {
  TempDir dir;
  std::vector<float> fx(24);
  Bytes p = pixels(24);
  for (int i = 0; i < 24; ++i) fx[i] = p[i];
  std::map<std::string, Bytes> m = {
      {"x_train.npy", npy("<f4", "(3, 2, 4)", little_endian(fx), false, 2)},
      {"y_train.npy", npy("<i8", "(3,)", little_endian<int64_t>({7, 5, 9}))},
      {"x_test.npy", npy("|u1", "(2, 2, 4)", pixels(16), false, 3)},
      {"y_test.npy", npy(">i4", "(2,)", {0, 0, 0, 0, 0, 0, 0, 255})}};
  write_zip(dir.file("mnist.npz"), m, true);
  expect_small_mnist(load_npz(dir.file("mnist.npz")));
}

TEST(Npz, FortranOrder) {
  TempDir dir;
  auto m = mnist_members();
  m["x_train.npy"] = npy("|u1", "(3, 2, 4)", pixels(24), true);
  write_zip(dir.file("mnist.npz"), m, false);
  std::string msg = error_of([&] { load_npz(dir.file("mnist.npz")); });
  EXPECT_MESSAGE(msg, "mnist.npz member x_train.npy: fortran_order is True");
}

TEST(Npz, BadNpyMagic) {
  TempDir dir;
  auto m = mnist_members();
  m["x_test.npy"][1] = 'X';
  write_zip(dir.file("mnist.npz"), m, true);
  std::string msg = error_of([&] { load_npz(dir.file("mnist.npz")); });
  EXPECT_MESSAGE(msg, "mnist.npz member x_test.npy: not a .npy file (bad magic");
}

TEST(Npz, BadHeaderAndDtype) {
  TempDir dir;
  auto m = mnist_members();
  m["y_test.npy"] = npy("<c16", "(2,)", Bytes(32));
  write_zip(dir.file("mnist.npz"), m, false);
  EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("mnist.npz")); }), "member y_test.npy: bad .npy header (unsupported descr '<c16'");
  m = mnist_members();
  m["y_train.npy"] = npy("|u1", "(3, ", {7, 5, 9});
  write_zip(dir.file("mnist.npz"), m, false);
  EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("mnist.npz")); }), "member y_train.npy: bad .npy header");
}

TEST(Npz, SizeMismatchesAndLabels) {
  TempDir dir;
  auto m = mnist_members();
  m["x_train.npy"] = npy("|u1", "(3, 2, 4)", pixels(20));
  write_zip(dir.file("mnist.npz"), m, true);
  EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("mnist.npz")); }),
                 "member x_train.npy: truncated: shape (3, 2, 4) needs");
  m = mnist_members();
  m["y_test.npy"] = npy("|u1", "(3,)", {1, 2, 3});
  write_zip(dir.file("mnist.npz"), m, true);
  EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("mnist.npz")); }),
                 "mnist.npz: x_test.npy has 2 images but y_test.npy has 3 labels");
  m = mnist_members();
  m["y_test.npy"] = npy("<i4", "(2,)", little_endian<int32_t>({1, -1}));
  write_zip(dir.file("mnist.npz"), m, true);
  EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("mnist.npz")); }), "member y_test.npy: label 1 is -1");
  m = mnist_members();
  m.erase("y_test.npy");
  write_zip(dir.file("mnist.npz"), m, true);
  EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("mnist.npz")); }), "mnist.npz: no member y_test.npy");
  // Float pixels must be MNIST's 0..255: a NaN or 1e6 is not an image the model can read.
  for (const float bad : {1e6f, -1.0f, std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> fx(24, 3.0f);
    fx[5] = bad;
    m = mnist_members();
    m["x_train.npy"] = npy("<f4", "(3, 2, 4)", little_endian(fx));
    write_zip(dir.file("mnist.npz"), m, true);
    EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("mnist.npz")); }), "member x_train.npy: pixel 5 is");
  }
}

TEST(Npz, CorruptZip) {
  TempDir dir;
  write_raw(dir.file("mnist.npz"), {'n', 'o', 't', ' ', 'a', ' ', 'z', 'i', 'p'});
  EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("mnist.npz")); }), "mnist.npz: not a valid zip archive");
  EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("absent.npz")); }), "absent.npz: cannot open");

  // Damage inside a stored member's data: only the CRC check can notice.
  auto m = mnist_members();
  m["x_train.npy"] = npy("|u1", "(300, 2, 4)", pixels(2400));
  m["y_train.npy"] = npy("|u1", "(300,)", Bytes(300, 1));
  write_zip(dir.file("crc.npz"), m, false);
  Bytes z = read_all(dir.file("crc.npz"));
  const std::string marker = "(300, 2, 4)";
  auto it = std::search(z.begin(), z.end(), marker.begin(), marker.end());
  ASSERT_NE(it, z.end());
  it[200] ^= 0xff;  // well inside the pixel bytes that follow the header
  write_raw(dir.file("crc.npz"), z);
  std::string msg = error_of([&] { load_npz(dir.file("crc.npz")); });
  EXPECT_MESSAGE(msg, "crc.npz member x_train.npy: corrupt");

  // A zip cut in half loses its central directory.
  z = read_all(dir.file("crc.npz"));
  z.resize(z.size() / 2);
  write_raw(dir.file("cut.npz"), z);
  EXPECT_MESSAGE(error_of([&] { load_npz(dir.file("cut.npz")); }), "cut.npz: not a valid zip archive");
}

// ---- any .npz: named arrays of any shape; .npy and .npz written ----

TEST(NpzArrays, NamedArraysOfAnyShapeAndElementType) {
  TempDir dir;
  std::map<std::string, Bytes> m = {
      {"ids.npy", npy("<i8", "(2, 3)", little_endian<int64_t>({0, 5, -3, 16777216, 7, 1}))},
      {"targets.npy", npy("<f8", "(2,)", little_endian<double>({0.25, -1.5}))},
      {"flags.npy", npy("|b1", "(3, 1)", {1, 0, 1})},
      {"scalar.npy", npy("<f4", "()", little_endian<float>({3.5f}))},
      {"notes.txt", {'h', 'i'}}};
  write_zip(dir.file("a.npz"), m, true);
  EXPECT_EQ(npz_array_names(dir.file("a.npz")).size(), 4u);  // the .txt is not an array
  auto a = load_npz_arrays(dir.file("a.npz"), {"ids", "targets", "flags", "scalar"});
  EXPECT_EQ(a.at("ids").shape(), (Shape{2, 3}));
  EXPECT_EQ(a.at("ids").to_vector(), (std::vector<float>{0, 5, -3, 16777216, 7, 1}));
  EXPECT_EQ(a.at("targets").to_vector(), (std::vector<float>{0.25f, -1.5f}));
  EXPECT_EQ(a.at("flags").shape(), (Shape{3, 1}));
  EXPECT_EQ(a.at("flags").to_vector(), (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(a.at("scalar").rank(), 0);
  EXPECT_EQ(a.at("scalar")[0], 3.5f);
  // Only what is asked for is read: a damaged array not named does not stop the others.
  m["ids.npy"] = npy("<i8", "(2, 3)", Bytes(8));
  write_zip(dir.file("b.npz"), m, false);
  EXPECT_EQ(load_npz_arrays(dir.file("b.npz"), {"targets"}).size(), 1u);
  EXPECT_MESSAGE(error_of([&] { load_npz_arrays(dir.file("b.npz"), {"ids"}); }), "b.npz member ids.npy: truncated");
}

TEST(NpzArrays, AMissingArrayIsNamedWithTheArraysTheFileHolds) {
  TempDir dir;
  write_zip(dir.file("a.npz"), mnist_members(), false);
  const std::string msg = error_of([&] { load_npz_arrays(dir.file("a.npz"), {"x_train", "x_val"}); });
  EXPECT_MESSAGE(msg, "a.npz: no array 'x_val'");
  EXPECT_MESSAGE(msg, "x_test");
  EXPECT_MESSAGE(error_of([&] { load_npz_arrays(dir.file("none.npz"), {"x"}); }), "none.npz: cannot open");
  write_raw(dir.file("text.npz"), {'n', 'o', 't', ' ', 'a', ' ', 'z', 'i', 'p'});
  EXPECT_MESSAGE(error_of([&] { load_npz_arrays(dir.file("text.npz"), {"x"}); }), "text.npz: not a valid zip archive");
}

TEST(NpzArrays, WritesWhatNumPyWrites) {
  TempDir dir;
  Tensor t({2, 3});
  for (int i = 0; i < 6; ++i) t[i] = 0.5f * static_cast<float>(i) - 1.0f;
  save_npy(dir.file("t.npy"), t);
  // np.save's bytes for float32 (2, 3): magic, version 1.0, header length 118, the header
  // padded with spaces to a 128-byte preamble, the values little-endian.
  Bytes expected = npy("<f4", "(2, 3)", little_endian(t.to_vector()));
  EXPECT_EQ(read_all(dir.file("t.npy")), expected);
  EXPECT_EQ(expected.size(), 128u + 24u);
  Tensor v({4});
  for (int i = 0; i < 4; ++i) v[i] = static_cast<float>(i * i);
  save_npz(dir.file("a.npz"), {{"t", t}, {"v", v}, {"s", Tensor(Shape{})}});
  EXPECT_EQ(npz_array_names(dir.file("a.npz")), (std::vector<std::string>{"t", "v", "s"}));
  auto back = load_npz_arrays(dir.file("a.npz"), {"t", "v", "s"});
  EXPECT_EQ(back.at("t").shape(), t.shape());
  EXPECT_EQ(back.at("t").to_vector(), t.to_vector());
  EXPECT_EQ(back.at("v").shape(), (Shape{4}));  // "(4,)", a 1-tuple
  EXPECT_EQ(back.at("v").to_vector(), v.to_vector());
  EXPECT_EQ(back.at("s").rank(), 0);
  EXPECT_MESSAGE(error_of([&] { save_npz(dir.file("b.npz"), {{"t", t}, {"t", v}}); }), "two arrays named 't'");
  EXPECT_MESSAGE(error_of([&] { save_npz(dir.file("b.npz"), {{"a/b", t}}); }), "array name 'a/b'");
  EXPECT_FALSE(fs::exists(dir.file("b.npz")));
}

// NumPy itself, when installed (the set-up installs python3-numpy): it reads the .npz and .npy
// attn writes, and attn reads what np.savez_compressed writes.
TEST(NpzArrays, NumPyReadsAndWritesTheSameFiles) {
  if (std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with numpy is not available";
  TempDir dir;
  Tensor t({2, 3});
  for (int i = 0; i < 6; ++i) t[i] = 0.1f * static_cast<float>(i) - 0.25f;
  save_npz(dir.file("attn.npz"), {{"t", t}});
  save_npy(dir.file("attn.npy"), t);
  const std::string check =
      "import numpy as np, sys; d = sys.argv[1]; a = np.load(d + '/attn.npz')['t']; b = np.load(d + '/attn.npy'); "
      "w = (0.1 * np.arange(6, dtype=np.float32) - 0.25).astype(np.float32).reshape(2, 3); "
      "assert a.dtype == np.float32 and a.shape == (2, 3) and (a == b).all() and np.allclose(a, w, atol=1e-7), a; "
      "np.savez_compressed(d + '/numpy.npz', ids=np.array([[3, 0], [1, 2**40]], dtype=np.int64), "
      "x=np.linspace(-1, 1, 5), m=np.array([True, False]))";
  ASSERT_EQ(std::system(("/usr/bin/python3 -c \"" + check + "\" '" + dir.str() + "'").c_str()), 0);
  auto a = load_npz_arrays(dir.file("numpy.npz"), {"ids", "x", "m"});
  EXPECT_EQ(a.at("ids").shape(), (Shape{2, 2}));
  EXPECT_EQ(a.at("ids").to_vector(), (std::vector<float>{3, 0, 1, 1099511627776.0f}));
  EXPECT_EQ(a.at("x").to_vector(), (std::vector<float>{-1, -0.5f, 0, 0.5f, 1}));
  EXPECT_EQ(a.at("m").to_vector(), (std::vector<float>{1, 0}));
}

// ---- directory finder ----

TEST(Mnist, LoadsIdxRawAndGzip) {
  for (bool gzip : {false, true}) {
    TempDir dir;
    write_idx_set(dir, gzip);
    expect_small_mnist(load_mnist(dir.str()));
  }
}

TEST(Mnist, FallsBackToNpz) {
  TempDir dir;
  write_zip(dir.file("mnist.npz"), mnist_members(), true);
  write_raw(dir.file("train-images-idx3-ubyte"), idx(2051, {3, 2, 4}, pixels(24)));  // an incomplete IDX set
  expect_small_mnist(load_mnist(dir.str()));
}

TEST(Mnist, MissingDirectoryOrFile) {
  TempDir dir;
  const std::string absent = dir.file("nowhere");
  EXPECT_MESSAGE(error_of([&] { load_mnist(absent); }), "MNIST directory " + absent + " does not exist");
  write_raw(dir.file("plain-file"), {1});
  EXPECT_MESSAGE(error_of([&] { load_mnist(dir.file("plain-file")); }), "is not a directory");
  EXPECT_MESSAGE(error_of([&] { load_mnist(dir.str()); }),
                 dir.str() + ": no train-images-idx3-ubyte[.gz] or mnist.npz");
  write_idx_set(dir, true);
  fs::remove(dir.file("t10k-labels-idx1-ubyte.gz"));
  EXPECT_MESSAGE(error_of([&] { load_mnist(dir.str()); }), dir.str() + ": no t10k-labels-idx1-ubyte[.gz] or mnist.npz");
}

// Evaluating needs only the test split: the training files may be absent and are not read.
TEST(Mnist, TestSplitAlone) {
  for (bool npz : {false, true}) {
    TempDir dir;
    if (npz) {
      write_zip(dir.file("mnist.npz"), mnist_members(), true);
    } else {
      write_idx_set(dir, false);
      fs::remove(dir.file("train-images-idx3-ubyte"));
      fs::remove(dir.file("train-labels-idx1-ubyte"));
    }
    const Mnist m = load_mnist(dir.str(), attn::data::Splits::kTestOnly);
    EXPECT_EQ(m.train.x.shape(), (attn::Shape{0, 2, 4}));
    EXPECT_EQ(m.train.y.size(), 0);
    EXPECT_EQ(m.test.x.shape(), (attn::Shape{2, 2, 4}));
    EXPECT_EQ(m.test.y[1], 255.0f);
    if (!npz) {
      EXPECT_MESSAGE(error_of([&] { load_mnist(dir.str()); }), "no train-images-idx3-ubyte");
    }
  }
}

TEST(Mnist, CountMismatch) {
  TempDir dir;
  write_idx_set(dir, false);
  write_raw(dir.file("train-labels-idx1-ubyte"), idx(2049, {4}, {1, 2, 3, 4}));
  std::string msg = error_of([&] { load_mnist(dir.str()); });
  EXPECT_MESSAGE(msg, "train-labels-idx1-ubyte: 4 labels but");
  EXPECT_MESSAGE(msg, "train-images-idx3-ubyte has 3 images");
}

// A split of zero images is valid IDX but nothing can be trained or evaluated on it.
TEST(Mnist, EmptySplitIsRefusedByName) {
  TempDir dir;
  write_idx_set(dir, false);
  write_raw(dir.file("t10k-images-idx3-ubyte"), idx(2051, {0, 2, 4}, {}));
  write_raw(dir.file("t10k-labels-idx1-ubyte"), idx(2049, {0}, {}));
  EXPECT_MESSAGE(error_of([&] { load_mnist(dir.str()); }), "t10k-images-idx3-ubyte: holds no images");
}

TEST(Mnist, DamagedFileInDirectoryNamesIt) {
  TempDir dir;
  write_idx_set(dir, true);
  Bytes gz = read_all(dir.file("t10k-images-idx3-ubyte.gz"));
  gz.resize(gz.size() - 6);
  write_raw(dir.file("t10k-images-idx3-ubyte.gz"), gz);
  EXPECT_MESSAGE(error_of([&] { load_mnist(dir.str()); }), "t10k-images-idx3-ubyte.gz: ");
}

// Sets or unsets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(Mnist, DefaultDirectory) {
  {
    ScopedEnv a("ATTN_DATA_DIR", "/data/mnist");
    EXPECT_EQ(default_mnist_dir(), "/data/mnist");
  }
  {
    ScopedEnv a("ATTN_DATA_DIR", "");
    ScopedEnv x("XDG_CACHE_HOME", "/xdg");
    EXPECT_EQ(default_mnist_dir(), "/xdg/attn/mnist");
  }
  {
    ScopedEnv a("ATTN_DATA_DIR", nullptr);
    ScopedEnv x("XDG_CACHE_HOME", nullptr);
    ScopedEnv h("HOME", "/home/someone");
    EXPECT_EQ(default_mnist_dir(), "/home/someone/.cache/attn/mnist");
  }
}

// ---- the real data sets, when installed ----

void expect_pixel_range(const Tensor& x) {
  auto [lo, hi] = std::minmax_element(x.data(), x.data() + x.size());
  EXPECT_EQ(*lo, 0.0f);
  EXPECT_EQ(*hi, 255.0f);
}

TEST(Mnist, RealMnistWhenPresent) {
  const std::string dir = default_mnist_dir();
  if (!fs::is_directory(dir)) GTEST_SKIP() << "no MNIST at " << dir << " (run scripts/setup.sh)";
  Mnist m = load_mnist(dir);
  EXPECT_EQ(m.train.x.shape(), (Shape{60000, 28, 28}));
  EXPECT_EQ(m.train.y.shape(), (Shape{60000}));
  EXPECT_EQ(m.test.x.shape(), (Shape{10000, 28, 28}));
  EXPECT_EQ(m.test.y.shape(), (Shape{10000}));
  EXPECT_EQ(m.train.y[0], 5.0f);  // the famous first training digit
  EXPECT_EQ(m.test.y[0], 7.0f);
  expect_pixel_range(m.train.x);
  expect_pixel_range(m.test.x);
  auto [lo, hi] = std::minmax_element(m.train.y.data(), m.train.y.data() + m.train.y.size());
  EXPECT_EQ(*lo, 0.0f);
  EXPECT_EQ(*hi, 9.0f);
}

TEST(Mnist, RealFashionMnistWhenPresent) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir)) GTEST_SKIP() << "no Fashion-MNIST at " << dir << " (apt install dataset-fashion-mnist)";
  Mnist m = load_mnist(dir);
  EXPECT_EQ(m.train.x.shape(), (Shape{60000, 28, 28}));
  EXPECT_EQ(m.train.y.shape(), (Shape{60000}));
  EXPECT_EQ(m.test.x.shape(), (Shape{10000, 28, 28}));
  EXPECT_EQ(m.test.y.shape(), (Shape{10000}));
  expect_pixel_range(m.train.x);
  auto [lo, hi] = std::minmax_element(m.test.y.data(), m.test.y.data() + m.test.y.size());
  EXPECT_EQ(*lo, 0.0f);
  EXPECT_EQ(*hi, 9.0f);
}

}  // namespace
}  // namespace attn::data
