#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <pqxx/version>

// A forward declaration of pqxx::connection that works with libpqxx 6, where
// `connection` is an alias of a class template, and with libpqxx 7, where it
// is a class. (A plain `class connection;` does not compile against 6.)
namespace pqxx {
#if PQXX_VERSION_MAJOR < 7
class connect_direct;
template <typename Policy>
class basic_connection_base;
using connection = basic_connection_base<connect_direct>;
#else
class connection;
#endif
} // namespace pqxx

namespace gatehouse::storage {

/// Opens a connection to `url` (a libpq URL or key=value string) with
/// `application_name=gatehouse` and, when non-zero, a server-side
/// `statement_timeout` so that no query can block its thread forever.
/// Throws pqxx/std exceptions on failure.
std::unique_ptr<pqxx::connection> connect(
  const std::string& url, std::chrono::milliseconds statement_timeout);

/// connect(), tried again while PostgreSQL cannot be reached yet, as when
/// a container starts before its database: every failed attempt is logged
/// with the time left, one second apart, until `wait` has passed; then the
/// last failure is thrown. A wait of 0 makes one attempt. Only connection
/// failures are retried (pqxx::broken_connection, which includes refused,
/// unresolvable, starting up and refused credentials: all can be a
/// database that is still being set up).
std::unique_ptr<pqxx::connection> connect_waiting(
  const std::string& url, std::chrono::milliseconds statement_timeout,
  std::chrono::seconds wait);

/// A libpq/libpqxx error text on one line, without the "ERROR:  " prefix, for
/// error values and logs.
std::string one_line(const char* what);

} // namespace gatehouse::storage
