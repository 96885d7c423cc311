// The read-model loader actor with real LISTEN/NOTIFY. Hidden tag [.pg]
// except where no server is needed.

#include "storage/read_model_loader.hpp"
#include "tests/readmodel/fixtures.hpp"

#include <string>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

/// A loader over a seeded database, with the test's scoped actor subscribed.
struct loader_fixture : seeded_database, actor_env {
  read_model_loader_actor loader = sys.spawn<caf::detached>(
    storage::read_model_loader, loader_settings(db.url()));

  loader_fixture() {
    self->send(loader, atom::subscribe::value, subscriber());
  }

  ~loader_fixture() {
    self->send_exit(loader, caf::exit_reason::user_shutdown);
  }
};

} // namespace

TEST_CASE_METHOD(loader_fixture,
                 "the loader delivers a first snapshot and a new one after "
                 "every seed that changes something",
                 "[.pg]") {
  auto first = next_snapshot(10s);
  REQUIRE(first);
  CHECK(first->users.size() == 3);
  CHECK(first->users.at(2).state == "active");

  auto got = request<snapshot_ptr>(loader, atom::get::value);
  REQUIRE(got);
  CHECK(*got == first);

  auto doc = demo_seed();
  doc["users"][1]["state"] = "blocked";
  auto start = std::chrono::steady_clock::now();
  seed_ok(*conn, doc);
  auto second = next_snapshot(5s);
  REQUIRE(second);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  CHECK(second != first);
  CHECK(second->users.at(2).state == "blocked");
  CHECK(first->users.at(2).state == "active"); // snapshots are immutable

  // A burst of changes is read in few loads, ending with the last state.
  for (int i = 0; i < 5; ++i) {
    doc["users"][1]["name"] = "Developer " + std::to_string(i);
    seed_ok(*conn, doc);
  }
  // Read until the last state arrives (not until a quiet second: a busy
  // machine may pause longer between two loads).
  snapshot_ptr last;
  int loads = 0;
  while (!last || last->users.at(2).name != "Developer 4") {
    auto s = next_snapshot(10s);
    REQUIRE(s);
    last = s;
    ++loads;
  }
  CHECK(loads <= 5);

  // A late subscriber gets the current snapshot at once.
  caf::scoped_actor other{sys};
  other->send(loader, atom::subscribe::value,
              caf::actor_cast<caf::actor>(other.ptr()));
  snapshot_ptr current;
  other->receive([&](atom::snapshot, const snapshot_ptr& s) { current = s; },
                 caf::after(5s) >> [] {});
  CHECK(current == last);
}

TEST_CASE_METHOD(loader_fixture,
                 "the loader reconnects after its backend is terminated and "
                 "reloads",
                 "[.pg]") {
  auto first = next_snapshot(10s);
  REQUIRE(first);
  auto killed = query(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
    "datname = current_database() AND application_name = 'gatehouse' AND "
    "pid <> pg_backend_pid()");
  // The listening connection and the second one of each load.
  CHECK(killed == "2");
  // Notifications may have been missed while it was away: a fresh load.
  auto after_reconnect = next_snapshot(10s);
  REQUIRE(after_reconnect);
  CHECK(after_reconnect != first);
  // And it LISTENs again.
  auto doc = demo_seed();
  doc["users"][0]["name"] = "Renamed";
  seed_ok(*conn, doc);
  auto changed = next_snapshot(5s);
  REQUIRE(changed);
  CHECK(changed->users.at(1).name == "Renamed");
}

TEST_CASE_METHOD(loader_fixture,
                 "the loader ignores notifications of kinds outside the read "
                 "model",
                 "[.pg]") {
  REQUIRE(next_snapshot(10s));
  auto doc = demo_seed();
  doc["webhooks"][0]["url"] = "http://127.0.0.1:9912/hook";
  seed_ok(*conn, doc);
  CHECK_FALSE(next_snapshot(1500ms));
  // Any other notification makes it read the change log, which names
  // nothing here: no new model either.
  exec(*conn, "NOTIFY gatehouse_changes, 'not json'");
  CHECK_FALSE(next_snapshot(1500ms));
  exec(*conn, "UPDATE users SET name = 'After' WHERE id = 1");
  auto changed = next_snapshot(5s);
  REQUIRE(changed);
  CHECK(changed->users.at(1).name == "After");
}

TEST_CASE("the loader answers get with an error while PostgreSQL is "
          "unreachable",
          "[readmodel]") {
  actor_env env;
  auto loader = env.sys.spawn<caf::detached>(
    storage::read_model_loader,
    loader_settings(
      "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"));
  // The first request may wait for the first attempt; it fails, and so do
  // the later ones, until a load succeeds.
  auto got = env.request<snapshot_ptr>(loader, atom::get::value);
  REQUIRE_FALSE(got);
  CHECK(classify(got.error()) == errc::unavailable);
  got = env.request<snapshot_ptr>(loader, atom::get::value);
  REQUIRE_FALSE(got);
  CHECK(classify(got.error()) == errc::unavailable);
  env.self->send_exit(loader, caf::exit_reason::user_shutdown);
}
