// Zip reading and writing for .keras files (see zip_archive.hpp).
#include "io/zip_archive.hpp"

#include <zip.h>

#include <filesystem>
#include <system_error>

#include "attn/io.hpp"

namespace attn::io::zip {

namespace {
std::string zip_error_text(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string s = zip_error_strerror(&e);
  zip_error_fini(&e);
  return s;
}
}  // namespace

Reader::Reader(const std::string& path) : path_(path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw FileError(path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) throw FileError(path + ": is a directory, not a file");
  int err = 0;
  archive_ = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err);
  if (!archive_) {
    if (err == ZIP_ER_NOZIP) throw FileError(path + ": not a zip archive (a .keras file is a zip)");
    throw FileError(path + ": damaged zip archive (" + zip_error_text(err) + ")");
  }
}

Reader::~Reader() {
  if (archive_) zip_discard(archive_);
}

bool Reader::has(const std::string& member) const {
  return zip_name_locate(archive_, member.c_str(), 0) >= 0;
}

std::vector<std::string> Reader::members() const {
  std::vector<std::string> out;
  const zip_int64_t n = zip_get_num_entries(archive_, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(i), 0);
    if (name) out.emplace_back(name);
  }
  return out;
}

std::vector<char> Reader::read(const std::string& member) const {
  const zip_int64_t idx = zip_name_locate(archive_, member.c_str(), 0);
  if (idx < 0) throw FileError(path_ + ": missing member '" + member + "' in the archive");
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(archive_, static_cast<zip_uint64_t>(idx), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
    throw FileError(path_ + ": cannot read member '" + member + "'");
  if (st.size > (zip_uint64_t{1} << 40)) throw FileError(path_ + ": member '" + member + "' is implausibly large");
  zip_file_t* f = zip_fopen_index(archive_, static_cast<zip_uint64_t>(idx), 0);
  if (!f) throw FileError(path_ + ": cannot open member '" + member + "' (" + zip_strerror(archive_) + ")");
  std::vector<char> out(static_cast<size_t>(st.size));
  size_t got = 0;
  while (got < out.size()) {
    const zip_int64_t r = zip_fread(f, out.data() + got, out.size() - got);
    if (r <= 0) {
      const std::string why = r < 0 ? zip_file_strerror(f) : "unexpected end of data";
      zip_fclose(f);
      throw FileError(path_ + ": damaged member '" + member + "' (" + why + ")");
    }
    got += static_cast<size_t>(r);
  }
  // Reading to the end lets libzip verify the CRC.
  char extra;
  const zip_int64_t tail = zip_fread(f, &extra, 1);
  const std::string why = tail < 0 ? zip_file_strerror(f) : "";
  zip_fclose(f);
  if (tail != 0) throw FileError(path_ + ": damaged member '" + member + "'" + (why.empty() ? "" : " (" + why + ")"));
  return out;
}

void write(const std::string& path, const std::vector<std::pair<std::string, std::vector<char>>>& members,
           const std::string& display_name) {
  int err = 0;
  ::zip* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (!za) throw FileError(display_name + ": cannot create the archive (" + zip_error_text(err) + ")");
  for (const auto& [name, data] : members) {
    zip_source_t* src = zip_source_buffer(za, data.data(), data.size(), 0);
    if (!src) {
      const std::string why = zip_strerror(za);
      zip_discard(za);
      throw FileError(display_name + ": cannot add '" + name + "' (" + why + ")");
    }
    const zip_int64_t idx = zip_file_add(za, name.c_str(), src, ZIP_FL_ENC_UTF_8 | ZIP_FL_OVERWRITE);
    if (idx < 0) {
      zip_source_free(src);
      const std::string why = zip_strerror(za);
      zip_discard(za);
      throw FileError(display_name + ": cannot add '" + name + "' (" + why + ")");
    }
    if (zip_set_file_compression(za, static_cast<zip_uint64_t>(idx), ZIP_CM_STORE, 0) != 0) {
      const std::string why = zip_strerror(za);
      zip_discard(za);
      throw FileError(display_name + ": cannot store '" + name + "' (" + why + ")");
    }
  }
  if (zip_close(za) != 0) {
    const std::string why = zip_strerror(za);
    zip_discard(za);
    throw FileError(display_name + ": cannot write the archive (" + why + ")");
  }
}

}  // namespace attn::io::zip
