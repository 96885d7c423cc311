// JWT decoding and verification (common/jwt.hpp), as every authenticated
// route runs it on the caller's header.
//
// Input: a mode byte, then
// - mode bit 2 clear: the rest is the token, verified as is;
// - mode bit 2 set: a header line and the payload JSON, signed with the
//   right key, so that the claim checks (iss, aud, exp, nbf, iat) are
//   reached, not only the signature check.
// Bits 0-1 choose the caller. Bit 3 takes `now` from the next 8 bytes
// (extreme clocks against extreme claims).

#include "common/jwt.hpp"
#include "tests/fuzz/fuzz_input.hpp"

#include <cstring>

using namespace gatehouse;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  fuzz::input in(data, size);
  const auto mode = in.byte();
  const auto who = static_cast<jwt::caller>(mode & 3);
  std::int64_t now = 1700000000;
  if (mode & 8) {
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i)
      bits = (bits << 8) | in.byte();
    std::memcpy(&now, &bits, sizeof now);
  }
  const std::string key = "fuzz-secret";

  if (mode & 4) {
    auto header = in.line();
    auto payload = in.rest();
    auto token = jwt::sign_raw(header, payload, key);
    auto v = jwt::verify(who, token, key, now);
    (void)jwt::to_string(v);
    // A token signed with another key never passes, whatever it claims.
    GATEHOUSE_FUZZ_CHECK(jwt::verify(who, token, "another key", now)
                         != jwt::verdict::ok);
  } else {
    auto token = in.rest();
    auto v = jwt::verify(who, token, key, now);
    (void)jwt::to_string(v);
  }
  return 0;
}
