#pragma once

// Shared pieces of the read-model tests: a migrated, seeded scratch database
// and a real (threaded) actor system for the detached storage actors.

#include "messages/errors.hpp"
#include "messages/interfaces.hpp"
#include "storage/database.hpp"
#include "storage/migrate.hpp"
#include "storage/read_model_loader.hpp"
#include "storage/seed.hpp"
#include "tests/storage/seed_fixtures.hpp"
#include "tests/support/scratch_database.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

namespace gatehouse::test {

/// The first column of the first row of `sql` ("NULL" for null, "" if none).
/// A loader that polls and backs off fast, for tests.
inline storage::read_model_loader_settings
loader_settings(const std::string& url) {
  using namespace std::chrono_literals;
  storage::read_model_loader_settings s;
  s.database_url = url;
  s.poll_interval = 20ms;
  s.min_backoff = 50ms;
  s.max_backoff = 500ms;
  return s;
}

inline std::string query1(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx{conn};
  auto r = tx.exec(sql);
  if (r.empty())
    return "";
  return r[0][0].is_null() ? "NULL" : r[0][0].as<std::string>();
}

inline void exec(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx{conn};
  tx.exec(sql);
}

/// Seeds `doc` and REQUIREs success, showing the problems otherwise.
inline void seed_ok(pqxx::connection& conn, const nlohmann::json& doc) {
  std::istringstream text{doc.dump()};
  auto report = storage::apply_seed(conn, text, storage::seed_options{});
  for (const auto& p : report.problems)
    UNSCOPED_INFO(p);
  REQUIRE(report.ok());
}

/// A scratch database, migrated and seeded with the demo document.
struct seeded_database {
  scratch_database db;
  std::unique_ptr<pqxx::connection> conn
    = storage::connect(db.url(), std::chrono::seconds{30});

  seeded_database() {
    storage::migrate(*conn);
    seed_ok(*conn, demo_seed());
  }

  std::string query(const std::string& sql) {
    return query1(*conn, sql);
  }
};

/// A threaded actor system and a scoped actor to talk to it.
struct actor_env {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};

  /// Sends a request and waits for the answer (or error).
  template <class T, class Handle, class... Ts>
  caf::expected<T> request(const Handle& hdl, Ts&&... xs) {
    caf::expected<T> out = caf::make_error(errc::internal, "no answer");
    self->request(hdl, std::chrono::seconds{10}, std::forward<Ts>(xs)...)
      .receive([&](T& x) { out = std::move(x); },
               [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  /// The next snapshot delivered to `self`, or null after `timeout`.
  snapshot_ptr next_snapshot(std::chrono::milliseconds timeout) {
    snapshot_ptr out;
    self->receive([&](atom::snapshot, const snapshot_ptr& snap) { out = snap; },
                  caf::after(timeout) >>
                    [] {
                      // nop: returns null
                    });
    return out;
  }

  /// `self` as a subscriber handle.
  caf::actor subscriber() {
    return caf::actor_cast<caf::actor>(self.ptr());
  }
};

} // namespace gatehouse::test
