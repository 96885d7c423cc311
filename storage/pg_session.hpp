#pragma once

// One PostgreSQL session of a storage actor or thread: opened lazily, with a
// server-side statement_timeout, optionally LISTENing on a channel, dropped
// after a broken connection so that the next call reconnects (PostgreSQL may
// restart under a running Gatehouse), and the one place where libpqxx
// exceptions become gatehouse::errc values.

#include "messages/errors.hpp"
#include "storage/database.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace gatehouse::storage {

/// Where and how a session connects.
struct pg_session_settings {
  /// libpq connection URL.
  std::string database_url;
  /// Server-side statement_timeout of every query; 0 for none.
  std::chrono::milliseconds statement_timeout{5000};
  /// When not empty, the session LISTENs on this channel from each connect
  /// on, before anything else runs on the connection.
  std::string listen_channel;
};

/// How a libpqxx (or other) exception thrown by a database call is answered.
struct pg_failure {
  /// What the caller is told.
  errc code = errc::unavailable;
  /// Whether the connection must be dropped (the next call reconnects).
  bool drop = true;
};

/// The one mapping of database exceptions to errc:
/// - a broken connection, or a commit or statement whose outcome is
///   unknown: unavailable, and the connection is dropped;
/// - a foreign key violation (the referenced row went away under the
///   request): not_found;
/// - any other constraint violation, or a value PostgreSQL refuses (an
///   impossible date, a malformed UUID): bad_request;
/// - any other server error (a statement timeout, a serialisation
///   failure, a deadlock): unavailable;
/// - anything else (a bug, an unexpected library failure): unavailable, and
///   the connection is dropped since its state is unknown.
/// Server errors leave the connection usable; it is kept unless libpq
/// noticed that it closed.
pg_failure classify_pg_exception(const std::exception& e);

/// The text of an error a session returned (libpq's message on one line),
/// without its code; render(err) for anything else.
std::string pg_error_text(const caf::error& err);

/// A session. Not thread-safe: owned by one detached actor or one thread.
class pg_session {
public:
  /// Called with each notification's payload, from inside a call on the
  /// session (libpqxx delivers notifications while it reads the socket).
  using notification_handler = std::function<void(const std::string&)>;

  /// An unusable session; assign a configured one before use.
  pg_session();

  explicit pg_session(pg_session_settings settings,
                      notification_handler on_notify = {});

  /// A session that LISTENs on nothing.
  pg_session(std::string database_url,
             std::chrono::milliseconds statement_timeout);

  ~pg_session();

  pg_session(pg_session&&) noexcept;
  pg_session& operator=(pg_session&&) noexcept;

  /// Runs `fn(pqxx::connection&)` on the session, connecting first when
  /// needed. Returns what `fn` returns (a `caf::expected<T>` from `fn` is
  /// passed through), or the error of classify_pg_exception; a commit with
  /// an unknown outcome is also logged, naming `what`.
  template <class F>
  auto run(const char* what, F&& fn);

  /// Connects (and LISTENs) unless connected.
  caf::error open();

  /// Whether the session holds an open connection.
  bool connected() const;

  /// Closes the connection (releasing every session-level lock it held);
  /// the next call reconnects.
  void close();

  /// Delivers the notifications that have arrived, without blocking.
  caf::error check_notifications();

  /// Waits until a notification arrives, `wake_fd` (when >= 0) becomes
  /// readable, or `limit` passes, then delivers what arrived. Does not read
  /// `wake_fd`.
  caf::error wait_for_notification(std::chrono::milliseconds limit,
                                   int wake_fd = -1);

private:
  struct impl;

  caf::error run_erased(const char* what,
                        const std::function<void(pqxx::connection&)>& fn);

  std::unique_ptr<impl> impl_;
};

namespace detail {

template <class T>
struct pg_expected {
  using type = caf::expected<T>;
};

template <class T>
struct pg_expected<caf::expected<T>> {
  using type = caf::expected<T>;
};

} // namespace detail

template <class F>
auto pg_session::run(const char* what, F&& fn) {
  using result = std::invoke_result_t<F&, pqxx::connection&>;
  using answer = typename detail::pg_expected<result>::type;
  std::optional<result> out;
  auto err = run_erased(what, [&](pqxx::connection& c) { out.emplace(fn(c)); });
  if (err)
    return answer{std::move(err)};
  return answer{std::move(*out)};
}

} // namespace gatehouse::storage
