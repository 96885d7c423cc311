#include "storage/request_store.hpp"

#include "common/base64.hpp"
#include "common/log.hpp"
#include "messages/errors.hpp"
#include "storage/pg_session.hpp"

#include <caf/all.hpp>

#include <pqxx/pqxx>

namespace gatehouse::storage {

namespace {

using self_pointer = request_store_actor::stateful_pointer<request_store_state>;

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

request_store_actor::behavior_type request_store(
  self_pointer self, request_store_settings settings) {
  self->state.settings = std::move(settings);
  self->state.session = pg_session{self->state.settings.database_url,
                                   self->state.settings.statement_timeout};
  self->delayed_send(self, self->state.settings.purge_interval,
                     atom::tick::value);
  return {
    [=](atom::reply_get, const std::string& request_id,
        const std::string& call) -> stored_reply {
      auto found
        = try_run(self->state.session, "reply_get", [&](pqxx::connection& c) {
            pqxx::nontransaction tx{c};
            auto rows = tx.exec_params(
              "SELECT status, response "
              "FROM gatehouse_state.requests "
              "WHERE request_id = $1 AND call = $2 AND response IS NOT NULL "
              "AND created_at > now() - make_interval(secs => $3)",
              request_id, call,
              static_cast<long>(self->state.settings.retention.count()));
            stored_reply out;
            if (!rows.empty()) {
              out.found = true;
              out.status = rows[0][0].as<std::int32_t>();
              // bytea read as bytes: a Protobuf body may hold NUL bytes.
              out.body = pqxx::binarystring{rows[0][1]}.str();
            }
            return out;
          });
      return found ? *found : stored_reply{};
    },
    [=](atom::reply_put, const std::string& request_id, const std::string& call,
        std::int32_t status, const std::string& body) {
      try_run(self->state.session, "reply_put", [&](pqxx::connection& c) {
        pqxx::nontransaction tx{c};
        // The push store may have created the row (with its outcome) in the
        // transaction that applied the push; the first recorded reply wins.
        // libpqxx 6 passes parameters as text, so the body travels as hex.
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
      try_run(self->state.session, "purge", [&](pqxx::connection& c) {
        pqxx::nontransaction tx{c};
        tx.exec_params(
          "DELETE FROM gatehouse_state.requests "
          "WHERE created_at < now() - make_interval(secs => $1)",
          static_cast<long>(self->state.settings.retention.count()));
        return true;
      });
      self->delayed_send(self, self->state.settings.purge_interval,
                         atom::tick::value);
    },
  };
}

} // namespace gatehouse::storage
