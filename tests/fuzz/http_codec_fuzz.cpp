// The HTTP codec of every call of the call table (edges/http/codec.hpp):
// merged parameters into the call's request type, and a refusal into the
// status and body the edge answers.
//
// Input: a selector byte (call = byte mod the number of calls; bit 7: the
// rest is a form body, else a JSON body), then the body.

#include "edges/http/codec.hpp"
#include "edges/http/params.hpp"
#include "edges/http/status.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace gatehouse;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  fuzz::input in(data, size);
  const auto selector = in.byte();
  const auto which = (selector & 0x7f) % call_count;
  const char* content_type = (selector & 0x80)
    ? "application/x-www-form-urlencoded"
    : "application/json";
  std::string error;
  auto params = http::merge_params("", content_type, in.rest(), error);
  if (!params)
    return 0;
  // No headers and no path captures: the calls that read them must cope.
  httplib::Request req;
  std::size_t index = 0;
  for_each_call([&](auto tag) {
    if (index++ != which)
      return;
    auto request = http::decode(tag, http::request_view{*params, req});
    if (!request) {
      auto answer = http::error_response(request.error());
      GATEHOUSE_FUZZ_CHECK(answer.status >= 400 && answer.status < 600);
      GATEHOUSE_FUZZ_CHECK(!answer.body.empty());
    }
  });
  return 0;
}
