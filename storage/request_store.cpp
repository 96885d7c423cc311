#include "storage/request_store.hpp"

#include "common/base64.hpp"
#include "common/log.hpp"
#include "messages/errors.hpp"
#include "storage/pg_session.hpp"

#include <caf/all.hpp>

#include <pqxx/pqxx>

namespace gatehouse::storage {

namespace {

using self_pointer
  = request_store_actor::stateful_pointer<request_store_state>;

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return 0;
}

// bytea travels as hex text: libpqxx 6 passes parameters as text, and a
// Protobuf body may hold NUL bytes.
std::string hex_decode(const std::string& hex) {
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(hex_value(hex[i]) * 16 + hex_value(hex[i + 1]));
  return out;
}

/// Runs `fn` on the store's session; a failure is logged and yields
/// nullopt, since every caller proceeds without the store (see
/// request_store_actor).
template <class F>
auto try_run(pg_session& session, const char* what, F fn)
  -> std::optional<decltype(fn(std::declval<pqxx::connection&>()))> {
  auto result = session.run(what, fn);
  if (result)
    return std::move(*result);
  log::warn("request store: database error",
            {{"operation", what}, {"error", render(result.error())}});
  return std::nullopt;
}

} // namespace

request_store_actor::behavior_type
request_store(self_pointer self, request_store_settings settings) {
  self->state.settings = std::move(settings);
  // Captured by the handlers rather than kept in request_store_state, whose
  // header belongs to the interface being moved to messages/.
  auto session = std::make_shared<pg_session>(
    self->state.settings.database_url, self->state.settings.statement_timeout);
  self->delayed_send(self, self->state.settings.purge_interval,
                     atom::tick::value);
  return {
    [=](atom::reply_get, const std::string& request_id,
        const std::string& call) -> stored_reply {
      auto found = try_run(
        *session, "reply_get", [&](pqxx::connection& c) {
          pqxx::nontransaction tx{c};
          auto rows = tx.exec_params(
            "SELECT status, encode(response, 'hex') "
            "FROM gatehouse_state.requests "
            "WHERE request_id = $1 AND call = $2 AND response IS NOT NULL "
            "AND created_at > now() - make_interval(secs => $3)",
            request_id, call,
            static_cast<long>(self->state.settings.retention.count()));
          stored_reply out;
          if (!rows.empty()) {
            out.found = true;
            out.status = rows[0][0].as<std::int32_t>();
            out.body = hex_decode(rows[0][1].as<std::string>());
          }
          return out;
        });
      return found ? *found : stored_reply{};
    },
    [=](atom::reply_put, const std::string& request_id, const std::string& call,
        std::int32_t status, const std::string& body) {
      try_run(*session, "reply_put", [&](pqxx::connection& c) {
        pqxx::nontransaction tx{c};
        // The push store may have created the row (with its outcome) in the
        // transaction that applied the push; the first recorded reply wins.
        tx.exec_params(
          "INSERT INTO gatehouse_state.requests "
          "(request_id, call, status, response) "
          "VALUES ($1, $2, $3, decode($4, 'hex')) "
          "ON CONFLICT (request_id, call) DO UPDATE "
          "SET status = EXCLUDED.status, response = EXCLUDED.response "
          "WHERE gatehouse_state.requests.response IS NULL",
          request_id, call, status, hex_encode(body));
        return true;
      });
    },
    [=](atom::tick) {
      try_run(*session, "purge", [&](pqxx::connection& c) {
        pqxx::nontransaction tx{c};
        tx.exec_params("DELETE FROM gatehouse_state.requests "
                       "WHERE created_at < now() - make_interval(secs => $1)",
                       static_cast<long>(
                         self->state.settings.retention.count()));
        return true;
      });
      self->delayed_send(self, self->state.settings.purge_interval,
                         atom::tick::value);
    },
  };
}

} // namespace gatehouse::storage
