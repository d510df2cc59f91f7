#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace gemma4 {

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
  return std::unique_ptr<MappedFile>(new MappedFile(path, fd, data, size));
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
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t align = huge_pages ? kHugePage : page;
  const size_t rounded = (std::max<size_t>(size, 1) + page - 1) / page * page;
  // Over-reserve by one alignment unit so an aligned start exists; the slack is never touched,
  // so it costs address space only.
  const size_t mapped = rounded + (align > page ? align : 0);
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return ResourceExhaustedError("cannot map " + std::to_string(size) +
                                  " bytes of memory: " + std::strerror(errno));
  }
  const uintptr_t start = (reinterpret_cast<uintptr_t>(p) + align - 1) / align * align;
  uint8_t* data = reinterpret_cast<uint8_t*>(start);
#ifdef MADV_HUGEPAGE
  if (huge_pages) ::madvise(data, rounded, MADV_HUGEPAGE);  // advice only: fine if refused
#endif
  return std::unique_ptr<AnonymousMemory>(new AnonymousMemory(p, mapped, data, size));
}

AnonymousMemory::~AnonymousMemory() { ::munmap(mapping_, mapped_); }

StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(errno == ENOENT ? StatusCode::kNotFound : StatusCode::kInvalidArgument,
                  path + ": cannot open: " + std::strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return DataLossError(path + ": read error");
  return ss.str();
}

}  // namespace gemma4
