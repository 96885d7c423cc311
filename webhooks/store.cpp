#include "webhooks/store.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

namespace gatehouse::webhooks {

namespace {

constexpr auto statement_timeout = std::chrono::seconds(30);

#define GH_EPOCH_MS(x) "(extract(epoch FROM " x ") * 1000)::bigint"

hook_state state_from(const pqxx::row& r, int first) {
  hook_state s;
  s.recent_failures = r[first].as<int>();
  s.backoff_count = r[first + 1].as<int>();
  if (!r[first + 2].is_null())
    s.disabled_until_ms = r[first + 2].as<std::int64_t>();
  s.permanently_disabled = r[first + 3].as<bool>();
  return s;
}

} // namespace

const char* to_string(outcome_kind kind) {
  switch (kind) {
    case outcome_kind::delivered:
      return "delivered";
    case outcome_kind::failed:
      return "failed";
    case outcome_kind::skipped_disabled:
      return "skipped_disabled";
    case outcome_kind::skipped_bulk:
      return "skipped_bulk";
    case outcome_kind::skipped_not_subscribed:
      return "skipped_not_subscribed";
  }
  return "failed";
}

store::store(std::string database_url) : url_(std::move(database_url)) {}

store::~store() = default;

pqxx::connection& store::conn() {
  if (!conn_)
    conn_ = storage::connect(url_, statement_timeout);
  return *conn_;
}

void store::probe() {
  pqxx::read_transaction tx{conn(), "webhook_probe"};
  tx.exec("SELECT 1 FROM gatehouse_state.webhook_deliveries LIMIT 0");
}

void store::disconnect() {
  conn_.reset();
}

event_context store::load(std::int64_t project_id,
                          const std::string& event_id) {
  event_context ctx;
  pqxx::read_transaction tx{conn(), "webhook_event"};
  auto settings = tx.exec(
    "SELECT key, value::text FROM settings WHERE key IN "
    "('allow_local_requests_from_web_hooks_and_services', 'external_url', "
    "'gitlab_version')");
  for (const auto& row : settings) {
    auto key = row[0].as<std::string>();
    auto value
      = nlohmann::json::parse(row[1].as<std::string>(), nullptr, false);
    if (key == "allow_local_requests_from_web_hooks_and_services")
      ctx.settings.allow_local_requests
        = value.is_boolean() && value.get<bool>();
    else if (key == "external_url" && value.is_string())
      ctx.settings.external_url = value.get<std::string>();
    else if (key == "gitlab_version" && value.is_string())
      ctx.settings.gitlab_version = value.get<std::string>();
  }
  auto hooks = tx.exec_params(
    "SELECT w.id, w.url, w.token, w.push_events, w.tag_push_events,"
    " COALESCE(s.recent_failures, 0), COALESCE(s.backoff_count, 0),"
    " " GH_EPOCH_MS(
      "s.disabled_until") ","
                          " COALESCE(s.permanently_disabled, false),"
                          " EXISTS (SELECT 1 FROM "
                          "gatehouse_state.webhook_deliveries d"
                          "         WHERE d.event_id = $2::uuid AND d.hook_id "
                          "= w.id)"
                          " FROM webhooks w"
                          " LEFT JOIN gatehouse_state.webhook_states s ON "
                          "s.hook_id = w.id"
                          " WHERE w.project_id = $1 AND w.enabled ORDER BY "
                          "w.id",
    project_id, event_id);
  for (const auto& row : hooks) {
    hook_row h;
    h.target.id = row[0].as<std::int64_t>();
    h.target.url = row[1].as<std::string>();
    h.target.token = row[2].as<std::string>();
    h.push_events = row[3].as<bool>();
    h.tag_push_events = row[4].as<bool>();
    h.state = state_from(row, 5);
    h.recorded = row[9].as<bool>();
    ctx.hooks.push_back(std::move(h));
  }
  ctx.now_ms = tx.exec1("SELECT " GH_EPOCH_MS("clock_timestamp()"))[0]
                 .as<std::int64_t>();
  tx.commit();
  return ctx;
}

std::optional<hook_state> store::record(
  const std::string& event_id, std::int64_t hook_id, const outcome& result,
  std::chrono::milliseconds backoff_base) {
  bool changes_state = result.kind == outcome_kind::delivered
    || result.kind == outcome_kind::failed;
  try {
    pqxx::work tx{conn(), "webhook_outcome"};
    std::optional<hook_state> before;
    std::int64_t now_ms = 0;
    if (changes_state) {
      tx.exec_params("INSERT INTO gatehouse_state.webhook_states (hook_id)"
                     " VALUES ($1) ON CONFLICT DO NOTHING",
                     hook_id);
      auto row
        = tx.exec_params1("SELECT recent_failures, backoff_count, " GH_EPOCH_MS(
                            "disabled_until") ", "
                                              "permanently_disabled,"
                                              " " GH_EPOCH_MS("clock_timestamp("
                                                              ")") " FROM "
                                                                   "gatehouse_"
                                                                   "state."
                                                                   "webhook_"
                                                                   "states "
                                                                   "WHERE "
                                                                   "hook_id = "
                                                                   "$1 FOR "
                                                                   "UPDATE",
                          hook_id);
      before = state_from(row, 0);
      now_ms = row[4].as<std::int64_t>();
    }
    auto inserted = tx.exec_params(
      "INSERT INTO gatehouse_state.webhook_deliveries"
      " (event_id, hook_id, outcome, status, attempts, error)"
      " VALUES ($1::uuid, $2, $3, NULLIF($4, 0), $5, NULLIF($6, ''))"
      " ON CONFLICT (event_id, hook_id) DO NOTHING RETURNING 1",
      event_id, hook_id, to_string(result.kind), result.status, result.attempts,
      result.error);
    if (inserted.empty()) {
      tx.abort();
      return std::nullopt;
    }
    hook_state after;
    if (changes_state) {
      after = result.kind == outcome_kind::delivered
        ? after_success(*before)
        : after_failure(*before, now_ms, backoff_base);
      tx.exec_params(
        "UPDATE gatehouse_state.webhook_states SET recent_failures = $2,"
        " backoff_count = $3,"
        " disabled_until = CASE WHEN $4::bigint < 0 THEN NULL"
        "   ELSE to_timestamp($4::bigint / 1000.0) END,"
        " permanently_disabled = $5, updated_at = now()"
        " WHERE hook_id = $1",
        hook_id, after.recent_failures, after.backoff_count,
        after.disabled_until_ms.value_or(-1), after.permanently_disabled);
    } else {
      auto row
        = tx.exec_params("SELECT recent_failures, backoff_count, " GH_EPOCH_MS(
                           "disabled_until") ", permanently_disabled FROM "
                                             "gatehouse_state.webhook_states"
                                             " WHERE hook_id = $1",
                         hook_id);
      if (!row.empty())
        after = state_from(row[0], 0);
    }
    tx.commit();
    return after;
  } catch (const pqxx::foreign_key_violation&) {
    // The hook was deleted while its delivery ran: nothing to record.
    return std::nullopt;
  }
}

} // namespace gatehouse::webhooks
