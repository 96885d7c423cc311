#include "storage/store.hpp"

#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <pqxx/pqxx>

namespace gatehouse::storage {

store_actor::behavior_type store(
  store_actor::stateful_pointer<store_state> self, store_settings settings) {
  self->state.settings = std::move(settings);
  self->state.session = pg_session{self->state.settings.database_url,
                                   self->state.settings.statement_timeout};
  return {
    [=](atom::probe) -> caf::result<store_probe> {
      auto result = self->state.session.run("probe", [](pqxx::connection& c) {
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
