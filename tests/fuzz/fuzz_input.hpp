#pragma once

// Splits a fuzzer's input into the parts a target needs: a selector byte,
// lines, the rest. Every part is taken from the bytes as they come, so that
// the seed corpus (tests/fuzz/corpus/<target>/) reads as plain text after
// its first byte.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace gatehouse::fuzz {

class input {
public:
  input(const std::uint8_t* data, std::size_t size)
    : data_(reinterpret_cast<const char*>(data)), size_(size) {}

  /// The next byte, or 0 at the end.
  std::uint8_t byte() {
    return pos_ < size_ ? static_cast<std::uint8_t>(data_[pos_++]) : 0;
  }

  /// Up to the next '\n' (not included), or the rest.
  std::string line() {
    std::size_t end = pos_;
    while (end < size_ && data_[end] != '\n')
      ++end;
    std::string out(data_ + pos_, end - pos_);
    pos_ = end < size_ ? end + 1 : end;
    return out;
  }

  /// Everything not taken yet.
  std::string rest() {
    std::string out(data_ + pos_, size_ - pos_);
    pos_ = size_;
    return out;
  }

private:
  const char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

/// Stops the run as a crash when a property that must hold does not: a
/// wrong answer is a finding even when nothing overflowed.
#define GATEHOUSE_FUZZ_CHECK(cond)                                             \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                     \
      std::abort();                                                            \
    }                                                                          \
  } while (false)

} // namespace gatehouse::fuzz
