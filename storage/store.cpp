#include "storage/store.hpp"

#include "messages/errors.hpp"
#include "storage/database.hpp"

#include <caf/all.hpp>

#include <pqxx/pqxx>

namespace gatehouse::storage {

namespace {

// Runs `fn` on the actor's connection, opening it first when needed, and turns
// libpqxx exceptions into errors: the one place they are caught.
template <class F>
auto with_connection(store_state& st, F fn) -> caf::expected<decltype(fn(
  std::declval<pqxx::connection&>()))> {
  try {
    if (!st.conn || !st.conn->is_open())
      st.conn = connect(st.settings.database_url, st.settings.statement_timeout);
    return fn(*st.conn);
  } catch (const pqxx::broken_connection& e) {
    st.conn.reset();
    return caf::make_error(errc::unavailable, std::string{e.what()});
  } catch (const std::exception& e) {
    // A statement timeout or a failed query leaves the connection usable, but
    // dropping it is the simple safe choice for a rare path.
    st.conn.reset();
    return caf::make_error(errc::unavailable, std::string{e.what()});
  }
}

} // namespace

store_actor::behavior_type
store(store_actor::stateful_pointer<store_state> self, store_settings settings) {
  self->state.settings = std::move(settings);
  return {
    [=](atom::probe) -> caf::result<store_probe> {
      auto result = with_connection(self->state, [](pqxx::connection& c) {
        pqxx::nontransaction tx{c};
        auto rows = tx.exec(
          "SELECT value #>> '{}' FROM settings WHERE key = 'gitlab_version'");
        store_probe out;
        if (!rows.empty() && !rows[0][0].is_null())
          out.gitlab_version = rows[0][0].c_str();
        return out;
      });
      if (!result)
        return std::move(result.error());
      return std::move(*result);
    },
  };
}

} // namespace gatehouse::storage
