#pragma once

#include "storage/database.hpp" // pqxx::connection

#include <string>
#include <utility>
#include <vector>

namespace gatehouse::storage {

/// One embedded migration: its file name ("001_core.sql") and SQL text.
struct migration {
  std::string name;
  std::string sql;
};

/// The migrations compiled from storage/schema/NNN_*.sql, in name order.
const std::vector<migration>& embedded_migrations();

/// What `migrate` did.
struct migration_report {
  std::vector<std::string> applied; // applied now, in order
  std::vector<std::string> skipped; // recorded as applied before
};

/// Applies every migration not yet recorded in `schema_migrations`, each in
/// its own transaction, under a transaction-level advisory lock so that two
/// replicas starting at once apply each file exactly once. Idempotent.
/// Throws std::runtime_error naming the failing file.
migration_report migrate(pqxx::connection& conn,
                         const std::vector<migration>& migrations
                         = embedded_migrations());

} // namespace gatehouse::storage
