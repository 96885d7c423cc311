// Webhook URLs (webhooks/delivery.hpp parse_target_url) and the address
// checks that stop server-side request forgery (webhooks/address.hpp):
// the URL of every hook a project owner sets, parsed before each delivery.
// No name is resolved here; IP literals are checked as resolve_and_check
// checks what getaddrinfo returns.
//
// Input: the URL.

#include "tests/fuzz/fuzz_input.hpp"
#include "webhooks/address.hpp"
#include "webhooks/delivery.hpp"

#include <set>
#include <stdexcept>

using namespace gatehouse;

namespace {

// Every refusal parse_target_url gives: fixed texts, none built from the
// URL, which may carry a password.
const std::set<std::string> refusals{
  "the URL is not http:// or https://",
  "the URL has an unterminated IPv6 address",
  "the URL has text after its IPv6 address",
  "the URL has an invalid IPv6 address",
  "the URL has no valid host",
  "the URL has an invalid port",
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  fuzz::input in(data, size);
  const auto text = in.rest();
  std::string error;
  auto url = webhooks::parse_target_url(text, error);
  if (!url) {
    GATEHOUSE_FUZZ_CHECK(refusals.count(error) == 1);
    return 0;
  }
  GATEHOUSE_FUZZ_CHECK(!url->host.empty());
  GATEHOUSE_FUZZ_CHECK(url->port >= 1 && url->port <= 65535);
  GATEHOUSE_FUZZ_CHECK(!url->path.empty() && url->path.front() == '/');
  // The request line cannot be split: no byte outside printable ASCII.
  for (unsigned char c : url->path)
    GATEHOUSE_FUZZ_CHECK(c > 0x20 && c < 0x7f);
  // Nor can the Host header.
  for (unsigned char c : url->host_header())
    GATEHOUSE_FUZZ_CHECK(c > 0x20 && c < 0x7f);
  try {
    auto category = webhooks::address_category(url->host);
    (void)webhooks::refusal(category, false);
    (void)webhooks::refusal(category, true);
  } catch (const std::invalid_argument&) {
    // A name, resolved at delivery time.
  }
  return 0;
}
