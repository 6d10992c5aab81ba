// HDF5 helpers for the model-file code (see hdf5_file.hpp).
#include "io/hdf5_file.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "attn/io.hpp"

namespace attn::io::h5 {

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && closer_) closer_(id_);
  id_ = H5I_INVALID_HID;
}

void silence_errors() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

namespace {

// Core-driver files need distinct names while open.
std::string memory_name(const std::string& name) {
  static std::atomic<uint64_t> counter{0};
  return "attn-memory-" + std::to_string(counter++) + "-" + name;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : path) {
    if (c == '/') {
      if (!cur.empty()) parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) parts.push_back(cur);
  return parts;
}

std::string obj_path(const std::string& path) { return path.empty() ? "." : path; }

Handle core_fapl(const std::string& file) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.valid() || H5Pset_fapl_core(fapl.get(), 1 << 20, 0) < 0)
    throw FileError(file + ": cannot set up an in-memory HDF5 file");
  return fapl;
}

}  // namespace

void File::fail(const std::string& what) const { throw FileError(name_ + ": " + what); }

namespace {
// libhdf5 (1.10) copies a global heap object (where variable-length strings such as Keras'
// model_config live) by the size its header gives, without checking it against the heap
// collection: one damaged byte there crashes the library. So every collection ("GCOL", version
// 1, then its size) is walked here first, and an object that does not fit is an error.
uint64_t little_endian(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void check_global_heaps(const std::vector<char>& file, const std::string& name) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(file.data());
  const size_t n = file.size();
  constexpr uint64_t kMinCollection = 4096;  // H5HG_MINSIZE
  for (size_t at = 0; at + 16 <= n; ++at) {
    if (std::memcmp(bytes + at, "GCOL\1\0\0\0", 8) != 0) continue;
    const uint64_t size = little_endian(bytes + at + 8, 8);
    if (size < kMinCollection) continue;  // not a collection header (GCOL in someone's data)
    if (size > n - at) throw FileError(name + ": damaged HDF5 file (a global heap runs past the end of the file)");
    const size_t end = at + size;
    for (size_t obj = at + 16; obj + 16 <= end;) {
      const uint64_t index = little_endian(bytes + obj, 2);
      if (index == 0) break;  // the free space: the rest of the collection
      const uint64_t object_size = little_endian(bytes + obj + 8, 8);
      const uint64_t padded = object_size + 7 < object_size ? object_size : (object_size + 7) / 8 * 8;
      if (padded > end - obj - 16)
        throw FileError(name + ": damaged HDF5 file (global heap object " + std::to_string(index) +
                        " is larger than its heap)");
      obj += 16 + padded;
    }
  }
}

std::vector<char> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path + ": cannot open it for reading");
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
}  // namespace

File File::open(const std::string& path) {
  silence_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw FileError(path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) throw FileError(path + ": is a directory, not a file");
  if (!std::ifstream(path, std::ios::binary)) throw FileError(path + ": cannot open it for reading");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw FileError(path + ": not an HDF5 file (or it is damaged)");
  check_global_heaps(read_whole_file(path), path);
  File f;
  f.name_ = path;
  f.file_ = Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!f.file_.valid()) throw FileError(path + ": cannot open it as an HDF5 file (damaged or unreadable)");
  return f;
}

File File::open_image(const std::vector<char>& bytes, const std::string& name) {
  silence_errors();
  static const char signature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  // The superblock sits at 0, 512, 1024, ... (after a user block).
  bool signed_ok = false;
  for (size_t off = 0; off + 8 <= bytes.size(); off = off ? off * 2 : 512)
    if (std::memcmp(bytes.data() + off, signature, 8) == 0) {
      signed_ok = true;
      break;
    }
  if (!signed_ok) throw FileError(name + ": not an HDF5 file (no HDF5 signature)");
  check_global_heaps(bytes, name);
  File f;
  f.name_ = name;
  f.fapl_ = core_fapl(name);
  if (H5Pset_file_image(f.fapl_.get(), const_cast<char*>(bytes.data()), bytes.size()) < 0)
    throw FileError(name + ": cannot hand the HDF5 image to the library");
  f.file_ = Handle(H5Fopen(memory_name(name).c_str(), H5F_ACC_RDONLY, f.fapl_.get()), H5Fclose);
  if (!f.file_.valid()) throw FileError(name + ": damaged HDF5 data (cannot open it)");
  return f;
}

File File::create_in_memory(const std::string& name) {
  silence_errors();
  File f;
  f.name_ = name;
  f.fapl_ = core_fapl(name);
  f.file_ = Handle(H5Fcreate(memory_name(name).c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, f.fapl_.get()), H5Fclose);
  if (!f.file_.valid()) throw FileError(name + ": cannot create an in-memory HDF5 file");
  return f;
}

File File::create(const std::string& path, const std::string& name) {
  silence_errors();
  File f;
  f.name_ = name;
  f.file_ = Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!f.file_.valid()) throw FileError(name + ": cannot create the file " + path);
  return f;
}

std::vector<char> File::image() {
  if (H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) < 0) fail("cannot flush the HDF5 data");
  const ssize_t n = H5Fget_file_image(file_.get(), nullptr, 0);
  if (n < 0) fail("cannot read back the HDF5 image");
  std::vector<char> out(static_cast<size_t>(n));
  if (H5Fget_file_image(file_.get(), out.data(), out.size()) != n) fail("cannot read back the HDF5 image");
  return out;
}

void File::close() {
  if (file_.valid()) {
    const hid_t id = file_.release();
    if (H5Fclose(id) < 0) {
      fapl_.reset();
      fail("cannot finish writing the HDF5 data");
    }
  }
  fapl_.reset();
}

bool File::exists(const std::string& path) const {
  std::string cur;
  for (const auto& part : split_path(path)) {
    cur += (cur.empty() ? "" : "/") + part;
    if (H5Lexists(file_.get(), cur.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

namespace {
H5I_type_t object_type(hid_t root, const std::string& path) {
  Handle obj(H5Oopen(root, obj_path(path).c_str(), H5P_DEFAULT), H5Oclose);
  if (!obj.valid()) return H5I_BADID;
  return H5Iget_type(obj.get());
}
}  // namespace

bool File::is_group(const std::string& path) const {
  return (path.empty() || exists(path)) && object_type(file_.get(), path) == H5I_GROUP;
}

bool File::is_dataset(const std::string& path) const {
  return exists(path) && object_type(file_.get(), path) == H5I_DATASET;
}

Handle File::open_group(const std::string& path) const {
  if (!is_group(path)) fail("missing group '" + path + "'");
  Handle g(H5Gopen2(file_.get(), obj_path(path).c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.valid()) fail("cannot open group '" + path + "'");
  return g;
}

Handle File::ensure_group(const std::string& path) const {
  std::string cur;
  for (const auto& part : split_path(path)) {
    cur += (cur.empty() ? "" : "/") + part;
    if (H5Lexists(file_.get(), cur.c_str(), H5P_DEFAULT) > 0) continue;
    Handle g(H5Gcreate2(file_.get(), cur.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    if (!g.valid()) fail("cannot create group '" + cur + "'");
  }
  return open_group(path);
}

std::vector<std::string> File::children(const std::string& path) const {
  Handle g = open_group(path);
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) fail("cannot list group '" + path + "'");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) fail("cannot list group '" + path + "'");
    std::string name(static_cast<size_t>(n) + 1, '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<size_t>(n));
    names.push_back(name);
  }
  return names;
}

namespace {
struct OpenDataset {
  Handle ds, type, space;
  Shape shape;
  int64_t count = 1;
};

OpenDataset open_dataset(const File& f, const std::string& path) {
  if (!f.exists(path)) f.fail("missing dataset '" + path + "'");
  if (!f.is_dataset(path)) f.fail("'" + path + "' is not a dataset");
  OpenDataset d;
  d.ds = Handle(H5Dopen2(f.root(), path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.ds.valid()) f.fail("cannot open dataset '" + path + "'");
  d.type = Handle(H5Dget_type(d.ds.get()), H5Tclose);
  d.space = Handle(H5Dget_space(d.ds.get()), H5Sclose);
  if (!d.type.valid() || !d.space.valid()) f.fail("cannot read the type of dataset '" + path + "'");
  const int rank = H5Sget_simple_extent_ndims(d.space.get());
  if (rank < 0 || rank > 32) f.fail("dataset '" + path + "' has an unsupported dataspace");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(d.space.get(), dims.data(), nullptr);
  for (hsize_t v : dims) {
    if (v > static_cast<hsize_t>(std::numeric_limits<int32_t>::max()) ||
        (v && d.count > std::numeric_limits<int64_t>::max() / 8 / static_cast<int64_t>(v)))
      f.fail("dataset '" + path + "' is implausibly large");
    d.shape.push_back(static_cast<int64_t>(v));
    d.count *= static_cast<int64_t>(v);
  }
  return d;
}
}  // namespace

Array File::read_floats(const std::string& path) const {
  OpenDataset d = open_dataset(*this, path);
  if (H5Tget_class(d.type.get()) != H5T_FLOAT)
    fail("dataset '" + path + "' does not hold floating-point values");
  Array a;
  a.shape = d.shape;
  a.values.resize(static_cast<size_t>(d.count));
  if (d.count > 0 && H5Dread(d.ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.values.data()) < 0)
    fail("cannot read dataset '" + path + "' (damaged data)");
  return a;
}

int64_t File::read_int64(const std::string& path) const {
  OpenDataset d = open_dataset(*this, path);
  const H5T_class_t cls = H5Tget_class(d.type.get());
  if (d.count != 1) fail("dataset '" + path + "' should hold one number");
  if (cls == H5T_INTEGER) {
    int64_t v = 0;
    if (H5Dread(d.ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) < 0)
      fail("cannot read dataset '" + path + "'");
    return v;
  }
  if (cls == H5T_FLOAT) {
    double v = 0;
    if (H5Dread(d.ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) < 0)
      fail("cannot read dataset '" + path + "'");
    return static_cast<int64_t>(v);
  }
  fail("dataset '" + path + "' does not hold a number");
}

namespace {
Handle make_space(const Shape& shape) {
  if (shape.empty()) return Handle(H5Screate(H5S_SCALAR), H5Sclose);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
}

std::string parent_of(const std::string& path) {
  const auto pos = path.rfind('/');
  return pos == std::string::npos ? std::string() : path.substr(0, pos);
}
}  // namespace

void File::write_floats(const std::string& path, const Shape& shape, const float* values) const {
  const std::string parent = parent_of(path);
  if (!parent.empty()) ensure_group(parent);
  Handle space = make_space(shape);
  Handle ds(H5Dcreate2(file_.get(), path.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                       H5P_DEFAULT),
            H5Dclose);
  if (!ds.valid()) fail("cannot create dataset '" + path + "'");
  if (shape_size(shape) > 0 && H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) < 0)
    fail("cannot write dataset '" + path + "'");
}

void File::write_int64(const std::string& path, int64_t value) const {
  const std::string parent = parent_of(path);
  if (!parent.empty()) ensure_group(parent);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle ds(H5Dcreate2(file_.get(), path.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
            H5Dclose);
  if (!ds.valid() || H5Dwrite(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) < 0)
    fail("cannot write dataset '" + path + "'");
}

bool File::has_attr(const std::string& path, const std::string& attr) const {
  if (!path.empty() && !exists(path)) return false;
  return H5Aexists_by_name(file_.get(), obj_path(path).c_str(), attr.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> File::read_string_attr(const std::string& path, const std::string& attr, bool* found) const {
  if (found) *found = false;
  if (!has_attr(path, attr)) return {};
  if (found) *found = true;
  const std::string where = "attribute '" + attr + "' of '" + (path.empty() ? "/" : path) + "'";
  Handle a(H5Aopen_by_name(file_.get(), obj_path(path).c_str(), attr.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid()) fail("cannot open " + where);
  Handle type(H5Aget_type(a.get()), H5Tclose);
  Handle space(H5Aget_space(a.get()), H5Sclose);
  if (!type.valid() || !space.valid()) fail("cannot read " + where);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0 || n > (1 << 24)) fail("cannot read " + where);
  if (H5Tget_class(type.get()) != H5T_STRING) {
    if (n == 0) return {};
    fail(where + " is not text");
  }
  std::vector<std::string> out;
  if (n == 0) return out;
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
    if (H5Aread(a.get(), mem.get(), ptrs.data()) < 0) fail("cannot read " + where);
    for (char* p : ptrs) out.emplace_back(p ? p : "");
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem.get(), space.get(), H5P_DEFAULT, ptrs.data());
#else
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, ptrs.data());
#endif
    return out;
  }
  const size_t size = H5Tget_size(type.get());
  if (size == 0 || size > (1u << 20)) fail("cannot read " + where);
  Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mem.get(), size);
  H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
  std::vector<char> buf(size * static_cast<size_t>(n), '\0');
  if (H5Aread(a.get(), mem.get(), buf.data()) < 0) fail("cannot read " + where);
  for (hssize_t i = 0; i < n; ++i) {
    const char* p = buf.data() + static_cast<size_t>(i) * size;
    size_t len = 0;
    while (len < size && p[len] != '\0') ++len;
    std::string s(p, len);
    while (!s.empty() && s.back() == ' ') s.pop_back();  // space-padded strings
    out.push_back(s);
  }
  return out;
}

void File::write_string_attr(const std::string& path, const std::string& attr, const std::string& value) const {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  if (has_attr(path, attr)) H5Adelete_by_name(file_.get(), obj_path(path).c_str(), attr.c_str(), H5P_DEFAULT);
  Handle a(H5Acreate_by_name(file_.get(), obj_path(path).c_str(), attr.c_str(), type.get(), space.get(), H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  const char* p = value.c_str();
  if (!a.valid() || H5Awrite(a.get(), type.get(), &p) < 0) fail("cannot write attribute '" + attr + "'");
}

void File::write_string_list_attr(const std::string& path, const std::string& attr,
                                  const std::vector<std::string>& values) const {
  size_t width = 1;
  for (const std::string& v : values) width = std::max(width, v.size());
  Handle type(values.empty() ? H5Tcopy(H5T_IEEE_F64LE) : H5Tcopy(H5T_C_S1), H5Tclose);
  if (!values.empty()) {
    H5Tset_size(type.get(), width);
    H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  }
  const hsize_t count = values.size();
  Handle space(H5Screate_simple(1, &count, nullptr), H5Sclose);
  if (has_attr(path, attr)) H5Adelete_by_name(file_.get(), obj_path(path).c_str(), attr.c_str(), H5P_DEFAULT);
  Handle a(H5Acreate_by_name(file_.get(), obj_path(path).c_str(), attr.c_str(), type.get(), space.get(), H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  std::vector<char> packed(values.size() * width, '\0');
  for (size_t i = 0; i < values.size(); ++i) std::copy(values[i].begin(), values[i].end(), packed.begin() + i * width);
  if (!a.valid() || (!values.empty() && H5Awrite(a.get(), type.get(), packed.data()) < 0))
    fail("cannot write attribute '" + attr + "'");
}

}  // namespace attn::io::h5
