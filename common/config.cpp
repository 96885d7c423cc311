#include "common/config.hpp"

#include <cstdlib>
#include <limits>

namespace gatehouse {

namespace {

std::optional<std::string> env(const char* name) {
  if (const char* value = std::getenv(name); value && *value)
    return std::string{value};
  return std::nullopt;
}

long long to_integer(const char* name, const std::string& text, long long min,
                     long long max) {
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < min || value > max)
    throw config_error{std::string{name} + ": expected an integer from "
                       + std::to_string(min) + " to " + std::to_string(max)
                       + ", got \"" + text + "\""};
  return value;
}

} // namespace

const char* secret_file_variable(jwt::caller c) {
  switch (c) {
    case jwt::caller::shell:
      return "GATEHOUSE_SHELL_SECRET_FILE";
    case jwt::caller::workhorse:
      return "GATEHOUSE_WORKHORSE_SECRET_FILE";
    case jwt::caller::kas:
      return "GATEHOUSE_KAS_SECRET_FILE";
    case jwt::caller::pages:
      return "GATEHOUSE_PAGES_SECRET_FILE";
  }
  return "";
}

config config_from_env() {
  config cfg;
  if (auto v = env("GATEHOUSE_DATABASE_URL"))
    cfg.database_url = *v;
  if (auto v = env("GATEHOUSE_DATABASE_WAIT_SECONDS"))
    cfg.database_wait = std::chrono::seconds{
      to_integer("GATEHOUSE_DATABASE_WAIT_SECONDS", *v, 0, 24 * 3600)};
  if (auto v = env("GATEHOUSE_NATS_URL"))
    cfg.nats_url = *v;
  if (auto v = env("GATEHOUSE_NATS_CREDS_FILE"))
    cfg.nats_creds_file = *v;
  if (auto v = env("GATEHOUSE_NATS_NKEY_SEED_FILE"))
    cfg.nats_nkey_seed_file = *v;
  if (auto v = env("GATEHOUSE_HTTP_LISTEN")) {
    auto colon = v->rfind(':');
    if (colon == std::string::npos || colon == 0)
      throw config_error{"GATEHOUSE_HTTP_LISTEN: expected host:port, got \""
                         + *v + "\""};
    cfg.http_host = v->substr(0, colon);
    // "[::1]:8080" names an IPv6 address; httplib wants it bare.
    if (cfg.http_host.size() > 2 && cfg.http_host.front() == '['
        && cfg.http_host.back() == ']')
      cfg.http_host = cfg.http_host.substr(1, cfg.http_host.size() - 2);
    cfg.http_port = static_cast<int>(
      to_integer("GATEHOUSE_HTTP_LISTEN", v->substr(colon + 1), 0, 65535));
  }
  if (auto v = env("GATEHOUSE_HTTP_THREADS"))
    cfg.http_threads
      = static_cast<int>(to_integer("GATEHOUSE_HTTP_THREADS", *v, 1, 4096));
  if (auto v = env("GATEHOUSE_HTTP_MAX_BODY"))
    cfg.http_max_body = static_cast<std::size_t>(to_integer(
      "GATEHOUSE_HTTP_MAX_BODY", *v, 1, std::numeric_limits<int>::max()));
  if (auto v = env("GATEHOUSE_REQUEST_TIMEOUT_MS"))
    cfg.request_timeout = std::chrono::milliseconds{
      to_integer("GATEHOUSE_REQUEST_TIMEOUT_MS", *v, 1, 3600 * 1000)};
  if (auto v = env("GATEHOUSE_ZOEKT_LOST_NODE_SECONDS"))
    cfg.zoekt_lost_node_after = std::chrono::seconds{to_integer(
      "GATEHOUSE_ZOEKT_LOST_NODE_SECONDS", *v, 0, 365LL * 24 * 3600)};
  if (auto v = env("GATEHOUSE_ZOEKT_ASSIGN_INTERVAL_SECONDS"))
    cfg.zoekt_assign_interval = std::chrono::seconds{to_integer(
      "GATEHOUSE_ZOEKT_ASSIGN_INTERVAL_SECONDS", *v, 1, 24 * 3600)};
  if (auto v = env("GATEHOUSE_PUSH_SESSIONS"))
    cfg.push_sessions
      = static_cast<int>(to_integer("GATEHOUSE_PUSH_SESSIONS", *v, 1, 64));
  if (auto v = env("GATEHOUSE_UPLOADS_DIR")) {
    if (v->empty() || v->front() != '/')
      throw config_error{"GATEHOUSE_UPLOADS_DIR: expected an absolute path, "
                         "got \"" + *v + "\""};
    cfg.uploads_dir = *v;
    while (cfg.uploads_dir.size() > 1 && cfg.uploads_dir.back() == '/')
      cfg.uploads_dir.pop_back();
  }
  if (auto v = env("GATEHOUSE_RELATIVE_URL_ROOT")) {
    std::string root = *v;
    while (!root.empty() && root.back() == '/')
      root.pop_back();
    if (!root.empty() && root.front() != '/')
      root.insert(root.begin(), '/');
    cfg.relative_url_root = root;
  }
  if (auto v = env("GATEHOUSE_LOG_FORMAT")) {
    if (*v == "json")
      cfg.log = log_format::json;
    else if (*v == "text")
      cfg.log = log_format::text;
    else
      throw config_error{"GATEHOUSE_LOG_FORMAT: expected json or text, got \""
                         + *v + "\""};
  }
  if (auto v = env("GATEHOUSE_EVENTS_REPLICAS"))
    cfg.events_replicas
      = static_cast<int>(to_integer("GATEHOUSE_EVENTS_REPLICAS", *v, 1, 5));
  if (auto v = env("GATEHOUSE_WEBHOOK_BACKOFF_BASE"))
    cfg.webhook_backoff_base = std::chrono::milliseconds{
      to_integer("GATEHOUSE_WEBHOOK_BACKOFF_BASE", *v, 1, 86400) * 1000};
  if (auto v = env("GATEHOUSE_WEBHOOK_BACKOFF_BASE_MS"))
    cfg.webhook_backoff_base = std::chrono::milliseconds{
      to_integer("GATEHOUSE_WEBHOOK_BACKOFF_BASE_MS", *v, 1, 86400000)};
  if (auto v = env("GATEHOUSE_WEBHOOK_RETRIES"))
    cfg.webhook_retries
      = static_cast<int>(to_integer("GATEHOUSE_WEBHOOK_RETRIES", *v, 0, 10));
  if (auto v = env("GATEHOUSE_WEBHOOK_TIMEOUT_MS"))
    cfg.webhook_timeout = std::chrono::milliseconds{
      to_integer("GATEHOUSE_WEBHOOK_TIMEOUT_MS", *v, 1, 600000)};
  if (auto v = env("GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE")) {
    if (v->front() != '/')
      throw config_error{"GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE: expected an "
                         "absolute path, got \"" + *v + "\""};
    cfg.webhooks_heartbeat_file = *v;
  }
  for (auto c : {jwt::caller::shell, jwt::caller::workhorse, jwt::caller::kas,
                 jwt::caller::pages})
    cfg.secret_files[static_cast<std::size_t>(c)]
      = env(secret_file_variable(c));
  return cfg;
}

} // namespace gatehouse
