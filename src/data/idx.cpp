// IDX reader (the original MNIST format): unsigned-byte image (2051) and label (2049) files,
// raw or gzip-compressed, told apart by the gzip magic 1f 8b rather than the file name.
// The header is checked against the bytes actually present before the tensor is allocated,
// and any truncation, trailing data or corrupt stream is an error naming the file.
// Deliberately supports only element type 0x08 (ubyte): that is all MNIST-style data uses.
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "attn/data.hpp"

namespace attn::data {
namespace {

constexpr uint32_t kImageMagic = 2051;  // 0x00000803: ubyte, 3 dimensions
constexpr uint32_t kLabelMagic = 2049;  // 0x00000801: ubyte, 1 dimension

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw DataError(path + ": " + what);
}

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// The whole content of a file after any gzip layer: either read raw (size known up front)
// or inflated in chunks. `limit` caps how much is inflated so a lying header or a
// decompression bomb cannot make us allocate more than the header promised plus one byte.
class ByteSource {
 public:
  explicit ByteSource(const std::string& path) : path_(path) {
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (!file_) fail(path, std::string("cannot open: ") + std::strerror(errno));
    unsigned char magic[2] = {0, 0};
    size_t got = std::fread(magic, 1, 2, file_.get());
    if (got < 2 && std::ferror(file_.get())) fail(path, "cannot read: " + std::string(std::strerror(errno)));
    gzip_ = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (gzip_) {
      file_.reset();
      gz_.reset(gzopen(path.c_str(), "rb"));
      if (!gz_) fail(path, std::string("cannot open: ") + std::strerror(errno));
      gzbuffer(gz_.get(), 1 << 16);
    } else {
      std::FILE* f = file_.get();
      if (std::fseek(f, 0, SEEK_END) != 0) fail(path, "cannot seek: " + std::string(std::strerror(errno)));
      long size = std::ftell(f);
      if (size < 0) fail(path, "cannot tell size: " + std::string(std::strerror(errno)));
      raw_size_ = static_cast<uint64_t>(size);
      std::rewind(f);
    }
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  bool gzip() const { return gzip_; }
  // Size of a raw file; unknown (0) for gzip until inflated.
  uint64_t raw_size() const { return raw_size_; }

  // Reads up to n bytes into out; returns the count, which is short only at end of data.
  size_t read(unsigned char* out, size_t n) {
    if (!gzip_) {
      size_t got = std::fread(out, 1, n, file_.get());
      if (got < n && std::ferror(file_.get())) fail(path_, "read error: " + std::string(std::strerror(errno)));
      return got;
    }
    size_t total = 0;
    while (total < n) {
      // gzread takes an unsigned count; stay well below its int-sized return.
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - total, 1u << 30));
      int got = gzread(gz_.get(), out + total, chunk);
      if (got < 0) gz_fail();
      if (got == 0) {
        gz_check();
        break;
      }
      total += static_cast<size_t>(got);
    }
    return total;
  }

  // Everything left, stopping after `limit` bytes, grown in chunks so memory follows the
  // data really present rather than what the header claims.
  std::vector<unsigned char> read_rest(uint64_t limit) {
    std::vector<unsigned char> bytes;
    constexpr size_t kChunk = size_t{1} << 20;
    while (bytes.size() < limit) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, limit - bytes.size()));
      size_t old = bytes.size();
      bytes.resize(old + want);
      size_t got = read(bytes.data() + old, want);
      bytes.resize(old + got);
      if (got < want) break;
    }
    return bytes;
  }

 private:
  [[noreturn]] void gz_fail() {
    int code = 0;
    fail(path_, "corrupt gzip stream: " + gz_message(gzerror(gz_.get(), &code)));
  }
  // zlib prefixes its messages with the path, which our own prefix already gives.
  std::string gz_message(const char* msg) const {
    std::string m = msg && *msg ? msg : "unknown error";
    if (m.rfind(path_ + ": ", 0) == 0) m.erase(0, path_.size() + 2);
    return m;
  }
  // zlib reports a stream cut short only through gzerror after the final read.
  void gz_check() {
    int code = Z_OK;
    const char* msg = gzerror(gz_.get(), &code);
    if (code == Z_BUF_ERROR) fail(path_, "truncated gzip stream (unexpected end of file)");
    if (code != Z_OK && code != Z_STREAM_END)
      fail(path_, "corrupt gzip stream: " + gz_message(msg));
  }

  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  struct GzCloser {
    void operator()(gzFile g) const { gzclose(g); }
  };
  std::string path_;
  // Owned through unique_ptr so a throw from the constructor still closes them.
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser> gz_;
  bool gzip_ = false;
  uint64_t raw_size_ = 0;
};

const char* kind_name(uint32_t magic) { return magic == kImageMagic ? "an IDX image file" : "an IDX label file"; }

void bytes_to_floats(const unsigned char* bytes, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(bytes[i]);
}

// The payload's bytes as floats, in a tensor of the header's shape.
Tensor read_idx(const std::string& path, uint32_t expected_magic) {
  const uint32_t ndims = expected_magic & 0xff;
  ByteSource src(path);

  std::array<unsigned char, 4> magic_bytes{};
  size_t got = src.read(magic_bytes.data(), 4);
  if (got < 4) fail(path, "truncated: " + std::to_string(got) + " bytes, too short for an IDX header");
  const uint32_t magic = big_endian_u32(magic_bytes.data());
  if (magic != expected_magic) {
    std::string msg = "wrong magic number " + hex32(magic) + " (expected " + std::to_string(expected_magic) +
                      " for " + kind_name(expected_magic) + ")";
    if (magic == kImageMagic || magic == kLabelMagic)
      msg += "; this looks like " + std::string(kind_name(magic));
    else if ((magic >> 16) == 0 && ((magic >> 8) & 0xff) != 0x08)
      msg += "; element type 0x" + hex32((magic >> 8) & 0xff).substr(8) + " is not 0x08 (unsigned byte)";
    fail(path, msg);
  }

  std::vector<unsigned char> dim_bytes(4 * ndims);
  got = src.read(dim_bytes.data(), dim_bytes.size());
  if (got < dim_bytes.size())
    fail(path, "truncated: header needs " + std::to_string(4 + dim_bytes.size()) + " bytes but the " +
                   (src.gzip() ? "decompressed stream" : "file") + " has " + std::to_string(4 + got));

  std::vector<uint64_t> dims;
  // Products of up to three 32-bit dimensions fit in 96 bits; cap at 2^40 bytes so the
  // arithmetic stays exact in 64 bits and absurd headers are rejected without allocating.
  constexpr uint64_t kMaxBytes = uint64_t{1} << 40;
  uint64_t payload = 1;
  bool too_big = false;
  for (uint32_t i = 0; i < ndims; ++i) {
    uint64_t d = big_endian_u32(dim_bytes.data() + 4 * i);
    dims.push_back(d);
    if (d != 0 && payload > kMaxBytes / d) too_big = true;
    payload = too_big ? payload : payload * d;
  }
  const uint64_t header = 4 + 4 * uint64_t{ndims};

  std::string claim;
  if (ndims == 3)
    claim = std::to_string(dims[0]) + " images of " + std::to_string(dims[1]) + "x" + std::to_string(dims[2]);
  else
    claim = std::to_string(dims[0]) + " labels";
  if (too_big) fail(path, "header says " + claim + ", which is implausibly large");
  if (ndims == 3 && (dims[1] == 0 || dims[2] == 0)) fail(path, "header says " + claim + " (empty images)");
  const std::string expected = "header says " + claim + " (" + std::to_string(header + payload) + " bytes)";

  Shape shape;
  for (uint64_t d : dims) shape.push_back(static_cast<int64_t>(d));

  if (!src.gzip()) {
    // Raw: the file size is known, so check it before allocating anything.
    if (src.raw_size() < header + payload)
      fail(path, "truncated: " + expected + " but the file has " + std::to_string(src.raw_size()) + " bytes");
    if (src.raw_size() > header + payload)
      fail(path, "trailing data: " + expected + " but the file has " + std::to_string(src.raw_size()) + " bytes");
    // From the file into the tensor through a small buffer: a payload-sized copy of the bytes
    // would be 47 MB of fresh pages for MNIST's training images, and on these virtual machines
    // the first touch of a page costs more than reading it.
    Tensor t(shape);
    std::vector<unsigned char> chunk(size_t{1} << 16);
    for (uint64_t done = 0; done < payload;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk.size(), payload - done));
      if (src.read(chunk.data(), want) != want) fail(path, "file shrank while being read");
      bytes_to_floats(chunk.data(), want, t.data() + done);
      done += want;
    }
    return t;
  }

  // Gzip: inflate at most one byte past the claim, to detect both short and long streams, into
  // memory that grows with the data really present (a lying header allocates nothing big).
  const std::vector<unsigned char> bytes = src.read_rest(payload + 1);
  const uint64_t have = header + bytes.size();
  if (bytes.size() < payload)
    fail(path, "truncated: " + expected + " but the decompressed stream has " + std::to_string(have) + " bytes");
  if (bytes.size() > payload)
    fail(path, "trailing data: " + expected + " but the decompressed stream is longer");
  Tensor t(shape);
  bytes_to_floats(bytes.data(), bytes.size(), t.data());
  return t;
}

}  // namespace

Tensor load_idx_images(const std::string& path) { return read_idx(path, kImageMagic); }

Tensor load_idx_labels(const std::string& path) { return read_idx(path, kLabelMagic); }

}  // namespace attn::data
