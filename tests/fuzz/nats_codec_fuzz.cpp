// The Protobuf requests of every call on the NATS edge
// (edges/nats/internal_codec.hpp), as the bridge actors decode a message's
// payload, and a refusal into the Error reply the edge sends.
//
// Input: a selector byte (call = byte mod the number of calls), then the
// payload.

#include "edges/nats/internal_codec.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace gatehouse;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  fuzz::input in(data, size);
  const auto which = in.byte() % call_count;
  const auto payload = in.rest();
  std::size_t index = 0;
  for_each_call([&](auto tag) {
    if (index++ != which)
      return;
    if constexpr (spec_of(decltype(tag)::value).over_nats) {
      auto request = nats::decode(tag, payload);
      if (!request) {
        auto reply = nats::failure_reply(request.error());
        GATEHOUSE_FUZZ_CHECK(reply.status >= 400 && reply.status < 600);
      }
    }
  });
  return 0;
}
