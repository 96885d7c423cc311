// SSH public keys and their fingerprints: the key lines of a seed document
// (storage/seed/ssh_key.hpp), the fingerprint both processes must agree on
// (common/ssh_key.hpp), and /authorized_keys' lookup of the blob OpenSSH
// sends (actors/access/shell_calls.hpp).
//
// Input: one key line, "<type> <base64 blob> [comment]", or any text as the
// `key` parameter of /authorized_keys.

#include "actors/access/shell_calls.hpp"
#include "common/base64.hpp"
#include "common/ssh_key.hpp"
#include "storage/seed/ssh_key.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace gatehouse;

namespace {

// A read model holding one key, as the loader builds it from a seeded line.
snapshot snapshot_with(const storage::seeding::ssh_key& key) {
  snapshot snap;
  snap.settings.external_url = "https://gitlab.example.com";
  key_record record;
  record.id = 1;
  record.user_id = 2;
  record.title = "fuzz";
  record.key_type = key.type;
  record.blob = key.blob;
  snap.keys.emplace(record.id, record);
  snap.key_by_fingerprint.emplace(key.fingerprint, record.id);
  user_record user;
  user.id = 2;
  user.username = "fuzz";
  user.name = "Fuzz";
  snap.users.emplace(user.id, user);
  return snap;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  fuzz::input in(data, size);
  const auto line = in.rest();

  (void)ssh_fingerprint_sha256(line);
  (void)base64_decode(line);

  std::string error;
  auto key = storage::seeding::parse_ssh_key(line, error);
  if (!key) {
    GATEHOUSE_FUZZ_CHECK(!error.empty());
    (void)access::find_authorized_key(snapshot{}, line);
    return 0;
  }
  auto blob = base64_decode(key->blob);
  GATEHOUSE_FUZZ_CHECK(blob && !blob->empty());
  GATEHOUSE_FUZZ_CHECK(key->fingerprint == ssh_fingerprint_sha256(*blob));
  // A key the seed accepts is found by the blob OpenSSH sends for it.
  auto snap = snapshot_with(*key);
  auto found = access::find_authorized_key(snap, key->blob);
  GATEHOUSE_FUZZ_CHECK(found && found->id == 1);
  (void)access::find_authorized_key(snap, line);
  return 0;
}
