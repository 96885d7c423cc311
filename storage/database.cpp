#include "storage/database.hpp"

#include "common/log.hpp"

#include <pqxx/pqxx>

#include <thread>

namespace gatehouse::storage {

namespace {

bool is_url(const std::string& conninfo) {
  return conninfo.rfind("postgresql://", 0) == 0
    || conninfo.rfind("postgres://", 0) == 0;
}

/// Appends one parameter to a libpq URL or key=value string. `url_value` is
/// the percent-encoded form, `kv_value` the quoted key=value form.
std::string add_parameter(const std::string& conninfo, const std::string& key,
                          const std::string& url_value,
                          const std::string& kv_value) {
  if (is_url(conninfo)) {
    auto base = conninfo.substr(0, conninfo.find('#'));
    base += base.find('?') == std::string::npos ? '?' : '&';
    return base + key + '=' + url_value;
  }
  auto pair = key + '=' + kv_value;
  return conninfo.empty() ? pair : conninfo + ' ' + pair;
}

} // namespace

std::unique_ptr<pqxx::connection> connect(
  const std::string& url, std::chrono::milliseconds statement_timeout) {
  // Parameters go into the connection string rather than a later SET where
  // possible: they then hold from the first moment and survive libpqxx 6's
  // automatic reconnection. A caller's own values win.
  auto conninfo = url;
  if (conninfo.find("application_name") == std::string::npos)
    conninfo
      = add_parameter(conninfo, "application_name", "gatehouse", "gatehouse");
  // libpq waits forever for an unreachable host without connect_timeout;
  // every actor that connects must stay responsive.
  if (conninfo.find("connect_timeout") == std::string::npos)
    conninfo = add_parameter(conninfo, "connect_timeout", "5", "5");
  const auto timeout = std::to_string(statement_timeout.count());
  bool timeout_in_conninfo = false;
  if (statement_timeout.count() > 0
      && conninfo.find("options") == std::string::npos) {
    conninfo = add_parameter(conninfo, "options",
                             "-c%20statement_timeout%3D" + timeout,
                             "'-c statement_timeout=" + timeout + "'");
    timeout_in_conninfo = true;
  }
  auto conn = std::make_unique<pqxx::connection>(conninfo);
  if (statement_timeout.count() > 0 && !timeout_in_conninfo) {
    pqxx::nontransaction tx{*conn};
    tx.exec("SET statement_timeout = " + timeout);
  }
  return conn;
}

std::unique_ptr<pqxx::connection> connect_waiting(
  const std::string& url, std::chrono::milliseconds statement_timeout,
  std::chrono::seconds wait) {
  using clock = std::chrono::steady_clock;
  constexpr std::chrono::seconds pause{1};
  const auto deadline = clock::now() + wait;
  for (int attempt = 1;; ++attempt) {
    try {
      auto conn = connect(url, statement_timeout);
      if (attempt > 1)
        log::info("postgresql reachable", {{"attempts", attempt}});
      return conn;
    } catch (const pqxx::broken_connection& e) {
      auto now = clock::now();
      if (now >= deadline) {
        log::error("postgresql not reachable; giving up",
                   {{"attempts", attempt},
                    {"waited_s", wait.count()},
                    {"error", one_line(e.what())}});
        throw;
      }
      auto left = deadline - now;
      log::warn("waiting for postgresql",
                {{"attempt", attempt},
                 {"seconds_left",
                  std::chrono::ceil<std::chrono::seconds>(left).count()},
                 {"error", one_line(e.what())}});
      // The last attempt falls on the deadline itself.
      std::this_thread::sleep_for(std::min<clock::duration>(pause, left));
    }
  }
}

std::string one_line(const char* what) {
  std::string text = what;
  if (text.rfind("ERROR:", 0) == 0) {
    text.erase(0, 6);
    text.erase(0, text.find_first_not_of(' '));
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  for (auto& c : text)
    if (c == '\n')
      c = ' ';
  return text;
}

} // namespace gatehouse::storage
