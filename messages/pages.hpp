#pragma once

// GitLab Pages' calls (contract other-callers §3): the host Pages asks
// about, the VirtualDomain it gets back, and the rows the pages store reads
// for the pages domain actor. The store only reads rows by key; every rule
// (host classification, what counts as deployed, prefixes, access control)
// lives in actors/pages/.

#include <caf/allowed_unsafe_message_type.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::pages {

// -- calls --------------------------------------------------------------------

/// GET /api/v4/internal/pages?host=
struct domain_query {
  /// The host as sent; nullopt when the parameter is absent (Grape's
  /// "host is missing"). Present but empty is allowed and finds nothing.
  std::optional<std::string> host;
  /// The parameter is not a string Grape could coerce (an array, an
  /// object): "host is invalid".
  bool host_invalid = false;
};

/// The archive a lookup path serves (LookupPath#source).
struct source_view {
  /// Always "zip": the legacy "file" type is gone from GitLab.
  std::string type = "zip";
  /// A presigned URL or file://<absolute path>, as seeded.
  std::string path;
  /// gid://gitlab/PagesDeployment/<id>
  std::string global_id;
  std::string sha256;
  std::int64_t file_size = 0;
  std::int64_t file_count = 0;
};

/// One project deployment Pages serves below `prefix`.
struct lookup_path {
  std::int64_t project_id = 0;
  bool access_control = false;
  bool https_only = false;
  /// "/", "/<project path below the namespace>/", plus "<path_prefix>/".
  std::string prefix;
  source_view source;
  /// "<unique domain>.<pages host>" when the project uses one; null for
  /// custom domains.
  std::optional<std::string> unique_host;
  std::string root_directory;
  std::optional<std::string> primary_domain;
};

/// The answer of GET /internal/pages: a VirtualDomain, or none (204).
struct virtual_domain {
  /// False: no such domain; the edge answers 204 with an empty body.
  bool found = false;
  /// The custom domain's TLS pair; null for namespace and unique domains.
  std::optional<std::string> certificate;
  std::optional<std::string> key;
  /// The top-level namespace of the domain's projects.
  std::int64_t root_namespace_id = 0;
  std::vector<lookup_path> lookup_paths;
};

/// GET /api/v4/internal/pages/status: no fields.
struct status_query {};

/// Its answer: always 204 with an empty body.
struct status_answer {};

// -- rows of the pages store -------------------------------------------------

/// Ask the store for the instance settings Pages' rules need.
struct settings_query {};

/// The instance settings Pages' rules need.
struct settings_row {
  /// settings.pages_host (GitLab's pages.host), as stored.
  std::string pages_host;
  /// settings.pages_access_control (GitLab's pages.access_control).
  bool access_control = false;
  /// settings.force_pages_access_control (the application setting).
  bool force_access_control = false;
};

/// Which rows to read; each key is compared lower-cased. Unset keys read
/// nothing.
struct rows_query {
  /// Projects whose pages_unique_domain is this.
  std::optional<std::string> unique_domain;
  /// The top-level namespace with this path, and every project below it
  /// that has a deployment.
  std::optional<std::string> top_level_path;
  /// The pages_domains row of this domain, and its project.
  std::optional<std::string> custom_domain;
};

struct namespace_row {
  std::int64_t id = 0;
  std::optional<std::int64_t> parent_id;
  std::string path;
  std::string full_path;
  /// namespaces.force_pages_access_control.
  bool force_access_control = false;
};

struct deployment_row {
  std::int64_t id = 0;
  std::string path_prefix;
  std::string root_directory;
  std::string source_path;
  std::string sha256;
  std::int64_t file_size = 0;
  std::int64_t file_count = 0;
  bool access_control = false;
};

struct project_row {
  std::int64_t id = 0;
  std::int64_t namespace_id = 0;
  std::string full_path;
  std::string visibility;
  bool https_only = true;
  /// "enabled", "private", "public" or "disabled".
  std::string access_level;
  bool unique_domain_enabled = false;
  std::optional<std::string> unique_domain;
  std::optional<std::string> primary_domain;
  bool multiple_versions = false;
  /// Ordered by id.
  std::vector<deployment_row> deployments;
};

struct domain_row {
  std::int64_t id = 0;
  std::int64_t project_id = 0;
  std::string domain;
  bool enabled = true;
  std::optional<std::string> certificate;
  std::optional<std::string> key;
};

/// What the store found for a rows_query.
struct rows {
  /// Projects with that unique domain (at most one: a unique index).
  std::vector<project_row> unique_projects;
  std::optional<namespace_row> top_level;
  /// Projects below `top_level` (sub-groups included) with a deployment.
  std::vector<project_row> namespace_projects;
  std::optional<domain_row> domain;
  /// The custom domain's project, when there is a domain.
  std::vector<project_row> domain_projects;
  /// Every namespace from the root down to each project's namespace, so
  /// that the rules can walk ancestors; no order.
  std::vector<namespace_row> namespaces;
};

} // namespace gatehouse::pages

// Local messages between the edges, the pages actor and the pages store,
// never serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::pages::domain_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::pages::virtual_domain)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::pages::status_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::pages::status_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::pages::settings_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::pages::settings_row)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::pages::rows_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::pages::rows)
