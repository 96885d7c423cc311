// The one mapping of database exceptions to errc (storage/pg_session.hpp),
// without a server: libpqxx's exception types are thrown by hand. Plus one
// session against a port where nothing listens.

#include "storage/pg_session.hpp"
#include "tests/support/process.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <stdexcept>

using namespace gatehouse;
using gatehouse::storage::classify_pg_exception;

TEST_CASE("a lost connection or an unknown commit outcome is unavailable "
          "and drops the connection",
          "[storage][pg_session]") {
  auto broken = classify_pg_exception(pqxx::broken_connection{"gone"});
  CHECK(broken.code == errc::unavailable);
  CHECK(broken.drop);
  auto in_doubt = classify_pg_exception(pqxx::in_doubt_error{"lost"});
  CHECK(in_doubt.code == errc::unavailable);
  CHECK(in_doubt.drop);
}

TEST_CASE("what PostgreSQL refuses in the request is the caller's error and "
          "keeps the connection",
          "[storage][pg_session]") {
  auto bad_date = classify_pg_exception(
    pqxx::data_exception{"date/time field value out of range", "", "22008"});
  CHECK(bad_date.code == errc::bad_request);
  CHECK_FALSE(bad_date.drop);
  auto duplicate = classify_pg_exception(
    pqxx::unique_violation{"duplicate key value", "", "23505"});
  CHECK(duplicate.code == errc::bad_request);
  CHECK_FALSE(duplicate.drop);
  auto gone = classify_pg_exception(
    pqxx::foreign_key_violation{"violates foreign key", "", "23503"});
  CHECK(gone.code == errc::not_found);
  CHECK_FALSE(gone.drop);
}

TEST_CASE("other server errors are unavailable and keep the connection; "
          "anything else drops it",
          "[storage][pg_session]") {
  auto timeout = classify_pg_exception(
    pqxx::sql_error{"canceling statement due to statement timeout", "",
                    "57014"});
  CHECK(timeout.code == errc::unavailable);
  CHECK_FALSE(timeout.drop);
  auto deadlock = classify_pg_exception(
    pqxx::deadlock_detected{"deadlock detected"});
  CHECK(deadlock.code == errc::unavailable);
  CHECK_FALSE(deadlock.drop);
  auto unknown = classify_pg_exception(
    pqxx::statement_completion_unknown{"lost during the statement"});
  CHECK(unknown.code == errc::unavailable);
  CHECK(unknown.drop);
  auto other = classify_pg_exception(std::runtime_error{"surprise"});
  CHECK(other.code == errc::unavailable);
  CHECK(other.drop);
}

TEST_CASE("a session whose server is away answers unavailable and stays "
          "closed",
          "[storage][pg_session]") {
  storage::pg_session session{
    {"postgresql://nobody@127.0.0.1:" + std::to_string(test::free_port())
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
