// The seed document (shared/seed-format.md) as `gatehouse seed FILE` reads
// it: the streaming parse and validation without a database
// (storage::validate_seed), once with references resolved only inside the
// document and once with every outside reference reported as existing (the
// path apply_seed takes with its database lookup).
//
// Input: the document's text.

#include "storage/seed.hpp"
#include "tests/fuzz/fuzz_input.hpp"

#include <sstream>

using namespace gatehouse;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  fuzz::input in(data, size);
  auto text = in.rest();
  std::istringstream first{text};
  auto problems = storage::validate_seed(first);
  for (const auto& p : problems)
    GATEHOUSE_FUZZ_CHECK(!p.empty());
  storage::seed_lookup everything
    = [](const std::string&, const std::set<std::string>& keys) {
        return keys;
      };
  std::istringstream second{text};
  auto with_db = storage::validate_seed(second, everything);
  // Knowing more objects can only remove problems.
  GATEHOUSE_FUZZ_CHECK(with_db.size() <= problems.size());
  return 0;
}
