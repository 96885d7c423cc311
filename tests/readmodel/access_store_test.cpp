// The access store actor and the signing key of `migrate` against a real
// PostgreSQL server. Hidden tag [.pg].

#include "common/base64.hpp"
#include "storage/access_store.hpp"
#include "storage/read_model_loader.hpp"
#include "tests/readmodel/fixtures.hpp"

#include <algorithm>
#include <regex>
#include <set>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;

namespace {

using codes = std::vector<std::string>;

struct store_fixture : seeded_database, actor_env {
  access_store_actor store = sys.spawn<caf::detached>(
    storage::access_store,
    storage::access_store_settings{db.url(), std::chrono::seconds{5}});

  ~store_fixture() {
    self->send_exit(store, caf::exit_reason::user_shutdown);
  }

  /// Every row of every table, as text (to prove secrets are not stored).
  std::string dump_all() {
    std::string text;
    pqxx::nontransaction tx{*conn};
    for (const auto& table :
         tx.exec("SELECT table_schema || '.' || table_name FROM "
                 "information_schema.tables WHERE table_schema IN "
                 "('public', 'gatehouse_state') ORDER BY 1"))
      for (const auto& row :
           tx.exec("SELECT t::text FROM " + table[0].as<std::string>() + " t"))
        text += row[0].as<std::string>() + "\n";
    return text;
  }
};

std::string sha256_sql(const std::string& clear) {
  return "encode(sha256(convert_to('" + clear + "', 'UTF8')), 'hex')";
}

} // namespace

TEST_CASE_METHOD(store_fixture,
                 "touch_key writes last_used_at once a day, nothing else, "
                 "and no reload follows",
                 "[.pg]") {
  auto loader_settings = storage::read_model_loader_settings{};
  loader_settings.database_url = db.url();
  loader_settings.poll_interval = 20ms;
  auto loader
    = sys.spawn<caf::detached>(storage::read_model_loader, loader_settings);
  self->send(loader, atom::subscribe::value, subscriber());
  REQUIRE(next_snapshot(10s));

  auto updated_at = query("SELECT updated_at FROM keys WHERE id = 1");
  REQUIRE(query("SELECT last_used_at FROM keys WHERE id = 1") == "NULL");
  // touch_key has no reply; a request behind it proves it ran.
  auto sync = [&] {
    REQUIRE(request<std::string>(store, atom::take_moved::value,
                                 std::int64_t{0}, std::int64_t{0}));
  };
  self->send(store, atom::touch_key::value, std::int64_t{1});
  sync();
  auto first = query("SELECT last_used_at FROM keys WHERE id = 1");
  CHECK(first != "NULL");
  CHECK(query("SELECT now() - last_used_at < interval '1 minute' FROM keys "
              "WHERE id = 1")
        == "t");

  self->send(store, atom::touch_key::value, std::int64_t{1});
  sync();
  CHECK(query("SELECT last_used_at FROM keys WHERE id = 1") == first);

  exec(*conn,
       "UPDATE keys SET last_used_at = now() - interval '25 hours' "
       "WHERE id = 1");
  self->send(store, atom::touch_key::value, std::int64_t{1});
  sync();
  CHECK(query("SELECT now() - last_used_at < interval '1 minute' FROM keys "
              "WHERE id = 1")
        == "t");
  CHECK(query("SELECT updated_at FROM keys WHERE id = 1") == updated_at);

  // An unknown key is no error and changes nothing the loader reads.
  self->send(store, atom::touch_key::value, std::int64_t{999});
  sync();
  CHECK_FALSE(next_snapshot(1s));
  // A new token does: git over HTTP finds tokens in the read model.
  auto pat = request<pat_result>(store, atom::create_pat::value,
                                 pat_request{1, "cli", {"api"}, ""});
  REQUIRE(pat);
  auto updated = next_snapshot(10s);
  REQUIRE(updated);
  auto found = updated->tokens_by_digest.find(token_digest(pat->token));
  REQUIRE(found != updated->tokens_by_digest.end());
  CHECK(found->second.user_id == 1);
  CHECK(found->second.scopes == std::vector<std::string>{"api"});
  self->send_exit(loader, caf::exit_reason::user_shutdown);
}

TEST_CASE_METHOD(store_fixture,
                 "a project-moved message is kept five minutes and taken once",
                 "[.pg]") {
  auto take = [&](std::int64_t user, std::int64_t project) {
    auto got
      = request<std::string>(store, atom::take_moved::value, user, project);
    REQUIRE(got);
    return *got;
  };
  auto put = [&](std::int64_t user, std::int64_t project, std::string msg) {
    auto ok = request<bool>(store, atom::put_moved::value, user, project,
                            std::move(msg));
    REQUIRE(ok);
    CHECK(*ok);
  };
  CHECK(take(1, 10).empty());
  put(1, 10, "Project 'acme/old' was moved to 'acme/widgets'.");
  CHECK(query("SELECT expires_at - now() BETWEEN interval '4 minutes 50 "
              "seconds' AND interval '5 minutes' FROM "
              "gatehouse_state.project_moved_messages")
        == "t");
  CHECK(take(2, 10).empty()); // another user's
  CHECK(take(1, 10) == "Project 'acme/old' was moved to 'acme/widgets'.");
  CHECK(take(1, 10).empty()); // taken once

  put(1, 10, "first");
  put(1, 10, "second");
  CHECK(take(1, 10) == "second");

  put(1, 11, "expired");
  exec(*conn,
       "UPDATE gatehouse_state.project_moved_messages SET expires_at "
       "= now() - interval '1 second'");
  CHECK(take(1, 11).empty());
  CHECK(query("SELECT count(*) FROM gatehouse_state.project_moved_messages")
        == "0");

  // Expired rows of others are swept by the next put.
  put(2, 10, "old");
  exec(*conn,
       "UPDATE gatehouse_state.project_moved_messages SET expires_at "
       "= now() - interval '1 second'");
  put(3, 10, "new");
  CHECK(query("SELECT string_agg(user_id::text, ',') FROM "
              "gatehouse_state.project_moved_messages")
        == "3");
}

TEST_CASE_METHOD(store_fixture,
                 "migrate creates the lfs signing key once and the store "
                 "reads it",
                 "[.pg]") {
  auto stored = query("SELECT encode(secret, 'hex') FROM "
                      "gatehouse_state.signing_keys WHERE name = 'lfs'");
  CHECK(stored.size() == 64); // 32 bytes
  CHECK(query("SELECT count(*) FROM gatehouse_state.signing_keys") == "1");
  auto again = storage::migrate(*conn);
  CHECK(again.applied.empty());
  CHECK(query("SELECT encode(secret, 'hex') FROM gatehouse_state.signing_keys "
              "WHERE name = 'lfs'")
        == stored);

  auto key
    = request<std::string>(store, atom::signing_key::value, std::string{"lfs"});
  REQUIRE(key);
  CHECK(key->size() == 32);
  CHECK(hex_encode(*key) == stored);

  auto missing = request<std::string>(store, atom::signing_key::value,
                                      std::string{"nope"});
  REQUIRE_FALSE(missing);
  CHECK(classify(missing.error()) == errc::not_found);
}

TEST_CASE("every database gets its own signing key", "[.pg]") {
  seeded_database a;
  seeded_database b;
  auto sql = "SELECT encode(secret, 'hex') FROM gatehouse_state.signing_keys";
  CHECK(a.query(sql) != b.query(sql));
}

TEST_CASE_METHOD(store_fixture,
                 "recovery codes are 10 x 16 lower-case hex, stored as "
                 "digests, replaced on regeneration",
                 "[.pg]") {
  auto first = request<codes>(store, atom::new_codes::value, std::int64_t{2});
  REQUIRE(first);
  REQUIRE(first->size() == 10);
  const std::regex format{"^[0-9a-f]{16}$"};
  for (const auto& code : *first)
    CHECK(std::regex_match(code, format));
  CHECK(std::set<std::string>(first->begin(), first->end()).size() == 10);
  CHECK(query("SELECT count(*) FROM gatehouse_state.two_factor_recovery_codes "
              "WHERE user_id = 2")
        == "10");
  for (const auto& code : *first)
    CHECK(
      query("SELECT count(*) FROM gatehouse_state.two_factor_recovery_codes "
            "WHERE user_id = 2 AND code_digest = "
            + sha256_sql(code))
      == "1");
  auto all = dump_all();
  for (const auto& code : *first)
    CHECK(all.find(code) == std::string::npos);

  auto second = request<codes>(store, atom::new_codes::value, std::int64_t{2});
  REQUIRE(second);
  REQUIRE(second->size() == 10);
  CHECK(query("SELECT count(*) FROM gatehouse_state.two_factor_recovery_codes "
              "WHERE user_id = 2")
        == "10");
  for (const auto& code : *first)
    CHECK(
      query("SELECT count(*) FROM gatehouse_state.two_factor_recovery_codes "
            "WHERE code_digest = "
            + sha256_sql(code))
      == "0");
  for (const auto& code : *second)
    CHECK(
      query("SELECT count(*) FROM gatehouse_state.two_factor_recovery_codes "
            "WHERE user_id = 2 AND code_digest = "
            + sha256_sql(code))
      == "1");

  auto nobody = request<codes>(store, atom::new_codes::value, std::int64_t{99});
  REQUIRE_FALSE(nobody);
  CHECK(classify(nobody.error()) == errc::not_found);

  // Deleting the user deletes the codes.
  exec(*conn, "DELETE FROM users WHERE id = 2");
  CHECK(query("SELECT count(*) FROM gatehouse_state.two_factor_recovery_codes")
        == "0");
}

TEST_CASE_METHOD(store_fixture,
                 "a personal access token is stored as its digest only",
                 "[.pg]") {
  auto made = request<pat_result>(
    store, atom::create_pat::value,
    pat_request{3, "laptop", {"read_repository", "api"}, "2027-01-31"});
  REQUIRE(made);
  const auto& token = made->token;
  CHECK(std::regex_match(token, std::regex{"^glpat-[A-Za-z0-9_-]{20}$"}));
  auto row
    = "FROM personal_access_tokens WHERE token_digest = " + sha256_sql(token);
  CHECK(query("SELECT count(*) " + row) == "1");
  CHECK(query("SELECT id >= 1000000000 " + row) == "t");
  CHECK(query("SELECT user_id || ' ' || name || ' ' || scopes::text || ' ' "
              "|| expires_at || ' ' || revoked "
              + row)
        == "3 laptop {read_repository,api} 2027-01-31 false");
  CHECK(dump_all().find(token) == std::string::npos);

  auto open_ended = request<pat_result>(store, atom::create_pat::value,
                                        pat_request{3, "ci", {"api"}, ""});
  REQUIRE(open_ended);
  CHECK(open_ended->token != token);
  CHECK(query("SELECT expires_at FROM personal_access_tokens WHERE "
              "token_digest = "
              + sha256_sql(open_ended->token))
        == "NULL");
  // Seeded ids stay untouched; new ids follow each other.
  CHECK(query("SELECT string_agg(id::text, ',' ORDER BY id) FROM "
              "personal_access_tokens")
        == "1,1000000000,1000000001");

  auto nobody = request<pat_result>(store, atom::create_pat::value,
                                    pat_request{99, "x", {"api"}, ""});
  REQUIRE_FALSE(nobody);
  CHECK(classify(nobody.error()) == errc::not_found);
  auto bad_date = request<pat_result>(
    store, atom::create_pat::value, pat_request{3, "x", {"api"}, "2027-02-31"});
  REQUIRE_FALSE(bad_date);
  CHECK(classify(bad_date.error()) == errc::bad_request);
  // The store still works after the failures.
  CHECK(request<pat_result>(store, atom::create_pat::value,
                            pat_request{3, "y", {"api"}, ""}));
}

TEST_CASE("the access store reports an unreachable database as unavailable",
          "[readmodel]") {
  actor_env env;
  auto store = env.sys.spawn<caf::detached>(
    storage::access_store,
    storage::access_store_settings{
      "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2",
      std::chrono::seconds{5}});
  auto got = env.request<std::string>(store, atom::signing_key::value,
                                      std::string{"lfs"});
  REQUIRE_FALSE(got);
  CHECK(classify(got.error()) == errc::unavailable);
  env.self->send_exit(store, caf::exit_reason::user_shutdown);
}
