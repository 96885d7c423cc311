#include "actors/indexer/rules.hpp"

#include "common/uuid.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace gatehouse::indexer {

namespace {

using ordered = nlohmann::ordered_json;

// GitLab nests groups at most 20 deep; the walk stops well after that, so a
// parent cycle in bad data cannot hang it.
constexpr int max_namespace_depth = 64;

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
      || c == '\v';
  });
}

bool negative(const std::optional<std::int64_t>& x) {
  return x && *x < 0;
}

const char* yes_no(bool b) {
  return b ? "t" : "f";
}

/// Root first.
std::vector<std::int64_t> ancestry_ids(const snapshot& snap,
                                       std::int64_t namespace_id) {
  std::vector<std::int64_t> ids;
  std::optional<std::int64_t> next = namespace_id;
  while (next && ids.size() < max_namespace_depth) {
    auto it = snap.namespaces.find(*next);
    if (it == snap.namespaces.end())
      break;
    ids.push_back(it->second.id);
    next = it->second.parent_id;
  }
  std::reverse(ids.begin(), ids.end());
  return ids;
}

bool enabled_top_level(const snapshot& snap, std::int64_t id) {
  const auto& enabled = snap.zoekt_enabled_namespaces;
  return std::binary_search(enabled.begin(), enabled.end(), id);
}

std::string dump(const ordered& body) {
  // Seeded text need not be UTF-8: never throw over it.
  return body.dump(-1, ' ', false, ordered::error_handler_t::replace);
}

} // namespace

// -- nodes --------------------------------------------------------------------

bool node_report_valid(const node_report& report) {
  if (blank(report.url) || blank(report.name) || report.disk_blank)
    return false;
  if (report.disk_all < 0 || report.disk_used < 0
      || negative(report.disk_indexed) || negative(report.disk_free))
    return false;
  if (report.services)
    for (const auto& service : *report.services)
      if (service != "zoekt" && service != "knowledge_graph")
        return false;
  return true;
}

std::int64_t concurrency_limit(const node_row& node,
                               const search_settings& settings) {
  auto reported = static_cast<double>(node.concurrency.value_or(0));
  auto product = reported * settings.zoekt_cpu_to_tasks_ratio;
  if (!std::isfinite(product) || product >= max_concurrency_limit)
    return max_concurrency_limit;
  auto calculated = std::llround(product);
  if (calculated <= 0)
    return default_concurrency_limit;
  return calculated;
}

std::string pull_frequency(std::int64_t backlog, std::int64_t limit) {
  return backlog < limit ? pull_frequency_default : pull_frequency_increased;
}

double storage_used_share(const node_row& node) {
  if (node.total_bytes <= 0)
    return 0;
  return static_cast<double>(node.used_bytes)
    / static_cast<double>(node.total_bytes);
}

bool past_critical_watermark(const node_row& node) {
  return storage_used_share(node) >= critical_watermark;
}

bool stop_indexing(const node_row& node, const search_settings& settings) {
  return settings.zoekt_indexing_paused || past_critical_watermark(node);
}

bool node_online(const node_row& node, unix_time now) {
  return node.last_seen_at >= now - online_seconds;
}

bool node_lost(const node_row& node, unix_time now,
               std::chrono::seconds lost_after) {
  if (lost_after.count() <= 0)
    return false;
  return node.last_seen_at <= now - lost_after.count();
}

// -- projects -----------------------------------------------------------------

int visibility_level(const std::string& visibility) {
  if (visibility == "public")
    return 20;
  if (visibility == "internal")
    return 10;
  return 0;
}

int repository_access_level(const std::string& level) {
  if (level == "enabled")
    return 20;
  if (level == "private")
    return 10;
  return 0;
}

std::string namespace_ancestry(const snapshot& snap,
                               const project_record& project) {
  std::string out;
  for (auto id : ancestry_ids(snap, project.namespace_id))
    out += std::to_string(id) + "-";
  return out;
}

const namespace_record* top_level_namespace(const snapshot& snap,
                                            std::int64_t namespace_id) {
  const namespace_record* top = nullptr;
  std::optional<std::int64_t> next = namespace_id;
  for (int depth = 0; next && depth < max_namespace_depth; ++depth) {
    auto it = snap.namespaces.find(*next);
    if (it == snap.namespaces.end())
      break;
    top = &it->second;
    next = it->second.parent_id;
  }
  // A chain that ends at an unknown parent has no known top level.
  if (top && top->parent_id)
    return nullptr;
  return top;
}

bool zoekt_indexed(const snapshot& snap, const project_record& project) {
  if (snap.zoekt_enabled_namespaces.empty())
    return false;
  const auto* top = top_level_namespace(snap, project.namespace_id);
  return top && enabled_top_level(snap, top->id);
}

// -- tasks --------------------------------------------------------------------

std::optional<task_view> render_task(const snapshot& snap, const node_row& node,
                                     const task_row& task) {
  task_view view;
  view.task_id = task.id;
  view.repo_id = task.project_id;
  if (task.type == "delete_repo") {
    view.name = "delete";
    return view;
  }
  if (task.type != "index_repo" && task.type != "force_index_repo")
    return std::nullopt;
  auto it = snap.projects.find(task.project_id);
  if (it == snap.projects.end())
    return std::nullopt;
  const auto& project = it->second;
  const auto& search = snap.settings.search;
  view.name = "index";
  view.force = task.type == "force_index_repo";
  view.missing_repo = !project.repository_exists;
  if (!view.missing_repo) {
    gitaly_connection gitaly;
    auto storage = snap.storages.find(project.storage);
    if (storage != snap.storages.end()) {
      gitaly.address = storage->second.gitaly_address;
      gitaly.token = storage->second.gitaly_token;
    }
    gitaly.storage = project.storage;
    gitaly.path = project.disk_path + ".git";
    view.gitaly = std::move(gitaly);
  }
  view.schema_version = node.schema_version;
  view.file_size_limit = search.elasticsearch_indexed_file_size_limit_kb * 1024;
  view.parallelism = search.zoekt_indexing_parallelism;
  view.timeout = std::to_string(search.zoekt_indexing_timeout_seconds) + "s";
  view.file_count_limit = search.zoekt_maximum_files;
  view.metadata = {
    {"project_id", std::to_string(project.id)},
    {"traversal_ids", namespace_ancestry(snap, project)},
    {"visibility_level", std::to_string(visibility_level(project.visibility))},
    {"repository_access_level",
     std::to_string(repository_access_level(project.repository_access_level))},
    {"forked", yes_no(project.forked)},
    // GitLab also counts an archived ancestor group; Gatehouse's namespaces
    // carry no archived flag.
    {"archived", yes_no(project.archived)},
  };
  return view;
}

// -- placement and assignment rounds ------------------------------------------

node_room::node_room(const index_state& state,
                     std::chrono::seconds lost_after) {
  for (const auto& node : state.nodes)
    if (node_online(node, state.now) && !past_critical_watermark(node)
        && !node_lost(node, state.now, lost_after))
      free_[node.id] = node.total_bytes - node.used_bytes;
  // Ready repositories are in used_bytes already; the others are still to
  // come.
  for (const auto& repo : state.repositories)
    if (repo.node_id && repo.state != "ready") {
      auto it = free_.find(*repo.node_id);
      if (it != free_.end())
        it->second -= std::max(repo.size_bytes, unknown_repository_bytes);
    }
}

std::optional<std::int64_t> node_room::best() const {
  std::optional<std::int64_t> best;
  std::int64_t best_free = 0;
  // Ascending ids: a strict comparison keeps the lower id on a tie.
  for (const auto& [id, free] : free_)
    if (!best || free > best_free) {
      best = id;
      best_free = free;
    }
  return best;
}

std::optional<std::int64_t> node_room::place(std::int64_t size_bytes) {
  auto node = best();
  if (node)
    free_[*node] -= std::max(size_bytes, unknown_repository_bytes);
  return node;
}

std::optional<std::int64_t> choose_node(const index_state& state,
                                        std::chrono::seconds lost_after) {
  return node_room{state, lost_after}.best();
}

assignment_write plan_assignments(const snapshot& snap,
                                  const index_state& state,
                                  const assignment_limits& limits) {
  assignment_write out;
  auto changes = [&out] {
    return out.assign.size() + out.wait.size() + out.drop.size();
  };
  auto budget_left = [&] {
    return changes() < limits.max_changes;
  };

  bool lost_enabled = !snap.settings.search.zoekt_indexing_paused;
  std::unordered_set<std::int64_t> registered;
  std::unordered_set<std::int64_t> lost;
  for (const auto& node : state.nodes) {
    registered.insert(node.id);
    if (lost_enabled && node_lost(node, state.now, limits.lost_after))
      lost.insert(node.id);
  }

  // Sorted by project so that rounds are reproducible.
  std::vector<const repository_row*> repositories;
  repositories.reserve(state.repositories.size());
  for (const auto& repo : state.repositories)
    repositories.push_back(&repo);
  std::sort(
    repositories.begin(), repositories.end(),
    [](const auto* a, const auto* b) { return a->project_id < b->project_id; });

  std::unordered_set<std::int64_t> has_repository;
  for (const auto* repo : repositories)
    has_repository.insert(repo->project_id);

  auto indexed = [&snap](std::int64_t project_id) {
    auto it = snap.projects.find(project_id);
    return it != snap.projects.end() && zoekt_indexed(snap, it->second);
  };

  // 1. Drops.
  for (const auto* repo : repositories) {
    if (!budget_left())
      return out;
    if (repo->state != "pending_deletion" && !indexed(repo->project_id))
      out.drop.push_back(repo->project_id);
  }

  // 2. Repositories that need a (new) node.
  node_room nodes{state, limits.lost_after};
  for (const auto* repo : repositories) {
    if (!budget_left())
      return out;
    if (repo->state == "pending_deletion" || !indexed(repo->project_id))
      continue;
    bool needs_node = !repo->node_id || lost.count(*repo->node_id) > 0
      || registered.count(*repo->node_id) == 0;
    if (!needs_node)
      continue;
    // No room anywhere: it keeps waiting (or stays on its lost node,
    // whose index may still answer searches).
    if (auto node = nodes.place(repo->size_bytes))
      out.assign.emplace_back(repo->project_id, *node);
  }

  // 3. Indexed projects without a repository.
  if (snap.zoekt_enabled_namespaces.empty())
    return out;
  std::unordered_map<std::int64_t, bool> namespace_indexed;
  std::vector<std::int64_t> missing;
  snap.projects.for_each([&](std::int64_t id, const project_record& project) {
    if (has_repository.count(id) > 0)
      return;
    auto cached = namespace_indexed.find(project.namespace_id);
    if (cached == namespace_indexed.end())
      cached = namespace_indexed
                 .emplace(project.namespace_id, zoekt_indexed(snap, project))
                 .first;
    if (cached->second)
      missing.push_back(id);
  });
  // Only the lowest ids fit in this round: no need to sort them all.
  auto fits = std::min(missing.size(), limits.max_changes - changes());
  std::partial_sort(missing.begin(), missing.begin() + fits, missing.end());
  missing.resize(fits);
  for (auto project_id : missing) {
    if (!budget_left())
      return out;
    if (auto node = nodes.place(0))
      out.assign.emplace_back(project_id, *node);
    else
      out.wait.push_back(project_id);
  }
  return out;
}

// -- pushes -------------------------------------------------------------------

bool is_zero_sha(const std::string& sha) {
  return !sha.empty()
    && std::all_of(sha.begin(), sha.end(), [](char c) { return c == '0'; });
}

bool pushes_default_branch(const project_record& project,
                           const pushed_ref& push) {
  return !project.default_branch.empty()
    && push.ref == "refs/heads/" + project.default_branch
    && !is_zero_sha(push.after);
}

std::optional<outbox_event> elastic_index_request(const snapshot& snap,
                                                  const project_record& project,
                                                  const pushed_ref& push) {
  const auto& search = snap.settings.search;
  if (!search.elasticsearch_indexing || !pushes_default_branch(project, push)
      || !project.repository_exists)
    return std::nullopt;
  std::string address;
  std::string token;
  auto storage = snap.storages.find(project.storage);
  if (storage != snap.storages.end()) {
    address = storage->second.gitaly_address;
    token = storage->second.gitaly_token;
  }
  auto from_sha = push.before.empty() || is_zero_sha(push.before)
    ? std::string{empty_tree_sha}
    : push.before;
  ordered body = {{"object_kind", "index_elastic"},
                  {"project_id", project.id},
                  {"project_path", project.full_path},
                  {"repository_path", project.disk_path + ".git"},
                  {"ref", push.ref},
                  {"from_sha", from_sha},
                  {"to_sha", push.after},
                  {"gitaly_connection_info",
                   {{"address", address},
                    {"token", token},
                    {"storage", project.storage},
                    {"relative_path", project.disk_path + ".git"},
                    {"project_path", project.full_path},
                    {"limit_file_size",
                     search.elasticsearch_indexed_file_size_limit_kb * 1024}}},
                  {"visibility_level", visibility_level(project.visibility)},
                  {"repository_access_level",
                   repository_access_level(project.repository_access_level)},
                  {"traversal_ids", namespace_ancestry(snap, project)},
                  {"archived", project.archived},
                  {"correlation_id", push.correlation_id},
                  {"push_event_id", push.event_id}};
  return outbox_event{
    derived_uuid("index_elastic:" + push.event_id + ":"
                 + std::to_string(project.id)),
    project.id, "gitlab.events.index.elastic." + std::to_string(project.id),
    "index_elastic", dump(body)};
}

} // namespace gatehouse::indexer
