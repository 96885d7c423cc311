#include "actors/system_status.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace gatehouse;
using namespace std::chrono_literals;

namespace {

// A typed mock of the store: fails or answers as the test says.
struct store_script {
  std::atomic<bool> fail{false};
  std::atomic<int> probes{0};
  std::string version = "18.6.0";
};

store_actor::behavior_type mock_store(store_actor::pointer, store_script* s) {
  return {
    [=](atom::probe) -> caf::result<store_probe> {
      ++s->probes;
      if (s->fail)
        return caf::make_error(errc::unavailable, "connection refused");
      return store_probe{s->version};
    },
  };
}

struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  store_script script;
  store_actor store = sys.spawn(mock_store, &script);
  system_status_actor status;

  fixture() {
    system_status_settings s;
    s.probe_interval = 20ms;
    s.probe_timeout = 500ms;
    s.revision = "rev1";
    status = sys.spawn(system_status, s, store);
  }

  ~fixture() {
    self->send_exit(status, caf::exit_reason::user_shutdown);
    self->send_exit(store, caf::exit_reason::user_shutdown);
  }

  readiness_view readiness() {
    readiness_view out;
    self->request(status, 5s, atom::readiness::value)
      .receive([&](readiness_view& v) { out = v; },
               [&](caf::error& e) { FAIL(render(e)); });
    return out;
  }

  check_view check() {
    check_view out;
    self->request(status, 5s, check_query{})
      .receive([&](check_view& v) { out = v; },
               [&](caf::error& e) { FAIL(render(e)); });
    return out;
  }

  template <class Pred>
  bool eventually(Pred pred) {
    for (int i = 0; i < 250; ++i) {
      if (pred())
        return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
};

} // namespace

TEST_CASE_METHOD(fixture,
                 "system status reports the store's version and "
                 "reachability",
                 "[actor][system_status]") {
  REQUIRE(eventually([&] { return check().state_store_reachable; }));
  auto view = check();
  CHECK(view.gitlab_version == "18.6.0");
  CHECK(view.gitlab_rev == "rev1");
  CHECK(readiness().postgres_up);
  CHECK(readiness().postgres_error.empty());
}

TEST_CASE_METHOD(fixture,
                 "system status notices the store going down and "
                 "coming back",
                 "[actor][system_status]") {
  REQUIRE(eventually([&] { return readiness().postgres_up; }));
  script.fail = true;
  REQUIRE(eventually([&] { return !readiness().postgres_up; }));
  CHECK_THAT(readiness().postgres_error, Catch::Contains("connection refused"));
  CHECK_FALSE(check().state_store_reachable);
  script.fail = false;
  REQUIRE(eventually([&] { return readiness().postgres_up; }));
  CHECK(readiness().postgres_last_ok_ms > 0);
}

TEST_CASE_METHOD(fixture, "system status keeps the NATS state it is told",
                 "[actor][system_status]") {
  CHECK(readiness().nats_state == "disconnected");
  self->send(status, atom::nats_state::value, std::string{"connected"});
  CHECK(readiness().nats_state == "connected");
  self->send(status, atom::nats_state::value, std::string{"disconnected"});
  CHECK(readiness().nats_state == "disconnected");
}

TEST_CASE_METHOD(fixture, "system status probes periodically",
                 "[actor][system_status]") {
  REQUIRE(eventually([&] { return script.probes.load() >= 3; }));
}
