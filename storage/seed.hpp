#pragma once

#include "storage/database.hpp" // pqxx::connection

#include <cstdint>
#include <functional>
#include <iosfwd>
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

/// Answers which of `keys` (ids in decimal; names for "storages") already
/// exist outside the document. `kind` is "users", "namespaces", "projects"
/// or "storages".
using seed_lookup = std::function<std::set<std::string>(
  const std::string& kind, const std::set<std::string>& keys)>;

/// Checks the document read from `in` against the seed format
/// (shared/seed-format.md) without a database: JSON, types, required
/// fields, enums, unknown keys, duplicate ids, references. Problems come
/// as in seed_report, in the order of the document. A reference that the
/// document does not resolve may name an object that `existing` reports
/// (apply_seed passes a database lookup).
///
/// The document is read while it is parsed, one element of a top-level
/// array at a time: memory holds the rows, never the text or its tree, so
/// a document of any size can be checked.
std::vector<std::string> validate_seed(std::istream& in,
                                       const seed_lookup& existing = {});

/// Validates the document read from `in`, then upserts everything in one
/// transaction. References may point at objects already in the database
/// (a file may add a member to a project seeded earlier). On any problem
/// nothing is changed.
seed_report apply_seed(pqxx::connection& conn, std::istream& in,
                       const seed_options& opts);

} // namespace gatehouse::storage
