// Zip archives for .keras files (libzip): read named members, write stored members in
// order, and replace a file atomically (temporary name in the same directory, renamed
// over the final name only once complete).
#pragma once

#include <string>
#include <utility>
#include <vector>

struct zip;

namespace attn::io::zip {

class Reader {
 public:
  // Throws FileError when the file is missing or not a valid zip archive.
  explicit Reader(const std::string& path);
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  ~Reader();
  bool has(const std::string& member) const;
  // Throws FileError "missing member X" or on damaged data.
  std::vector<char> read(const std::string& member) const;
  std::vector<std::string> members() const;

 private:
  std::string path_;
  ::zip* archive_ = nullptr;
};

// Writes a zip of these members, stored (uncompressed) as Keras writes them.
void write(const std::string& path, const std::vector<std::pair<std::string, std::vector<char>>>& members,
           const std::string& display_name);

}  // namespace attn::io::zip
