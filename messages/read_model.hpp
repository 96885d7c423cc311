#pragma once

// The access-control read model: an immutable snapshot of everything
// `/allowed` and its siblings decide on, loaded from PostgreSQL at start and
// replaced after every change by a copy that shares all it did not change.
// Plain C++ so that the decision logic is testable without CAF or a
// database.

#include "messages/sharded_map.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gatehouse {

/// Unix time in seconds.
using unix_time = std::int64_t;

struct user_record {
  std::int64_t id = 0;
  std::string username;
  std::string name;
  std::string email;
  /// The email the user shows publicly; "" when none (webhook user_email).
  std::string public_email;
  /// active, blocked, deactivated, blocked_pending_approval, banned
  std::string state = "active";
  bool admin = false;
  bool external = false;
  bool can_create_project = true;
  bool two_factor_enabled = false;
};

struct key_record {
  std::int64_t id = 0;
  /// True for a deploy key, false for a personal key.
  bool deploy = false;
  /// The owner (personal) or creator (deploy); nullopt for an orphaned
  /// deploy key.
  std::optional<std::int64_t> user_id;
  std::string title;
  /// "ssh-ed25519", "ssh-rsa", ... The seeded line and its fingerprint
  /// are not kept: answers rebuild the line from type and blob, and the
  /// fingerprint is snapshot::key_by_fingerprint's key (a million keys
  /// would hold both twice).
  std::string key_type;
  /// The base64 blob (standard, padded).
  std::string blob;
  /// auth, signing, auth_and_signing (deploy keys: auth).
  std::string usage_type = "auth_and_signing";
  std::optional<unix_time> expires_at;
  std::optional<unix_time> last_used_at;
  unix_time created_at = 0;
  /// Deploy keys: project id -> can_push.
  std::map<std::int64_t, bool> deploy_projects;

  bool can_authenticate() const {
    return usage_type != "signing";
  }
};

struct namespace_record {
  std::int64_t id = 0;
  std::optional<std::int64_t> parent_id;
  std::string path;
  std::string full_path;
  /// The display name (webhook payloads' project.namespace).
  std::string name;
  /// group or user
  std::string kind = "group";
};

struct storage_record {
  std::string name;
  std::string gitaly_address;
  std::string gitaly_token;
  /// Local directory of the storage's repositories; empty when unknown.
  std::string path;
};

struct project_record {
  std::int64_t id = 0;
  std::int64_t namespace_id = 0;
  std::string path;
  std::string full_path;
  std::string name;
  std::string description;
  /// private, internal, public
  std::string visibility = "private";
  bool archived = false;
  std::string default_branch;
  std::string storage = "default";
  /// Relative path without ".git", e.g. "@hashed/4a/44/4a44...".
  std::string disk_path;
  /// enabled, private, disabled
  std::string repository_access_level = "enabled";
  bool merge_requests_enabled = true;
  bool lfs_enabled = true;
  bool repository_exists = true;
  /// A fork of another project (the Zoekt index's forked metadata).
  bool forked = false;
};

struct protected_branch_record {
  std::int64_t id = 0;
  std::int64_t project_id = 0;
  /// Exact name or pattern with '*' wildcards.
  std::string name;
  /// 0 No one, 30 Developers + Maintainers, 40 Maintainers, 60 Admins.
  int push_access_level = 40;
  int merge_access_level = 40;
  bool allow_force_push = false;
};

struct protected_tag_record {
  std::int64_t id = 0;
  std::int64_t project_id = 0;
  std::string name;
  int create_access_level = 40;
};

/// A personal access token that is not revoked (a revoked one is never
/// found, as GitLab finds only active tokens). Its secret is known only by
/// its digest, the key it is found by.
struct personal_access_token_record {
  std::int64_t id = 0;
  std::int64_t user_id = 0;
  std::vector<std::string> scopes;
  /// The first day it is no longer valid (00:00 UTC of its expires_at date);
  /// nullopt: never expires.
  std::optional<unix_time> expires_at;
};

/// A GitLab agent for Kubernetes, with the user_access authorizations
/// its configuration last granted (agent_configuration).
struct cluster_agent_record {
  std::int64_t id = 0;
  /// The agent's configuration project.
  std::int64_t project_id = 0;
  std::string name;
  /// user_access: (project id, the row's config JSON: {"access_as":...}).
  std::vector<std::pair<std::int64_t, std::string>> user_access_projects;
  /// user_access: (namespace id, the row's config JSON).
  std::vector<std::pair<std::int64_t, std::string>> user_access_groups;
};

/// An agent token that is not revoked (a revoked one is never found).
struct agent_token_record {
  std::int64_t id = 0;
  std::int64_t agent_id = 0;
};

struct broadcast_message_record {
  std::int64_t id = 0;
  std::string message;
  /// Optional path pattern ('*' wildcards) the banner is limited to.
  std::optional<std::string> target_path;
  std::optional<unix_time> starts_at;
  std::optional<unix_time> ends_at;
};

/// Search indexing settings (GitLab's application settings of these names;
/// defaults are GitLab's).
struct search_settings {
  /// Zoekt: nodes get no tasks and are told to stop indexing.
  bool zoekt_indexing_paused = false;
  std::int64_t zoekt_indexing_parallelism = 1;
  std::int64_t zoekt_maximum_files = 500000;
  /// A task's Timeout, seconds.
  std::int64_t zoekt_indexing_timeout_seconds = 1800;
  /// A node's batch: its reported concurrency times this (20 when 0).
  double zoekt_cpu_to_tasks_ratio = 1.0;
  /// Elasticsearch: index requests are published for pushes.
  bool elasticsearch_indexing = false;
  /// FileSizeLimit of Zoekt tasks and the Elasticsearch indexer, KiB.
  std::int64_t elasticsearch_indexed_file_size_limit_kb = 1024;
};

struct settings_record {
  std::string external_url = "http://127.0.0.1:8080";
  std::string ssh_clone_url_root;
  /// all, ssh, http (GitLab's blank means all)
  std::string enabled_git_access_protocol = "all";
  std::int64_t receive_max_input_size_mb = 0;
  std::string gitlab_version = "18.6.0";
  std::string pages_host;
  std::int64_t gitlab_shell_operation_limit = 600;
  bool allow_local_requests_from_web_hooks_and_services = false;
  std::vector<broadcast_message_record> broadcast_messages;
  search_settings search;
};

/// One consistent snapshot of the read model. Shared immutable between
/// actors through std::shared_ptr<const snapshot>. The large maps are
/// sharded: a change copies the snapshot cheaply and clones only the
/// shards it writes (messages/sharded_map.hpp).
struct snapshot {
  template <class K, class V>
  using map = sharded_map<K, V>;
  using id_pair = std::pair<std::int64_t, std::int64_t>;

  settings_record settings;
  map<std::int64_t, user_record> users;
  /// Lower-cased username -> user id.
  map<std::string, std::int64_t> user_by_username;
  /// Personal and deploy keys share one id space.
  map<std::int64_t, key_record> keys;
  /// fingerprint_sha256 ("SHA256:...") -> key id.
  map<std::string, std::int64_t> key_by_fingerprint;
  map<std::int64_t, namespace_record> namespaces;
  map<std::int64_t, project_record> projects;
  /// Lower-cased full path -> project id.
  map<std::string, std::int64_t> project_by_path;
  /// Lower-cased former full path -> project id.
  map<std::string, std::int64_t> redirects;
  std::unordered_map<std::string, storage_record> storages;
  /// (user id, project id) -> access level of a direct project membership.
  sharded_map<id_pair, int, id_pair_hash> project_members;
  /// (user id, namespace id) -> access level of a namespace membership.
  sharded_map<id_pair, int, id_pair_hash> namespace_members;
  /// Project id -> its protected branches and tags.
  map<std::int64_t, std::vector<protected_branch_record>> protected_branches;
  map<std::int64_t, std::vector<protected_tag_record>> protected_tags;
  /// Token digest (common/base64.hpp token_digest) -> active token.
  map<std::string, personal_access_token_record> tokens_by_digest;
  /// Token digest -> id of a revoked personal access token.
  map<std::string, std::int64_t> revoked_tokens_by_digest;
  map<std::int64_t, cluster_agent_record> agents;
  /// Project id -> the ids of its agents.
  map<std::int64_t, std::vector<std::int64_t>> agents_by_project;
  /// Agent token digest (token_digest) -> active agent token.
  map<std::string, agent_token_record> agent_tokens_by_digest;
  /// CI runner token digest -> runner id (KAS's runner info call).
  map<std::string, std::int64_t> runner_by_digest;
  /// Top-level namespaces whose projects Zoekt indexes (sub-groups
  /// included), sorted.
  std::vector<std::int64_t> zoekt_enabled_namespaces;
  /// When this snapshot was loaded (unix seconds), for metrics.
  unix_time loaded_at = 0;
  /// PostgreSQL's snapshot (pg_snapshot as text) this model is exact for:
  /// every change committed after it is read from the change log. Empty
  /// for a model not read from PostgreSQL.
  std::string as_of;
};

using snapshot_ptr = std::shared_ptr<const snapshot>;

} // namespace gatehouse
