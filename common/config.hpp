#pragma once

#include "common/jwt.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>

namespace gatehouse {

/// A configuration value that cannot be used; what() is one line naming the
/// variable.
struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class log_format { json, text };

/// Everything Gatehouse reads from GATEHOUSE_* variables. The README's
/// configuration table lists the same names and defaults.
struct config {
  std::string database_url = "postgresql://gatehouse@127.0.0.1:5432/gatehouse";
  /// How long `migrate` and `seed` wait for PostgreSQL to accept a
  /// connection (a database container still starting); 0 tries once.
  std::chrono::seconds database_wait{60};
  std::string nats_url = "nats://127.0.0.1:4222";
  std::string nats_creds_file;
  std::string nats_nkey_seed_file;
  std::string http_host = "127.0.0.1";
  int http_port = 8080;
  /// Workers that answer requests; a connection holds one only while its
  /// request is answered (idle and slow ones wait in one epoll thread).
  int http_threads = 32;
  std::size_t http_max_body = 64u * 1024 * 1024;
  std::chrono::milliseconds request_timeout{10000};
  /// PostgreSQL sessions that write pushes (pre_receive, post_receive), each
  /// on a thread of its own. Each commits every post_receive queued during
  /// its previous commit at once, so a few sessions make large batches;
  /// many would split the same load into single-push commits.
  int push_sessions = 2;
  /// A path prefix such as "/gitlab"; empty or starting with '/' and without
  /// a trailing slash.
  std::string relative_url_root;
  /// Where Workhorse stores uploaded files before Gatehouse finalizes them
  /// (TempPath of authorize_upload and of LFS uploads); GitLab's
  /// uploads.storage_path and lfs.storage_path live below it.
  std::string uploads_dir = "/var/lib/gatehouse/uploads";
  log_format log = log_format::json;
  /// Zoekt: a node not heard from this long has its repositories moved to
  /// other nodes (GitLab's lost_node_threshold, 12 h); 0 never.
  std::chrono::seconds zoekt_lost_node_after{12 * 3600};
  /// Zoekt: how often repositories of enabled namespaces are assigned to
  /// nodes (and moved off lost ones).
  std::chrono::seconds zoekt_assign_interval{60};
  /// Replicas of the GATEHOUSE_EVENTS stream (3 on a NATS cluster).
  int events_replicas = 1;
  /// Webhook consumer: base of the temporary-disable backoff (GitLab: 1 min,
  /// doubled per further failure, capped at 24 h).
  std::chrono::milliseconds webhook_backoff_base{60000};
  /// Webhook consumer: attempts beyond the first before a delivery counts
  /// as failed (short backoff, same Idempotency-Key).
  int webhook_retries = 3;
  /// Webhook consumer: timeout of one delivery attempt.
  std::chrono::milliseconds webhook_timeout{10000};
  /// Webhook consumer: a file whose modification time it renews while it
  /// consumes and reaches PostgreSQL (a container health check reads it);
  /// empty for none.
  std::string webhooks_heartbeat_file;
  /// Secret file per caller, indexed by jwt::caller; unset disables the
  /// caller's routes.
  std::array<std::optional<std::string>, 4> secret_files;

  const std::optional<std::string>& secret_file(jwt::caller c) const {
    return secret_files[static_cast<std::size_t>(c)];
  }
};

/// The variable that names `c`'s secret file, e.g.
/// "GATEHOUSE_SHELL_SECRET_FILE".
const char* secret_file_variable(jwt::caller c);

/// Reads the environment. Throws config_error on a malformed value.
config config_from_env();

} // namespace gatehouse
