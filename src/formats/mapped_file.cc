#include "formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "runtime/huge_pages.h"

namespace gemma4 {
namespace {

int64_t ModificationNs(const struct stat& st) {
  return int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Status(err == ENOENT ? StatusCode::kNotFound : StatusCode::kInvalidArgument,
                  path + ": cannot open: " + std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return InvalidArgumentError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgumentError(path + ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return ResourceExhaustedError(path + ": mmap of " + std::to_string(size) +
                                    " bytes failed: " + std::strerror(err));
    }
    data = static_cast<const uint8_t*>(p);
  }
  return std::unique_ptr<MappedFile>(new MappedFile(path, fd, data, size, ModificationNs(st)));
}

Status MappedFile::CheckUnchanged() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    return DataLossError(path_ + ": cannot stat the mapped file: " + std::strerror(errno));
  }
  if (static_cast<uint64_t>(st.st_size) < size_) {
    return DataLossError(path_ + ": the file shrank from " + std::to_string(size_) + " to " +
                         std::to_string(st.st_size) +
                         " bytes while the model was using it (truncated or rewritten in "
                         "place?); load the model again");
  }
  if (ModificationNs(st) != mtime_ns_) {
    return DataLossError(path_ +
                         ": the file was modified while the model was using it; load the model "
                         "again");
  }
  return OkStatus();
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  ::close(fd_);
}

void MappedFile::ReleasePages(uint64_t offset, uint64_t n) const {
  if (data_ == nullptr || offset >= size_) return;
  n = std::min<uint64_t>(n, size_ - offset);
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(data_) + offset;
  const uintptr_t begin = (start + page - 1) / page * page;
  const uintptr_t end = (start + n) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

StatusOr<std::unique_ptr<AnonymousMemory>> AnonymousMemory::Allocate(size_t size, bool huge_pages) {
  // The length is rounded up to the system page (not to huge pages: see ResidentBytes).
  const size_t length = std::max<size_t>(size, 1);
  void* data = MapAnonymous(length, huge_pages ? kHugePageBytes : 0, huge_pages);
  if (data == nullptr) {
    return ResourceExhaustedError("cannot map " + std::to_string(size) +
                                  " bytes of memory: " + std::strerror(errno));
  }
  return std::unique_ptr<AnonymousMemory>(
      new AnonymousMemory(static_cast<uint8_t*>(data), length, size));
}

uint64_t AnonymousMemory::ResidentBytes(size_t size, bool /*huge_pages*/) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (std::max<size_t>(size, 1) + page - 1) / page * page;
}

AnonymousMemory::~AnonymousMemory() { UnmapAnonymous(data_, length_); }

StatusOr<std::string> ReadFileToString(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer before the type check refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    return Status(err == ENOENT ? StatusCode::kNotFound : StatusCode::kInvalidArgument,
                  path + ": cannot open: " + std::strerror(err));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return InvalidArgumentError(path + ": cannot stat: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(path + ": not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > kMaxReadFileBytes) {
    return InvalidArgumentError(path + ": " + std::to_string(size) +
                                " bytes is more than the limit of " +
                                std::to_string(kMaxReadFileBytes) + " for this kind of file");
  }
  std::string text;
  try {
    text.resize(static_cast<size_t>(size));
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(path + ": out of memory reading " + std::to_string(size) +
                                  " bytes");
  }
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t got =
        ::pread(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return DataLossError(path + ": read error: " + std::strerror(errno));
    if (got == 0) return DataLossError(path + ": file shrank while being read");
    done += static_cast<size_t>(got);
  }
  return text;
}

}  // namespace gemma4
