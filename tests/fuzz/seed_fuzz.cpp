// The seed document (shared/seed-format.md) as `gatehouse seed FILE` reads
// it: JSON, then validation and parsing without a database
// (storage::validate_seed), once with references resolved only inside the
// document and once with every outside reference reported as existing (the
// path apply_seed takes with its database lookup).
//
// Input: the document's text.

#include "storage/seed.hpp"
#include "tests/fuzz/fuzz_input.hpp"

#include <nlohmann/json.hpp>

using namespace gatehouse;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  fuzz::input in(data, size);
  // app/main.cpp parses with exceptions and reports parse_error; the same
  // documents are discarded here.
  auto doc = nlohmann::json::parse(in.rest(), nullptr, false);
  if (doc.is_discarded())
    return 0;
  auto problems = storage::validate_seed(doc);
  for (const auto& p : problems)
    GATEHOUSE_FUZZ_CHECK(!p.empty());
  storage::seed_lookup everything
    = [](const std::string&, const std::set<std::string>& keys) {
        return keys;
      };
  auto with_db = storage::validate_seed(doc, everything);
  // Knowing more objects can only remove problems.
  GATEHOUSE_FUZZ_CHECK(with_db.size() <= problems.size());
  return 0;
}
