// A fast 64-bit hash for integrity checks (saved session states, the weights fingerprint):
// eight bytes per step, each step a bijection of the running value for a fixed input word and
// of the input word for a fixed running value, so changing any single word (any one bit flip)
// always changes the result; wider damage goes unnoticed with probability about 2^-64. Not a
// defence against a forger who recomputes it.
#ifndef GEMMA4_SRC_BASE_HASH_H_
#define GEMMA4_SRC_BASE_HASH_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace gemma4 {

class Hasher {
 public:
  explicit Hasher(uint64_t seed = 0x6a09e667f3bcc908ull) : h_(seed) {}

  void AddWord(uint64_t word) {
    h_ ^= word;
    h_ *= 0x9e3779b97f4a7c15ull;  // odd: invertible modulo 2^64
    h_ ^= h_ >> 29;               // an xorshift is invertible too
  }
  void Add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      AddWord(w);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, p + i, n - i);
    AddWord(tail);
    AddWord(n);  // so that trailing zero bytes count
  }
  void Add(std::string_view bytes) { Add(bytes.data(), bytes.size()); }

  uint64_t value() const {
    uint64_t h = h_;  // a final avalanche so nearby inputs give unrelated values
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
  }

 private:
  uint64_t h_;
};

inline uint64_t Hash64(std::string_view bytes) {
  Hasher h;
  h.Add(bytes);
  return h.value();
}

}  // namespace gemma4

#endif  // GEMMA4_SRC_BASE_HASH_H_
