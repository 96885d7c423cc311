#pragma once

// Writing a validated seed document to PostgreSQL: upserts that leave equal
// rows alone, --prune deletions, and the NOTIFY that tells read models
// which kinds changed.

#include "storage/seed.hpp"
#include "storage/seed/parsed_seed.hpp"

#include <pqxx/pqxx>

#include <exception>
#include <string>

namespace gatehouse::storage::seeding {

/// Writes `seed` in `tx` (constraints deferred to the end): prunes when
/// `opts` says so, upserts every kind, then queues the change notification.
/// Counts go to `report`; a problem only the database can see (a
/// namespace loop through rows outside the document) goes to
/// report.problems, and then the counts are cleared and the caller must
/// not commit.
void write_seed(pqxx::work& tx, const parsed_seed& seed,
                const seed_options& opts, seed_report& report);

/// The text of a database error without libpq's decoration.
std::string db_message(const std::exception& e);

} // namespace gatehouse::storage::seeding
