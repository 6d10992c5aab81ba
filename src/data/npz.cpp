// NumPy arrays: Keras' mnist.npz and any other .npz (a zip, stored or deflated, via libzip, of
// .npy arrays), read as float32 tensors; float32 tensors written as .npy and .npz.
// The .npy header (format versions 1.0-3.0) is parsed here: C order only, integer or float
// element types of 1-8 bytes in either byte order, converted to float32 tensors.
// Deliberately not a general NumPy loader: no pickled objects, no Fortran order, no
// structured dtypes. Sizes are checked against the zip directory before allocating.
#include <zip.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "attn/data.hpp"
#include "attn/io.hpp"
#include "io/zip_archive.hpp"

namespace attn::data {
namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) { throw DataError(where + ": " + what); }

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};
using ZipPtr = std::unique_ptr<zip_t, ZipCloser>;
using ZipFilePtr = std::unique_ptr<zip_file_t, ZipFileCloser>;

// Element type from a 'descr' like '|u1', '<i8', '>f4'.
struct Dtype {
  char kind = 0;  // 'u', 'i', 'f', 'b'
  int size = 0;
  bool big_endian = false;
};

// The three keys NumPy writes: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
struct NpyHeader {
  Dtype dtype;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
  uint64_t data_offset = 0;
};

// A deliberately small parser for the Python literal NumPy writes as the header.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& where) : s_(text), where_(where) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        h.dtype = parse_descr(string_literal());
        have_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        have_order = true;
      } else if (key == "shape") {
        h.shape = tuple();
        have_shape = true;
      } else {
        bad("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_ws();
      if (peek() != '}') bad("expected ',' or '}'");
    }
    if (!have_descr || !have_order || !have_shape) bad("missing 'descr', 'fortran_order' or 'shape'");
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& what) {
    fail(where_, "bad .npy header (" + what + "): " + std::string(s_.substr(0, 120)));
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t')) ++pos_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string string_literal() {
    skip_ws();
    char q = peek();
    if (q != '\'' && q != '"') bad("expected a string");
    size_t end = s_.find(q, pos_ + 1);
    if (end == std::string_view::npos) bad("unterminated string");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_ws();
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    bad("expected True or False");
  }
  std::vector<uint64_t> tuple() {
    expect('(');
    std::vector<uint64_t> dims;
    while (true) {
      skip_ws();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') bad("expected a dimension");
      uint64_t d = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (d > (uint64_t{1} << 40)) bad("dimension too large");
        d = d * 10 + static_cast<uint64_t>(peek() - '0');
        ++pos_;
      }
      dims.push_back(d);
      skip_ws();
      if (peek() == ',') ++pos_;
      else if (peek() != ')') bad("expected ',' or ')' in shape");
    }
    ++pos_;
    return dims;
  }
  Dtype parse_descr(const std::string& d) {
    Dtype t;
    if (d.size() < 3) bad("unsupported descr '" + d + "'");
    char order = d[0];
    if (order != '<' && order != '>' && order != '|' && order != '=') bad("unsupported descr '" + d + "'");
    t.big_endian = order == '>';  // '=' is native; every machine we target is little-endian
    t.kind = d[1];
    std::string size = d.substr(2);
    t.size = size == "1" ? 1 : size == "2" ? 2 : size == "4" ? 4 : size == "8" ? 8 : 0;
    bool ok = (t.kind == 'u' || t.kind == 'i') ? t.size != 0
              : t.kind == 'f'                  ? (t.size == 4 || t.size == 8)
              : t.kind == 'b'                  ? t.size == 1
                                               : false;
    if (!ok) bad("unsupported descr '" + d + "' (only integer, bool and float32/64 arrays)");
    return t;
  }

  std::string_view s_;
  size_t pos_ = 0;
  const std::string& where_;
};

// Reads exactly n bytes of a member; a short read means the archive is damaged.
void read_exact(zip_file_t* f, unsigned char* out, uint64_t n, const std::string& where) {
  uint64_t done = 0;
  while (done < n) {
    zip_int64_t got = zip_fread(f, out + done, n - done);
    if (got < 0) fail(where, std::string("corrupt: ") + zip_file_strerror(f));
    if (got == 0) fail(where, "truncated: member ended after " + std::to_string(done) + " of " + std::to_string(n) + " bytes");
    done += static_cast<uint64_t>(got);
  }
}

uint64_t load_le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// One element of dtype t at p, as a double (exact for every integer MNIST could hold).
double element(const unsigned char* p, const Dtype& t) {
  unsigned char buf[8];
  for (int i = 0; i < t.size; ++i) buf[i] = t.big_endian ? p[t.size - 1 - i] : p[i];
  uint64_t bits = load_le(buf, t.size);
  switch (t.kind) {
    case 'b':
    case 'u':
      return static_cast<double>(bits);
    case 'i': {
      if (t.size < 8 && (bits >> (8 * t.size - 1)) & 1) bits |= ~uint64_t{0} << (8 * t.size);  // sign-extend
      return static_cast<double>(static_cast<int64_t>(bits));
    }
    default:
      if (t.size == 4) {
        uint32_t b32 = static_cast<uint32_t>(bits);
        float f;
        std::memcpy(&f, &b32, 4);
        return f;
      } else {
        double f;
        std::memcpy(&f, &bits, 8);
        return f;
      }
  }
}

// Loads member `name` (e.g. "x_train.npy") as a float tensor of its stored shape.
Tensor load_member(zip_t* zip, const std::string& path, const std::string& name) {
  const std::string where = path + " member " + name;
  zip_stat_t st;
  zip_stat_init(&st);
  zip_int64_t index = zip_name_locate(zip, name.c_str(), 0);
  if (index < 0) fail(path, "no member " + name + " (not a Keras MNIST .npz?)");
  if (zip_stat_index(zip, static_cast<zip_uint64_t>(index), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
    fail(where, std::string("cannot stat: ") + zip_strerror(zip));
  ZipFilePtr f(zip_fopen_index(zip, static_cast<zip_uint64_t>(index), 0));
  if (!f) fail(where, std::string("cannot open: ") + zip_strerror(zip));

  // Preamble: magic, version, then a 2-byte (v1) or 4-byte (v2, v3) little-endian header length.
  unsigned char pre[12];
  if (st.size < 10) fail(where, "truncated: " + std::to_string(st.size) + " bytes, too short for a .npy file");
  read_exact(f.get(), pre, 10, where);
  if (std::memcmp(pre, "\x93NUMPY", 6) != 0) fail(where, "not a .npy file (bad magic, expected \\x93NUMPY)");
  const int major = pre[6];
  if (major < 1 || major > 3)
    fail(where, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(pre[7]));
  uint64_t prefix = 10, header_len = load_le(pre + 8, 2);
  if (major >= 2) {
    if (st.size < 12) fail(where, "truncated .npy preamble");
    read_exact(f.get(), pre + 10, 2, where);
    prefix = 12;
    header_len = load_le(pre + 8, 4);
  }
  // NumPy headers are tens of bytes; a huge one means a damaged file, not data to allocate for.
  if (header_len > (1u << 20) || prefix + header_len > st.size)
    fail(where, "truncated: header length " + std::to_string(header_len) + " but the member has " +
                    std::to_string(st.size) + " bytes");
  std::string text(header_len, '\0');
  read_exact(f.get(), reinterpret_cast<unsigned char*>(text.data()), header_len, where);
  NpyHeader h = HeaderParser(text, where).parse();
  if (h.fortran_order) fail(where, "fortran_order is True; only C-order arrays are supported");

  uint64_t count = 1;
  for (uint64_t d : h.shape) {
    if (d != 0 && count > (uint64_t{1} << 40) / d) fail(where, "shape is implausibly large");
    count *= d;
  }
  const uint64_t bytes = count * static_cast<uint64_t>(h.dtype.size);
  const uint64_t expected = prefix + header_len + bytes;
  Shape shape(h.shape.begin(), h.shape.end());
  if (st.size < expected)
    fail(where, "truncated: shape " + shape_to_string(shape) + " needs " + std::to_string(expected) +
                    " bytes but the member has " + std::to_string(st.size));
  if (st.size > expected)
    fail(where, "trailing data: shape " + shape_to_string(shape) + " needs " + std::to_string(expected) +
                    " bytes but the member has " + std::to_string(st.size));

  std::vector<unsigned char> raw(bytes);
  read_exact(f.get(), raw.data(), bytes, where);
  // Reading to the end lets libzip verify the CRC and catch a member longer than its entry.
  unsigned char extra;
  zip_int64_t tail = zip_fread(f.get(), &extra, 1);
  if (tail < 0) fail(where, std::string("corrupt: ") + zip_file_strerror(f.get()));
  if (tail > 0) fail(where, "trailing data after the array");

  Tensor t(shape);
  float* out = t.data();
  if (h.dtype.size == 1 && h.dtype.kind != 'i') {
    for (uint64_t i = 0; i < count; ++i) out[i] = static_cast<float>(raw[i]);  // the common uint8 case
  } else {
    for (uint64_t i = 0; i < count; ++i) out[i] = static_cast<float>(element(raw.data() + i * h.dtype.size, h.dtype));
  }
  return t;
}

Split load_split(zip_t* zip, const std::string& path, const std::string& suffix) {
  Split s;
  const std::string xname = "x_" + suffix + ".npy", yname = "y_" + suffix + ".npy";
  s.x = load_member(zip, path, xname);
  s.y = load_member(zip, path, yname);
  if (s.x.rank() != 3)
    fail(path + " member " + xname, "expected 3 dimensions (n, rows, cols), got shape " + shape_to_string(s.x.shape()));
  if (s.y.rank() != 1)
    fail(path + " member " + yname, "expected 1 dimension (n,), got shape " + shape_to_string(s.y.shape()));
  if (s.x.dim(0) != s.y.dim(0))
    fail(path, xname + " has " + std::to_string(s.x.dim(0)) + " images but " + yname + " has " +
                   std::to_string(s.y.dim(0)) + " labels");
  // Pixels are MNIST's 0..255 (the CLI divides by 255); anything else is not an image of that kind.
  for (int64_t i = 0; i < s.x.size(); ++i) {
    const float v = s.x[i];
    if (!(v >= 0.0f && v <= 255.0f))
      fail(path + " member " + xname, "pixel " + std::to_string(i) + " is " + std::to_string(v) + ", not in 0..255");
  }
  // Class ids index a softmax; a fractional, negative or huge one is a damaged file.
  for (int64_t i = 0; i < s.y.size(); ++i) {
    float v = s.y[i];
    if (!(v >= 0 && v < 256 && v == std::floor(v)))
      fail(path + " member " + yname, "label " + std::to_string(i) + " is " + std::to_string(v) +
                                          ", not a class id in 0..255");
  }
  return s;
}

ZipPtr open_npz(const std::string& path) {
  int err = 0;
  ZipPtr zip(zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err));
  if (!zip) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    std::string msg = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    fail(path, (err == ZIP_ER_NOENT || err == ZIP_ER_OPEN ? "cannot open: " : "not a valid zip archive: ") + msg);
  }
  return zip;
}

// The arrays of an open .npz: its members ending in .npy, without that ending, in file order.
std::vector<std::string> array_names(zip_t* zip) {
  std::vector<std::string> names;
  const zip_int64_t n = zip_get_num_entries(zip, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* name = zip_get_name(zip, static_cast<zip_uint64_t>(i), 0);
    if (!name) continue;
    const std::string_view v(name);
    if (v.size() > 4 && v.substr(v.size() - 4) == ".npy") names.emplace_back(v.substr(0, v.size() - 4));
  }
  return names;
}

// The .npy bytes of a float32 tensor: format 1.0, header padded to a multiple of 64 bytes with
// spaces and a newline, as NumPy writes it.
std::vector<char> npy_bytes(const Tensor& t) {
  std::string shape = "(";
  for (int64_t d : t.shape()) shape += std::to_string(d) + ", ";
  if (t.rank() == 1) shape.resize(shape.size() - 1);  // "(5,)"
  else if (t.rank() > 1) shape.resize(shape.size() - 2);
  shape += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<char> b = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  b.push_back(static_cast<char>(header.size() & 0xff));
  b.push_back(static_cast<char>(header.size() >> 8));
  b.insert(b.end(), header.begin(), header.end());
  const size_t at = b.size(), bytes = static_cast<size_t>(t.size()) * sizeof(float);
  b.resize(at + bytes);
  if (bytes) std::memcpy(b.data() + at, t.data(), bytes);  // little-endian, as '<f4' says
  return b;
}

}  // namespace

Mnist load_npz(const std::string& path, Splits splits) {
  ZipPtr zip = open_npz(path);
  Mnist m;
  m.test = load_split(zip.get(), path, "test");
  // The split not asked for: 0 images of the test images' size.
  m.train = splits == Splits::kBoth ? load_split(zip.get(), path, "train")
                                    : Split{Tensor({0, m.test.x.dim(1), m.test.x.dim(2)}), Tensor({0})};
  return m;
}

std::vector<std::string> npz_array_names(const std::string& path) { return array_names(open_npz(path).get()); }

std::map<std::string, Tensor> load_npz_arrays(const std::string& path, const std::vector<std::string>& names) {
  ZipPtr zip = open_npz(path);
  const std::vector<std::string> held = array_names(zip.get());
  std::map<std::string, Tensor> arrays;
  for (const std::string& name : names) {
    if (std::find(held.begin(), held.end(), name) == held.end()) {
      std::string list;
      for (const std::string& h : held) list += (list.empty() ? "" : ", ") + h;
      fail(path, "no array '" + name + "' (it holds " + (list.empty() ? std::string("no arrays") : list) + ")");
    }
    arrays.emplace(name, load_member(zip.get(), path, name + ".npy"));
  }
  return arrays;
}

void save_npy(const std::string& path, const Tensor& array) {
  const std::vector<char> bytes = npy_bytes(array);
  io::write_text_atomically(path, std::string(bytes.begin(), bytes.end()));
}

void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& arrays) {
  std::vector<std::pair<std::string, std::vector<char>>> members;
  for (const auto& [name, array] : arrays) {
    if (name.empty() || name.find('/') != std::string::npos)
      throw DataError(path + ": array name '" + name + "' is empty or holds a '/'");
    for (const auto& [other, bytes] : members)
      if (other == name + ".npy") throw DataError(path + ": two arrays named '" + name + "'");
    members.emplace_back(name + ".npy", npy_bytes(array));
  }
  io::write_atomically(path, [&](const std::string& tmp) { io::zip::write(tmp, members, path); });
}

}  // namespace attn::data
