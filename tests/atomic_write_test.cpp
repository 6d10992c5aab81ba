// Output files (io::write_atomically): a failed write leaves the old file, a symbolic link keeps
// pointing at the replaced file, and a FIFO or device is written into instead of replaced.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>

#include "attn/io.hpp"
#include "temp_dir.hpp"

namespace {
namespace fs = std::filesystem;
using attn::testing::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(AtomicWrite, ReplacesOnlyWithACompleteFile) {
  TempDir dir;
  const std::string path = dir.file("out.txt");
  attn::io::write_text_atomically(path, "first");
  EXPECT_EQ(slurp(path), "first");
  EXPECT_THROW(attn::io::write_atomically(path,
                                          [](const std::string& tmp) {
                                            std::ofstream(tmp) << "half";
                                            throw std::runtime_error("failed midway");
                                          }),
               std::runtime_error);
  EXPECT_EQ(slurp(path), "first");
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"out.txt"});  // no temporary left behind
  attn::io::write_text_atomically(path, "second");
  EXPECT_EQ(slurp(path), "second");
}

TEST(AtomicWrite, ThroughASymbolicLinkTheTargetIsReplaced) {
  TempDir dir;
  fs::create_directory(dir.file("store"));
  attn::io::write_text_atomically(dir.file("store/real.txt"), "old");
  fs::create_symlink("store/real.txt", dir.file("link.txt"));
  attn::io::write_text_atomically(dir.file("link.txt"), "new");
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir.file("link.txt"))));
  EXPECT_EQ(slurp(dir.file("store/real.txt")), "new");
  EXPECT_EQ(slurp(dir.file("link.txt")), "new");
  // A link to a file not yet written: the file is created where the link points.
  fs::create_symlink("store/later.txt", dir.file("ahead.txt"));
  attn::io::write_text_atomically(dir.file("ahead.txt"), "made");
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir.file("ahead.txt"))));
  EXPECT_EQ(slurp(dir.file("store/later.txt")), "made");
}

TEST(AtomicWrite, AFifoIsWrittenIntoNotReplaced) {
  TempDir dir;
  const std::string fifo = dir.file("pipe");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string received;
  std::thread reader([&] { received = slurp(fifo); });  // opening blocks until the writer opens
  attn::io::write_text_atomically(fifo, "through the pipe");
  reader.join();
  EXPECT_EQ(received, "through the pipe");
  EXPECT_TRUE(fs::is_fifo(fs::status(fifo)));
}

TEST(AtomicWrite, DevNullStaysADevice) {
  if (!fs::is_character_file("/dev/null")) GTEST_SKIP() << "no /dev/null character device";
  attn::io::write_text_atomically("/dev/null", "discarded");
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  TempDir dir;  // and through a link to it, as /dev/stdout is one
  fs::create_symlink("/dev/null", dir.file("sink"));
  attn::io::write_text_atomically(dir.file("sink"), "discarded");
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir.file("sink"))));
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
}

TEST(AtomicWrite, ErrorsNameThePath) {
  TempDir dir;
  fs::create_directory(dir.file("sub"));
  for (const std::string& path : {dir.file("sub"), dir.file("missing/out.txt")}) {
    try {
      attn::io::write_text_atomically(path, "x");
      ADD_FAILURE() << path << " was written";
    } catch (const attn::io::FileError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  if (fs::is_character_file("/dev/full")) {
    try {
      attn::io::write_text_atomically("/dev/full", "x");
      ADD_FAILURE() << "writing to /dev/full did not fail";
    } catch (const attn::io::FileError& e) {
      EXPECT_NE(std::string(e.what()).find("/dev/full"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(fs::is_character_file("/dev/full"));
  }
}

}  // namespace
