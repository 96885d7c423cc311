#include "storage/migrate.hpp"

#include "common/base64.hpp"

#include "storage/database.hpp"

#include <pqxx/pqxx>

#include <stdexcept>

namespace gatehouse::storage {

namespace {

/// The key of the transaction-level advisory lock that serialises migration
/// runs across processes ("gh-migr" in ASCII). Any fixed value works as long
/// as nothing else in the database uses it.
constexpr long long migration_lock_key = 0x67682d6d69677200LL;

void take_lock(pqxx::work& tx) {
  tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(migration_lock_key)
          + ")");
}

/// Creates the LFS token signing key (32 bytes from OpenSSL's RAND_bytes)
/// once; every replica then reads the same one. Skipped when the schema has
/// no signing_keys table (a custom migration list, as in tests).
void ensure_signing_keys(pqxx::connection& conn) {
  try {
    pqxx::work tx{conn, "signing_keys"};
    take_lock(tx);
    auto table = tx.exec(
      "SELECT to_regclass('gatehouse_state.signing_keys') IS NOT NULL");
    if (!table[0][0].as<bool>())
      return;
    tx.exec_params("INSERT INTO gatehouse_state.signing_keys (name, secret) "
                   "VALUES ('lfs', decode($1, 'hex')) ON CONFLICT DO NOTHING",
                   hex_encode(random_bytes(32)));
    tx.commit();
  } catch (const std::exception& e) {
    throw std::runtime_error("creating the signing keys failed: "
                             + one_line(e.what()));
  }
}

} // namespace

migration_report migrate(pqxx::connection& conn,
                         const std::vector<migration>& migrations) {
  try {
    // Under the lock too: two concurrent CREATE TABLE IF NOT EXISTS of the
    // same table can still collide in the catalog.
    pqxx::work tx{conn, "create_schema_migrations"};
    take_lock(tx);
    tx.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())");
    tx.commit();
  } catch (const std::exception& e) {
    throw std::runtime_error("creating schema_migrations failed: "
                             + one_line(e.what()));
  }
  migration_report report;
  for (const auto& m : migrations) {
    try {
      pqxx::work tx{conn, "migrate"};
      take_lock(tx);
      auto done = tx.exec_params(
        "SELECT 1 FROM schema_migrations WHERE name = $1", m.name);
      if (!done.empty()) {
        report.skipped.push_back(m.name);
        continue; // the transaction ends without changes
      }
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO schema_migrations (name) VALUES ($1)",
                     m.name);
      tx.commit();
      report.applied.push_back(m.name);
    } catch (const std::exception& e) {
      throw std::runtime_error("migration " + m.name
                               + " failed: " + one_line(e.what()));
    }
  }
  ensure_signing_keys(conn);
  return report;
}

} // namespace gatehouse::storage
