#include "storage/pg_session.hpp"

#include "common/log.hpp"

#include <caf/error.hpp>

#include <pqxx/pqxx>

#include <algorithm>

#include <poll.h>

namespace gatehouse::storage {

pg_failure classify_pg_exception(const std::exception& e) {
  // Most specific first: in_doubt_error and foreign_key_violation derive
  // from broader libpqxx classes that map differently.
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e)
      || dynamic_cast<const pqxx::statement_completion_unknown*>(&e)
      || dynamic_cast<const pqxx::broken_connection*>(&e))
    return {errc::unavailable, true};
  if (dynamic_cast<const pqxx::foreign_key_violation*>(&e))
    return {errc::not_found, false};
  if (dynamic_cast<const pqxx::integrity_constraint_violation*>(&e)
      || dynamic_cast<const pqxx::data_exception*>(&e))
    return {errc::bad_request, false};
  if (dynamic_cast<const pqxx::sql_error*>(&e)
      || dynamic_cast<const pqxx::transaction_rollback*>(&e))
    return {errc::unavailable, false};
  return {errc::unavailable, true};
}

std::string pg_error_text(const caf::error& err) {
  const auto& context = err.context();
  if (context.match_elements<std::string>())
    return context.get_as<std::string>(0);
  return render(err);
}

namespace {

/// Hands each notification on the session's channel to the handler.
class forwarding_receiver : public pqxx::notification_receiver {
public:
  forwarding_receiver(pqxx::connection& conn, const std::string& channel,
                      const pg_session::notification_handler& handler)
    : pqxx::notification_receiver(conn, channel), handler_(handler) {
    // nop
  }

  void operator()(const std::string& payload, int) override {
    if (handler_)
      handler_(payload);
  }

private:
  const pg_session::notification_handler& handler_;
};

} // namespace

struct pg_session::impl {
  pg_session_settings settings;
  notification_handler on_notify;
  std::unique_ptr<pqxx::connection> conn;
  std::unique_ptr<forwarding_receiver> receiver;

  ~impl() {
    close();
  }

  void connect() {
    if (conn && conn->is_open())
      return;
    close();
    conn = storage::connect(settings.database_url, settings.statement_timeout);
    if (settings.listen_channel.empty())
      return;
    receiver = std::make_unique<forwarding_receiver>(
      *conn, settings.listen_channel, on_notify);
    // libpqxx 6 swallows a LISTEN that fails on a broken connection.
    if (!conn->is_open())
      throw pqxx::broken_connection{"connection lost while subscribing to "
                                    + settings.listen_channel};
  }

  void close() {
    // Closing first makes the receiver's destructor skip its UNLISTEN: on a
    // broken connection, libpqxx 6 would reconnect just to send it.
    if (conn)
      conn->disconnect();
    receiver.reset();
    conn.reset();
  }

  /// libpqxx 6 reports no error from get_notifs() on a closed connection.
  void require_open() {
    if (!conn || !conn->is_open())
      throw pqxx::broken_connection{"connection to PostgreSQL lost"};
  }
};

pg_session::pg_session() : impl_(std::make_unique<impl>()) {
  // nop
}

pg_session::pg_session(pg_session_settings settings,
                       notification_handler on_notify)
  : impl_(std::make_unique<impl>()) {
  impl_->settings = std::move(settings);
  impl_->on_notify = std::move(on_notify);
}

pg_session::pg_session(std::string database_url,
                       std::chrono::milliseconds statement_timeout)
  : pg_session(pg_session_settings{std::move(database_url), statement_timeout,
                                   std::string{}}) {
  // nop
}

pg_session::~pg_session() = default;

pg_session::pg_session(pg_session&&) noexcept = default;

pg_session& pg_session::operator=(pg_session&&) noexcept = default;

caf::error pg_session::run_erased(
  const char* what, const std::function<void(pqxx::connection&)>& fn) {
  try {
    impl_->connect();
    fn(*impl_->conn);
    return caf::none;
  } catch (const std::exception& e) {
    auto failure = classify_pg_exception(e);
    auto text = one_line(e.what());
    if (dynamic_cast<const pqxx::in_doubt_error*>(&e))
      // The caller must not claim success, and an operator may have to look.
      log::error("database commit outcome unknown",
                 {{"operation", what}, {"error", text}});
    if (failure.drop || !impl_->conn || !impl_->conn->is_open())
      impl_->close();
    return caf::make_error(failure.code, std::move(text));
  }
}

caf::error pg_session::open() {
  return run_erased("connect", [](pqxx::connection&) {});
}

bool pg_session::connected() const {
  return impl_->conn && impl_->conn->is_open();
}

void pg_session::close() {
  impl_->close();
}

caf::error pg_session::check_notifications() {
  return run_erased("notifications", [this](pqxx::connection& c) {
    impl_->require_open();
    c.get_notifs();
    impl_->require_open();
  });
}

caf::error pg_session::wait_for_notification(std::chrono::milliseconds limit,
                                             int wake_fd) {
  return run_erased("wait", [&](pqxx::connection& c) {
    impl_->require_open();
    // Notifications that arrived during the last queries are already in
    // libpq's buffer, where poll() cannot see them.
    if (c.get_notifs() > 0)
      return;
    impl_->require_open();
    pollfd fds[2] = {{c.sock(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
    auto n = ::poll(fds, wake_fd >= 0 ? 2 : 1,
                    static_cast<int>(std::max<long>(0, limit.count())));
    if (n > 0 && fds[0].revents != 0) {
      c.get_notifs();
      impl_->require_open();
    }
  });
}

} // namespace gatehouse::storage
