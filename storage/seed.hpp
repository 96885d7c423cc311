#pragma once

#include "storage/database.hpp" // pqxx::connection

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace gatehouse::storage {

/// How `gatehouse seed` applies a document.
struct seed_options {
  /// Also delete objects of the kinds present in the document that it no
  /// longer lists (how an operator revokes a key or a membership).
  bool prune = false;
};

/// The outcome of loading a seed document.
struct seed_report {
  /// Every validation problem as "<json path>: <message>", e.g.
  /// "projects[3].namespace_id: no namespace with id 9". Empty on success.
  std::vector<std::string> problems;
  /// Objects upserted per kind ("users" -> 3); filled on success.
  std::map<std::string, std::int64_t> upserted;
  /// Objects deleted per kind by --prune; filled on success.
  std::map<std::string, std::int64_t> pruned;
  bool ok() const {
    return problems.empty();
  }
};

/// Checks `doc` against the seed format (shared/seed-format.md) without a
/// database: types, required fields, enums, unknown keys, duplicate ids,
/// references inside the document. Returns problems as in seed_report.
std::vector<std::string> validate_seed(const nlohmann::json& doc);

/// Answers which of `keys` (ids in decimal; names for "storages") already
/// exist outside the document. `kind` is "users", "namespaces", "projects"
/// or "storages".
using seed_lookup = std::function<std::set<std::string>(
  const std::string& kind, const std::set<std::string>& keys)>;

/// As above, but a reference that the document does not resolve may name an
/// object that `existing` reports (apply_seed passes a database lookup).
std::vector<std::string> validate_seed(const nlohmann::json& doc,
                                       const seed_lookup& existing);

/// Validates, then upserts everything in one transaction. References may
/// point at objects already in the database (a file may add a member to a
/// project seeded earlier). On any problem nothing is changed.
seed_report apply_seed(pqxx::connection& conn, const nlohmann::json& doc,
                       const seed_options& opts);

} // namespace gatehouse::storage
