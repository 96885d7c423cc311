#pragma once

// The outbox in PostgreSQL (gatehouse_state.outbox): its constants, shared
// with the push store that fills it in the post_receive transaction
// (storage/push_store.hpp), and the relay's side of it (messages/outbox.hpp):
// one session of its own, LISTENing for commits, with a session-level
// advisory lock per project that makes sure only one relay (one replica)
// publishes a project at a time.

#include "messages/outbox.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace gatehouse::storage {

/// The channel post_receive NOTIFYs (payload: the project id) after
/// inserting events.
inline constexpr const char* outbox_channel = "gatehouse_outbox";

/// The first key of the transaction-level advisory lock that serialises
/// outbox inserts per project (the second is the project id folded into 32
/// bits), so that seq order is commit order within a project.
inline constexpr int outbox_insert_lock_class = 0x67686f69; // "ghoi"

/// The first key of the relays' session-level advisory lock per project (the
/// second is the project id folded into 32 bits, as for the inserts). Two
/// projects that share a key merely share a lock.
inline constexpr int outbox_relay_lock_class = 0x67686f72; // "ghor"

/// Settings of the relay's outbox session, fixed at construction.
struct outbox_store_settings {
  /// libpq connection URL; the store opens a connection of its own.
  std::string database_url;
  /// Server-side statement_timeout of its queries.
  std::chrono::milliseconds statement_timeout{10000};
  /// Published rows older than this are deleted (0: never).
  std::chrono::hours retention{24};
};

/// The outbox port on PostgreSQL. Blocks on libpqxx: use it from a thread
/// of its own (the relay's), never from a CAF scheduler thread.
class outbox_store final : public outbox_port {
public:
  explicit outbox_store(outbox_store_settings settings);
  ~outbox_store() override;

  outbox_store(const outbox_store&) = delete;
  outbox_store& operator=(const outbox_store&) = delete;

  caf::error open() override;
  bool connected() const override;
  void close() override;
  caf::error wait_for_work(std::chrono::milliseconds limit) override;
  void interrupt() override;

  caf::expected<std::vector<std::int64_t>> lock_projects(
    int max_projects, const std::vector<std::int64_t>& skip) override;
  caf::expected<std::vector<outbox_row>> unpublished(
    const std::vector<std::int64_t>& projects, int per_project) override;
  caf::error mark_published(const std::vector<std::int64_t>& seqs) override;
  caf::error record_failure(std::int64_t seq,
                            const std::string& error) override;
  caf::error record_head_failures(const std::vector<std::int64_t>& projects,
                                  const std::string& error) override;
  caf::error release(const std::vector<std::int64_t>& projects) override;

  caf::expected<outbox_backlog> backlog() override;
  caf::error purge_published() override;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace gatehouse::storage
