// Read-only memory mapping of a whole file. Weights are used in place from the mapping, so the
// OS pages in only what is touched (e.g. the PLE rows of the tokens seen).
#ifndef GEMMA4_SRC_FORMATS_MAPPED_FILE_H_
#define GEMMA4_SRC_FORMATS_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "gemma4/status.h"

namespace gemma4 {

class MappedFile {
 public:
  static StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  // The open descriptor (valid for the object's lifetime), for pread of sparse rows.
  int fd() const { return fd_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the whole pages inside [offset, offset + n) from this process's resident set; they
  // are read from the file again if touched. Parts of the file read once (the GGUF metadata)
  // would otherwise stay resident for the model's lifetime.
  void ReleasePages(uint64_t offset, uint64_t n) const;
  // DataLoss if the file under the mapping has shrunk (touching a page past the new end would
  // kill the process with SIGBUS) or was modified in place (its contents are no longer the ones
  // loaded) since Open. Replacing the file by a rename is harmless: the mapping keeps the old
  // file. One fstat; callers check before each use of the mapping (each forward pass), which
  // leaves only a truncation during that pass itself unguarded.
  Status CheckUnchanged() const;

 private:
  MappedFile(std::string path, int fd, const uint8_t* data, size_t size, int64_t mtime_ns)
      : path_(std::move(path)), fd_(fd), data_(data), size_(size), mtime_ns_(mtime_ns) {}
  std::string path_;
  int fd_;
  const uint8_t* data_;
  size_t size_;
  int64_t mtime_ns_;  // modification time at Open
};

// Private anonymous memory straight from mmap (runtime/huge_pages.h: MapAnonymous), for large
// long-lived buffers (repacked weights): resident exactly as far as written, returned to the
// system whole when freed (a malloc heap keeps its high-water mark), and, asked for huge pages,
// 2 MiB-aligned and advised for transparent huge pages so that streaming through it misses the
// TLB 512 times less often. Mapped under sanitizers too (HugePageAllocator is not).
class AnonymousMemory {
 public:
  static StatusOr<std::unique_ptr<AnonymousMemory>> Allocate(size_t size, bool huge_pages);
  // The resident bytes of Allocate(size, huge_pages) once every byte is written: size rounded
  // up to the page (huge pages back only the 2 MiB-aligned blocks inside the advised range,
  // so they add nothing).
  static uint64_t ResidentBytes(size_t size, bool huge_pages);
  ~AnonymousMemory();
  AnonymousMemory(const AnonymousMemory&) = delete;
  AnonymousMemory& operator=(const AnonymousMemory&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  AnonymousMemory(uint8_t* data, size_t length, size_t size)
      : data_(data), length_(length), size_(size) {}
  uint8_t* data_;
  size_t length_;  // as given to MapAnonymous (size, 1 at least)
  size_t size_;
};

// The largest file ReadFileToString reads: configs, tokenizer.json (Gemma 4's is 32 MiB),
// tokenizer.model and chat templates are far smaller.
inline constexpr uint64_t kMaxReadFileBytes = uint64_t{256} << 20;

// Reads a whole (small) file such as config.json. Only regular files up to kMaxReadFileBytes are
// read: a FIFO (which would block), a device such as /dev/zero (endless) or a directory is
// refused naming the path.
StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace gemma4

#endif  // GEMMA4_SRC_FORMATS_MAPPED_FILE_H_
