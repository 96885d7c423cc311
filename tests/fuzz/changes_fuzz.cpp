// The `changes` lines of /allowed and the push hooks ("<old> <new> <ref>"
// per line, from Gitaly's pre-receive), and the per-ref helpers every
// parsed change goes through (actors/access/ref_rules.hpp).
//
// Input: the `changes` text as Gitaly sends it.

#include "actors/access/ref_rules.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace gatehouse;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  fuzz::input in(data, size);
  const auto text = in.rest();
  (void)access::valid_utf8(text);
  std::string previous = "refs/heads/*";
  for (const auto& change : access::parse_changes(text)) {
    // Rails splits on whitespace: no part of a change is empty or spaced.
    GATEHOUSE_FUZZ_CHECK(!change.oldrev.empty() && !change.newrev.empty()
                         && !change.ref.empty());
    GATEHOUSE_FUZZ_CHECK(change.ref.find_first_of(" \t\n")
                         == std::string::npos);
    (void)access::is_blank_rev(change.oldrev);
    (void)access::is_blank_rev(change.newrev);
    (void)access::starts_with_full_sha(change.ref);
    (void)access::valid_ref_name(change.ref);
    (void)access::valid_utf8(change.ref);
    // Refs as protected-ref patterns too: '*' runs of any length.
    (void)access::ref_pattern_matches(previous, change.ref);
    (void)access::ref_pattern_matches(change.ref, previous);
    GATEHOUSE_FUZZ_CHECK(access::ref_pattern_matches(change.ref, change.ref));
    previous = change.ref;
  }
  return 0;
}
