#pragma once

// A throwaway PostgreSQL database for tests that need a real server.
//
//   TEST_CASE("...", "[.pg]") {
//     gatehouse::test::scratch_database db;   // fresh, empty database
//     auto conn = gatehouse::storage::connect(db.url(), {});
//     ...
//   }                                         // dropped here
//
// The server comes from GATEHOUSE_TEST_DATABASE_URL, a superuser URL such as
// postgresql://postgres@127.0.0.1:55432/postgres. A missing variable fails
// the test: database tests never pass silently.

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>

#include <unistd.h>

namespace gatehouse::test {

/// The value of environment variable `name`; REQUIREs that it is set and
/// non-empty.
inline std::string require_env(const char* name) {
  const char* value = std::getenv(name);
  INFO("environment variable " << name << " must be set (see "
                               << "tests/support/scratch_database.hpp)");
  REQUIRE(value != nullptr);
  REQUIRE(*value != '\0');
  return value;
}

/// Creates a uniquely named database on the test server and drops it (WITH
/// (FORCE), so leftover connections do not block) when destroyed.
class scratch_database {
public:
  scratch_database()
    : server_url_(require_env("GATEHOUSE_TEST_DATABASE_URL")),
      name_(unique_name()) {
    {
      pqxx::connection admin{server_url_};
      pqxx::nontransaction tx{admin};
      tx.exec("CREATE DATABASE " + tx.quote_name(name_));
    }
    url_ = with_database(server_url_, name_);
  }

  ~scratch_database() {
    try {
      pqxx::connection admin{server_url_};
      pqxx::nontransaction tx{admin};
      tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_)
              + " WITH (FORCE)");
    } catch (...) {
      // A destructor must not throw; the database name is unique anyway.
    }
  }

  scratch_database(const scratch_database&) = delete;
  scratch_database& operator=(const scratch_database&) = delete;

  /// Connection string of the scratch database (same server and user).
  const std::string& url() const {
    return url_;
  }

  /// Its name, e.g. "gatehouse_test_1234_0_5f3a9c".
  const std::string& name() const {
    return name_;
  }

private:
  static std::string unique_name() {
    static std::atomic<unsigned> counter{0};
    std::random_device entropy;
    auto salt = std::to_string(
      entropy()
      ^ static_cast<unsigned>(
        std::chrono::steady_clock::now().time_since_epoch().count()));
    return "gatehouse_test_" + std::to_string(::getpid()) + "_"
      + std::to_string(counter++) + "_" + salt;
  }

  /// `url` with its database replaced by `name`. Handles both libpq forms:
  /// postgresql://user@host:port/db?params and "host=... dbname=...".
  static std::string with_database(const std::string& url,
                                   const std::string& name) {
    auto scheme = url.find("://");
    if (scheme == std::string::npos)
      return url + " dbname=" + name; // the last keyword wins in libpq
    auto query = url.find_first_of("?#", scheme + 3);
    auto authority_end = url.find('/', scheme + 3);
    if (authority_end == std::string::npos || authority_end > query)
      authority_end = query == std::string::npos ? url.size() : query;
    auto rest = query == std::string::npos ? std::string() : url.substr(query);
    return url.substr(0, authority_end) + "/" + name + rest;
  }

  std::string server_url_;
  std::string name_;
  std::string url_;
};

} // namespace gatehouse::test
