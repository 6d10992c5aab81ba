// Output files: written under a temporary name and renamed, so an interrupted or failed write
// never leaves a damaged file, and an existing file is replaced only by a complete one.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "attn/io.hpp"

namespace attn::io {

namespace {
namespace fs = std::filesystem;

std::atomic<uint64_t> temp_counter{0};

// ".name.tmp-<pid>-<n>" in `dir`. Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on a
// chain of operator+.
fs::path temp_path(const fs::path& dir, const fs::path& name) {
  std::string tmp_name = ".";
  tmp_name += name.filename().string();
  tmp_name += ".tmp-";
  tmp_name += std::to_string(::getpid());
  tmp_name += '-';
  tmp_name += std::to_string(temp_counter++);
  return dir / tmp_name;
}

void remove_quietly(const fs::path& p) {
  std::error_code ignored;
  fs::remove(p, ignored);
}

// Copies the finished temporary file into `target` (a device or FIFO), which stays what it is.
void copy_into(const std::string& path, const fs::path& tmp, const fs::path& target) {
  const int in = ::open(tmp.c_str(), O_RDONLY);
  if (in < 0) throw FileError(path + ": cannot reopen the finished output (" + std::strerror(errno) + ")");
  const int out = ::open(target.c_str(), O_WRONLY);
  if (out < 0) {
    const int e = errno;
    ::close(in);
    throw FileError(path + ": cannot open for writing (" + std::strerror(e) + ")");
  }
  char buf[1 << 16];
  std::string error;
  for (;;) {
    const ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = std::strerror(errno);
    if (n <= 0) break;
    for (ssize_t done = 0; done < n && error.empty();) {
      const ssize_t w = ::write(out, buf + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) error = std::strerror(errno);
      else done += w;
    }
    if (!error.empty()) break;
  }
  ::close(in);
  if (::close(out) != 0 && error.empty()) error = std::strerror(errno);
  if (!error.empty()) throw FileError(path + ": write failed (" + error + ")");
}
}  // namespace

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);  // of what a symbolic link points to
  if (fs::is_directory(status)) throw FileError(path + ": is a directory");
  if (fs::exists(status) && !fs::is_regular_file(status)) {
    // A device or FIFO (/dev/null, a pipe, /dev/stdout): renaming over it would replace it with
    // a plain file, so the output is made in the temporary directory and then copied into it.
    const fs::path tmp = temp_path(fs::temp_directory_path(), fs::path(path).filename());
    try {
      write(tmp.string());
      copy_into(path, tmp, path);
    } catch (...) {
      remove_quietly(tmp);
      throw;
    }
    remove_quietly(tmp);
    return;
  }
  // Through a symbolic link the file it points to is written (created if the link dangles), and
  // the link stays. Followed one link at a time: weakly_canonical stops at a dangling one.
  fs::path target(path);
  for (int hops = 0; fs::is_symlink(fs::symlink_status(target, ec)); ++hops) {
    if (hops == 40) throw FileError(path + ": too many levels of symbolic links");
    const fs::path next = fs::read_symlink(target, ec);
    if (ec) throw FileError(path + ": cannot follow the symbolic link (" + ec.message() + ")");
    target = next.is_absolute() ? next : target.parent_path() / next;
  }
  const fs::path dir = target.parent_path();
  if (!dir.empty() && !fs::is_directory(dir, ec))
    throw FileError(path + ": directory " + dir.string() + " does not exist");
  const fs::path tmp = temp_path(dir, target);
  try {
    write(tmp.string());
  } catch (...) {
    remove_quietly(tmp);
    throw;
  }
  // Flush the data to disk before the rename makes it visible under the final name.
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    remove_quietly(tmp);
    throw FileError(path + ": cannot move the finished file into place (" + ec.message() + ")");
  }
}

void write_text_atomically(const std::string& path, const std::string& text) {
  write_atomically(path, [&](const std::string& tmp) {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) throw FileError(path + ": cannot open for writing (" + std::strerror(errno) + ")");
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t w = ::write(fd, text.data() + done, text.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        const int e = errno;
        ::close(fd);
        throw FileError(path + ": write failed (" + std::strerror(e) + ")");
      }
      done += static_cast<size_t>(w);
    }
    if (::close(fd) != 0) throw FileError(path + ": write failed (" + std::strerror(errno) + ")");
  });
}

}  // namespace attn::io
