// HTTP parameter merging (edges/http/params.hpp): query string, form body
// and JSON body into one object, with the JSON nesting check that runs
// before parsing, as every route of the HTTP edge does it.
//
// Input: the Content-Type line, the query line (after '?'), then the body.

#include "edges/http/params.hpp"
#include "tests/fuzz/fuzz_input.hpp"

#include <httplib.h>

using namespace gatehouse;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  fuzz::input in(data, size);
  httplib::Request req;
  req.method = "POST";
  const auto content_type = in.line();
  const auto query = in.line();
  req.target = "/api/v4/internal/allowed";
  if (!query.empty())
    req.target += "?" + query;
  if (!content_type.empty())
    req.headers.emplace("Content-Type", content_type);
  req.body = in.rest();

  std::string error;
  auto params = http::request_params(req, error);
  if (!params) {
    GATEHOUSE_FUZZ_CHECK(!error.empty());
    return 0;
  }
  GATEHOUSE_FUZZ_CHECK(params->is_object());
  // What the codecs and logs do with parameters; deep values would
  // overflow the stack here.
  (void)params->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  nlohmann::json copy = *params;
  GATEHOUSE_FUZZ_CHECK(copy == *params);
  return 0;
}
