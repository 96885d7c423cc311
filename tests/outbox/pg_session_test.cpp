// The one mapping of database exceptions to errc (storage/pg_session.hpp),
// without a server: libpqxx's exception types are thrown by hand. Plus one
// session against a port where nothing listens.

#include "storage/pg_session.hpp"
#include "tests/support/ports.hpp"
#include "tests/support/process.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <stdexcept>

using namespace gatehouse;
using gatehouse::storage::classify_pg_exception;

namespace {

/// The mapping of `e`, as "code, drop" so that a failed check shows both.
std::string mapped(const std::exception& e) {
  auto failure = classify_pg_exception(e);
  return std::string{to_string(failure.code)}
  + (failure.drop ? ", drop" : ", keep");
}

} // namespace

TEST_CASE("a lost connection or an unknown outcome is unavailable and "
          "drops the connection",
          "[storage][pg_session]") {
  CHECK(mapped(pqxx::broken_connection{"gone"}) == "unavailable, drop");
  CHECK(mapped(pqxx::in_doubt_error{"commit lost"}) == "unavailable, drop");
  CHECK(mapped(pqxx::statement_completion_unknown{"lost"})
        == "unavailable, drop");
}

TEST_CASE("what PostgreSQL refuses in the request is the caller's error and "
          "keeps the connection",
          "[storage][pg_session]") {
  CHECK(mapped(pqxx::data_exception{"date/time field value out of range", "",
                                    "22008"})
        == "bad_request, keep");
  CHECK(mapped(pqxx::unique_violation{"duplicate key value", "", "23505"})
        == "bad_request, keep");
  CHECK(mapped(pqxx::foreign_key_violation{"violates foreign key", "", "23503"})
        == "not_found, keep");
}

TEST_CASE("other server errors are unavailable and keep the connection; "
          "anything else drops it",
          "[storage][pg_session]") {
  CHECK(mapped(pqxx::sql_error{"canceling statement due to statement timeout",
                               "", "57014"})
        == "unavailable, keep");
  CHECK(mapped(pqxx::deadlock_detected{"deadlock detected"})
        == "unavailable, keep");
  CHECK(mapped(std::runtime_error{"surprise"}) == "unavailable, drop");
}

TEST_CASE("a session whose server is away answers unavailable and stays "
          "closed",
          "[storage][pg_session]") {
  // A held port: nothing listens there, and nothing else can take it.
  test::reserved_port away;
  storage::pg_session session{
    {"postgresql://nobody@127.0.0.1:" + std::to_string(away.port())
       + "/none?connect_timeout=2",
     std::chrono::seconds{1}, "some_channel"}};
  bool ran = false;
  auto result = session.run("probe", [&](pqxx::connection&) {
    ran = true;
    return 1;
  });
  REQUIRE_FALSE(result);
  CHECK(classify(result.error()) == errc::unavailable);
  CHECK_FALSE(ran);
  CHECK_FALSE(session.connected());
  CHECK(session.open());
}
