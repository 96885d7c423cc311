#include "storage/seed/seed_apply.hpp"

#include "storage/read_model_loader.hpp"

#include "common/ascii.hpp"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace gatehouse::storage::seeding {

namespace {

using problem_list = std::vector<std::string>;

/// A column of a jsonb_to_recordset input and how it is stored.
struct column {
  const char* name;
  const char* type;      // SQL type in the recordset definition
  const char* expr = ""; // stored expression; "" stores x.<name>
  bool stored = true;    // false: input only (used by another expr)
};

/// INSERT ... SELECT FROM jsonb_to_recordset($1) ON CONFLICT ... DO UPDATE,
/// where the update only happens when some column differs, so that seeding
/// the same document twice rewrites no row.
std::string upsert_sql(const std::string& table, const std::string& conflict,
                       const std::vector<column>& columns,
                       std::size_t key_columns) {
  std::string inputs, names, values, sets, old_values, new_values;
  std::size_t stored = 0;
  for (const auto& c : columns) {
    inputs += std::string(inputs.empty() ? "" : ", ") + c.name + " " + c.type;
    if (!c.stored)
      continue;
    std::string sep = names.empty() ? "" : ", ";
    names += sep + c.name;
    values
      += sep + (*c.expr ? std::string(c.expr) : "x." + std::string(c.name));
    if (stored++ < key_columns)
      continue;
    std::string usep = sets.empty() ? "" : ", ";
    sets += usep + c.name + " = EXCLUDED." + c.name;
    old_values += usep + "t." + c.name;
    new_values += usep + "EXCLUDED." + c.name;
  }
  return "INSERT INTO " + table + " AS t (" + names + ") SELECT " + values
    + " FROM jsonb_to_recordset($1::jsonb) AS x(" + inputs + ") ON CONFLICT "
    + conflict + " DO UPDATE SET " + sets + ", updated_at = now() WHERE ("
    + old_values + ") IS DISTINCT FROM (" + new_values + ")";
}

/// Rows per upsert statement: a few megabytes of jsonb each.
constexpr std::size_t rows_per_statement = 10000;

class loader {
public:
  loader(pqxx::work& tx, const parsed_seed& seed, seed_report& report)
    : tx_(tx), seed_(seed), report_(report) {}

  bool present(const char* kind) const {
    return seed_.present.count(kind);
  }

  /// Runs `sql` with `arg` as $1 and returns the number of rows it changed.
  std::int64_t run(const std::string& sql, const std::string& arg) {
    return static_cast<std::int64_t>(
      tx_.exec_params(sql, arg).affected_rows());
  }

  std::int64_t run(const std::string& sql, const json& arg) {
    return run(sql, arg.dump());
  }

  void changed(const char* kind, std::int64_t rows) {
    if (rows > 0)
      changed_.insert(kind);
  }

  /// Upserts `rows` in statements of at most `rows_per_statement` rows
  /// (PostgreSQL refuses a jsonb array over 256 MB, and one statement's
  /// text would be held twice in memory), all in the seed's transaction.
  /// `whole` keeps them in one statement: for rows that refer to rows of
  /// the same table (namespaces and their parents).
  std::int64_t upsert(const char* kind, const std::string& table,
                      const std::string& conflict,
                      const std::vector<column>& columns,
                      std::size_t key_columns, const row_list& rows,
                      bool whole = false) {
    if (rows.empty())
      return 0;
    auto sql = upsert_sql(table, conflict, columns, key_columns);
    auto step = whole ? rows.size() : rows_per_statement;
    std::int64_t n = 0;
    for (std::size_t begin = 0; begin < rows.size(); begin += step)
      n += run(sql, rows.array(begin, std::min(rows.size(), begin + step)));
    changed(kind, n);
    return n;
  }

  std::int64_t upsert(const char* kind, const std::string& table,
                      const std::string& conflict,
                      const std::vector<column>& columns,
                      std::size_t key_columns, const json& rows,
                      bool whole = false) {
    row_list list;
    for (const auto& row : rows)
      list.push_back(row);
    return upsert(kind, table, conflict, columns, key_columns, list, whole);
  }

  static json ids(const json& rows, const char* key = "id") {
    json out = json::array();
    for (const auto& r : rows)
      out.push_back(r.at(key));
    return out;
  }

  static json ids(const row_list& rows, const char* key = "id") {
    json out = json::array();
    rows.each([&](const json& r) { out.push_back(r.at(key)); });
    return out;
  }

  /// Deletes with `sql`; counts the rows as `counted` (default: `kind`)
  /// in the report and marks `kind` changed.
  /// `arg` is a json value or the text of one.
  template <class Arg>
  void prune(const char* kind, const std::string& sql, const Arg& arg,
             const char* counted = nullptr) {
    auto n = run(sql, arg);
    if (n > 0)
      report_.pruned[counted ? counted : kind] += n;
    changed(kind, n);
  }

  // An anti-join PostgreSQL hashes: `<> ALL (ARRAY(...))` compared every
  // row with the whole list, which made a prune of 100k keys take minutes.
  static std::string not_listed(const char* column, const char* type) {
    return std::string("NOT EXISTS (SELECT 1 FROM "
                       "jsonb_array_elements_text($1::jsonb) AS listed(v) "
                       "WHERE listed.v::")
      + type + " = " + column + ")";
  }

  template <class Rows>
  void prune_by_id(const char* kind, const char* table, const Rows& rows,
                   const char* extra = "", const char* counted = nullptr) {
    prune(kind,
          std::string("DELETE FROM ") + table + " WHERE " + extra
            + not_listed("id", "bigint"),
          ids(rows), counted);
  }

  /// --prune: for each kind present, delete what the document does not
  /// list. Foreign keys are deferred, so the order only matters for what
  /// cascades; children go first.
  void prune_all() {
    if (present("webhooks"))
      prune_by_id("webhooks", "webhooks", seed_.webhooks);
    if (present("zoekt_enabled_namespaces"))
      prune("zoekt_enabled_namespaces",
            "DELETE FROM zoekt_enabled_namespaces WHERE "
              + not_listed("namespace_id", "bigint"),
            ids(seed_.zoekt_enabled_namespaces, "namespace_id"));
    if (present("zoekt_nodes"))
      prune_by_id("zoekt_nodes", "zoekt_nodes", seed_.zoekt_nodes);
    if (present("pages_deployments"))
      prune_by_id("pages_deployments", "pages_deployments",
                  seed_.pages_deployments);
    if (present("pages_domains"))
      prune_by_id("pages_domains", "pages_domains", seed_.pages_domains);
    if (present("cluster_agents")) {
      prune_by_id("cluster_agents", "cluster_agent_tokens",
                  seed_.cluster_agent_tokens, "", "cluster_agent_tokens");
      prune_by_id("cluster_agents", "cluster_agents", seed_.cluster_agents);
    }
    if (present("runners"))
      prune_by_id("runners", "ci_runners", seed_.runners);
    if (present("personal_access_tokens"))
      prune_by_id("personal_access_tokens", "personal_access_tokens",
                  seed_.personal_access_tokens);
    if (present("protected_tags"))
      prune_by_id("protected_tags", "protected_tags", seed_.protected_tags);
    if (present("protected_branches"))
      prune_by_id("protected_branches", "protected_branches",
                  seed_.protected_branches);
    if (present("members")) {
      const auto& projects = seed_.project_members.text();
      const auto& groups = seed_.namespace_members.text();
      auto listed = "[" + projects
        + (projects.empty() || groups.empty() ? "" : ",") + groups + "]";
      prune("members",
            "DELETE FROM members m WHERE NOT EXISTS (SELECT 1 FROM "
            "jsonb_to_recordset($1::jsonb) AS x(user_id bigint, project_id "
            "bigint, namespace_id bigint) WHERE x.user_id = m.user_id AND "
            "x.project_id IS NOT DISTINCT FROM m.project_id AND "
            "x.namespace_id IS NOT DISTINCT FROM m.namespace_id)",
            listed);
    }
    if (present("deploy_keys")) {
      prune("deploy_keys",
            "DELETE FROM deploy_keys_projects d WHERE NOT EXISTS (SELECT 1 "
            "FROM jsonb_to_recordset($1::jsonb) AS x(key_id bigint, "
            "project_id bigint) WHERE x.key_id = d.key_id AND x.project_id = "
            "d.project_id)",
            seed_.deploy_links.array(), "deploy_keys_projects");
      prune_by_id("deploy_keys", "keys", seed_.deploy_keys,
                  "kind = 'deploy' AND ");
    }
    if (present("keys"))
      prune_by_id("keys", "keys", seed_.keys, "kind = 'personal' AND ");
    if (present("projects")) {
      json paths = json::array();
      seed_.redirects.each([&](const json& r) {
        paths.push_back(ascii_lower(r.at("path").get<std::string>()));
      });
      prune("projects",
            "DELETE FROM project_redirects WHERE "
              + not_listed("lower(path)", "text"),
            paths, "project_redirects");
      prune_by_id("projects", "projects", seed_.projects);
    }
    if (present("namespaces"))
      prune_by_id("namespaces", "namespaces", seed_.namespaces);
    if (present("users")) {
      // Deploy keys outlive the user who added them.
      changed("deploy_keys",
              run("UPDATE keys SET user_id = NULL, updated_at = now() WHERE "
                  "kind = 'deploy' AND user_id IS NOT NULL AND "
                    + not_listed("user_id", "bigint"),
                  ids(seed_.users)));
      prune_by_id("users", "users", seed_.users);
    }
    if (present("storages"))
      prune("storages",
            "DELETE FROM storages WHERE " + not_listed("name", "text"),
            ids(seed_.storages, "name"));
    if (seed_.broadcast_present)
      prune_by_id("broadcast_messages", "broadcast_messages",
                  seed_.broadcast_messages);
  }

  void count(const char* kind, std::int64_t n) {
    if (present(kind))
      report_.upserted[kind] = n;
  }

  void upsert_all(problem_list& problems) {
    if (present("settings")) {
      json settings = seed_.settings;
      changed("settings",
              run("INSERT INTO settings AS s (key, value) SELECT key, value "
                  "FROM jsonb_each($1::jsonb) ON CONFLICT (key) DO UPDATE "
                  "SET value = EXCLUDED.value, updated_at = now() WHERE "
                  "s.value IS DISTINCT FROM EXCLUDED.value",
                  settings));
      report_.upserted["settings"] = static_cast<std::int64_t>(settings.size());
    }
    if (seed_.broadcast_present) {
      upsert("broadcast_messages", "broadcast_messages", "(id)",
             {{"id", "bigint"},
              {"message", "text"},
              {"target_path", "text"},
              {"starts_at", "timestamptz"},
              {"ends_at", "timestamptz"}},
             1, seed_.broadcast_messages);
      report_.upserted["broadcast_messages"]
        = static_cast<std::int64_t>(seed_.broadcast_messages.size());
    }
    upsert("storages", "storages", "(name)",
           {{"name", "text"},
            {"gitaly_address", "text"},
            {"gitaly_token", "text"},
            {"path", "text"}},
           1, seed_.storages);
    count("storages", seed_.storages.size());
    upsert("users", "users", "(id)",
           {{"id", "bigint"},
            {"username", "text"},
            {"name", "text"},
            {"email", "text"},
            {"public_email", "text"},
            {"state", "text"},
            {"admin", "boolean"},
            {"external", "boolean"},
            {"can_create_project", "boolean"},
            {"two_factor_enabled", "boolean"}},
           1, seed_.users);
    count("users", seed_.users.size());
    upsert_namespaces(problems);
    if (!problems.empty())
      return;
    upsert_projects();
    std::vector<column> key_columns{
      {"id", "bigint"},       {"kind", "text"},
      {"user_id", "bigint"},  {"title", "text"},
      {"key", "text"},        {"key_type", "text"},
      {"key_blob", "text"},   {"fingerprint_sha256", "text"},
      {"usage_type", "text"}, {"expires_at", "timestamptz"}};
    upsert("keys", "keys", "(id)", key_columns, 1, seed_.keys);
    count("keys", seed_.keys.size());
    upsert("deploy_keys", "keys", "(id)", key_columns, 1, seed_.deploy_keys);
    upsert(
      "deploy_keys", "deploy_keys_projects", "(key_id, project_id)",
      {{"key_id", "bigint"}, {"project_id", "bigint"}, {"can_push", "boolean"}},
      2, seed_.deploy_links);
    count("deploy_keys", seed_.deploy_keys.size());
    if (present("keys"))
      // A key that moved from deploy_keys to keys keeps no project links.
      changed("deploy_keys",
              run("DELETE FROM deploy_keys_projects d USING keys k WHERE "
                  "k.id = d.key_id AND k.kind = 'personal' AND k.id IN "
                  "(SELECT v::bigint FROM jsonb_array_elements_text($1::jsonb) "
                  "AS v)",
                  ids(seed_.keys)));
    upsert("members", "members",
           "(user_id, project_id) WHERE project_id IS NOT NULL",
           {{"user_id", "bigint"},
            {"project_id", "bigint"},
            {"access_level", "smallint"}},
           2, seed_.project_members);
    upsert("members", "members",
           "(user_id, namespace_id) WHERE namespace_id IS NOT NULL",
           {{"user_id", "bigint"},
            {"namespace_id", "bigint"},
            {"access_level", "smallint"}},
           2, seed_.namespace_members);
    count("members",
          seed_.project_members.size() + seed_.namespace_members.size());
    upsert("protected_branches", "protected_branches", "(id)",
           {{"id", "bigint"},
            {"project_id", "bigint"},
            {"name", "text"},
            {"push_access_level", "smallint"},
            {"merge_access_level", "smallint"},
            {"allow_force_push", "boolean"}},
           1, seed_.protected_branches);
    count("protected_branches", seed_.protected_branches.size());
    upsert("protected_tags", "protected_tags", "(id)",
           {{"id", "bigint"},
            {"project_id", "bigint"},
            {"name", "text"},
            {"create_access_level", "smallint"}},
           1, seed_.protected_tags);
    count("protected_tags", seed_.protected_tags.size());
    upsert("personal_access_tokens", "personal_access_tokens", "(id)",
           {{"id", "bigint"},
            {"user_id", "bigint"},
            {"name", "text"},
            {"token_digest", "text"},
            {"scopes", "text[]"},
            {"expires_at", "date"},
            {"revoked", "boolean"}},
           1, seed_.personal_access_tokens);
    count("personal_access_tokens", seed_.personal_access_tokens.size());
    upsert("cluster_agents", "cluster_agents", "(id)",
           {{"id", "bigint"}, {"project_id", "bigint"}, {"name", "text"}}, 1,
           seed_.cluster_agents);
    upsert("cluster_agents", "cluster_agent_tokens", "(id)",
           {{"id", "bigint"},
            {"agent_id", "bigint"},
            {"token_digest", "text"},
            {"revoked", "boolean"}},
           1, seed_.cluster_agent_tokens);
    upsert("cluster_agents", "cluster_agent_configs", "(agent_id)",
           {{"agent_id", "bigint"}, {"config", "jsonb"}}, 1,
           seed_.agent_configs);
    replace_authorizations();
    count("cluster_agents", seed_.cluster_agents.size());
    upsert("runners", "ci_runners", "(id)",
           {{"id", "bigint"},
            {"token_digest", "text"},
            {"description", "text"},
            {"active", "boolean"}},
           1, seed_.runners);
    count("runners", seed_.runners.size());
    upsert("pages_domains", "pages_domains", "(id)",
           {{"id", "bigint"},
            {"project_id", "bigint"},
            {"domain", "text"},
            {"enabled", "boolean"},
            {"certificate", "text"},
            {"key", "text"},
            {"https_only", "boolean"}},
           1, seed_.pages_domains);
    count("pages_domains", seed_.pages_domains.size());
    upsert("pages_deployments", "pages_deployments", "(id)",
           {{"id", "bigint"},
            {"project_id", "bigint"},
            {"path_prefix", "text"},
            {"root_directory", "text"},
            {"source_path", "text"},
            {"sha256", "text"},
            {"file_size", "bigint"},
            {"file_count", "bigint"},
            {"access_control", "boolean"}},
           1, seed_.pages_deployments);
    count("pages_deployments", seed_.pages_deployments.size());
    upsert(
      "zoekt_nodes", "zoekt_nodes", "(id)",
      {{"id", "bigint"}, {"uuid", "uuid"}, {"name", "text"}, {"url", "text"}},
      1, seed_.zoekt_nodes);
    count("zoekt_nodes", seed_.zoekt_nodes.size());
    // Nodes that register by heartbeat take ids from the identity (012):
    // it must stay past every id a seed wrote.
    if (!seed_.zoekt_nodes.empty())
      tx_.exec("SELECT setval(pg_get_serial_sequence('zoekt_nodes', 'id'), "
               "greatest((SELECT max(id) FROM zoekt_nodes), 1))");
    upsert_zoekt_enabled_namespaces(problems);
    upsert("webhooks", "webhooks", "(id)",
           {{"id", "bigint"},
            {"project_id", "bigint"},
            {"url", "text"},
            {"token", "text"},
            {"push_events", "boolean"},
            {"tag_push_events", "boolean"},
            {"enabled", "boolean"}},
           1, seed_.webhooks);
    count("webhooks", seed_.webhooks.size());
    if (seed_.broadcast_present)
      sync_broadcast_setting();
  }

  /// The four authorization lists of each agent whose document gives
  /// `authorizations` become exactly what it lists; other agents' rows
  /// stay as KAS last set them.
  void replace_authorizations() {
    if (seed_.agents_with_authorizations.empty())
      return;
    struct list {
      const char* table;
      const char* target;
      const row_list* rows;
    };
    const list lists[] = {
      {"agent_project_authorizations", "project_id", &seed_.ci_access_projects},
      {"agent_group_authorizations", "group_id", &seed_.ci_access_groups},
      {"agent_user_access_project_authorizations", "project_id",
       &seed_.user_access_projects},
      {"agent_user_access_group_authorizations", "group_id",
       &seed_.user_access_groups}};
    auto agents = seed_.agents_with_authorizations.dump();
    for (const auto& l : lists) {
      std::string table = l.table;
      std::string target = l.target;
      changed("cluster_agents",
              static_cast<std::int64_t>(
                tx_
                  .exec_params(
                    "DELETE FROM " + table
                      + " a WHERE a.agent_id IN (SELECT v::bigint FROM "
                        "jsonb_array_elements_text($1::jsonb) AS v) AND NOT "
                        "EXISTS (SELECT 1 FROM jsonb_to_recordset($2::jsonb) "
                        "AS x(agent_id bigint, target_id bigint) WHERE "
                        "x.agent_id = a.agent_id AND x.target_id = a."
                      + target + ")",
                    agents, l.rows->array())
                  .affected_rows()));
      auto sql = "INSERT INTO " + table + " AS a (agent_id, " + target
        + ", config) SELECT x.agent_id, x.target_id, x.config FROM "
          "jsonb_to_recordset($1::jsonb) AS x(agent_id bigint, target_id "
          "bigint, config jsonb) ON CONFLICT (agent_id, "
        + target
        + ") DO UPDATE SET config = EXCLUDED.config WHERE a.config IS "
          "DISTINCT FROM EXCLUDED.config";
      for (std::size_t begin = 0; begin < l.rows->size();
           begin += rows_per_statement)
        changed("cluster_agents",
                run(sql, l.rows->array(begin, std::min(l.rows->size(),
                                                       begin
                                                         + rows_per_statement))));
    }
  }

  void upsert_namespaces(problem_list& problems) {
    if (!present("namespaces"))
      return;
    report_.upserted["namespaces"]
      = static_cast<std::int64_t>(seed_.namespaces.size());
    // full_path: the full path of the first ancestor outside the document
    // (unchanged by this statement) plus the path chain inside it.
    upsert("namespaces", "namespaces", "(id)",
           {{"id", "bigint"},
            {"parent_id", "bigint"},
            {"path", "text"},
            {"name", "text"},
            {"kind", "text"},
            {"force_pages_access_control", "boolean"},
            {"full_path", "text",
             "coalesce((SELECT r.full_path || '/' FROM namespaces r WHERE "
             "r.id = x.root_parent), '') || x.rel_path"},
            {"root_parent", "bigint", "", false},
            {"rel_path", "text", "", false}},
           1, seed_.namespaces, true);
    // A parent chain may loop through namespaces that only the database
    // holds; the document alone could not see that.
    auto loops = tx_.exec_params(
      "WITH RECURSIVE up (start, id, seen) AS ("
      " SELECT n.id, n.parent_id, ARRAY[n.id] FROM namespaces n"
      "  WHERE n.id IN (SELECT v::bigint FROM"
      "   jsonb_array_elements_text($1::jsonb) AS v)"
      " UNION ALL"
      " SELECT up.start, n.parent_id, up.seen || n.id FROM up"
      "  JOIN namespaces n ON n.id = up.id"
      "  WHERE up.id <> up.start AND n.id <> ALL (up.seen))"
      " SELECT DISTINCT start FROM up WHERE id = start ORDER BY start",
      ids(seed_.namespaces).dump());
    for (const auto& row : loops) {
      auto id = row[0].as<std::int64_t>();
      auto it = seed_.namespace_paths.find(id);
      problems.push_back(
        (it != seed_.namespace_paths.end() ? it->second : "namespaces")
        + ": namespace " + std::to_string(id) + " would be its own ancestor");
    }
    if (!problems.empty() || !changed_.count("namespaces"))
      return;
    // Descendants that the document does not list follow a renamed parent.
    changed("namespaces",
            tx_
              .exec("WITH RECURSIVE tree (id, full_path) AS ("
                    " SELECT id, path FROM namespaces WHERE parent_id IS NULL"
                    " UNION ALL"
                    " SELECT n.id, tree.full_path || '/' || n.path"
                    "  FROM namespaces n JOIN tree ON n.parent_id = tree.id)"
                    " UPDATE namespaces n SET full_path = tree.full_path,"
                    "  updated_at = now() FROM tree WHERE n.id = tree.id"
                    "  AND n.full_path IS DISTINCT FROM tree.full_path")
              .affected_rows());
  }

  void upsert_projects() {
    count("projects", seed_.projects.size());
    upsert("projects", "projects", "(id)",
           {{"id", "bigint"},
            {"namespace_id", "bigint"},
            {"path", "text"},
            {"name", "text"},
            {"description", "text"},
            {"visibility", "text"},
            {"archived", "boolean"},
            {"default_branch", "text"},
            {"storage", "text"},
            {"disk_path", "text"},
            {"repository_access_level", "text"},
            {"merge_requests_enabled", "boolean"},
            {"lfs_enabled", "boolean"},
            {"repository_exists", "boolean"},
            {"forked_from_project_id", "bigint"},
            {"pages_https_only", "boolean"},
            {"pages_access_level", "text"},
            {"pages_unique_domain_enabled", "boolean"},
            {"pages_unique_domain", "text"},
            {"pages_primary_domain", "text"},
            {"pages_multiple_versions_enabled", "boolean"},
            {"full_path", "text",
             "(SELECT n.full_path FROM namespaces n WHERE n.id = "
             "x.namespace_id) || '/' || x.path"}},
           1, seed_.projects);
    if (changed_.count("namespaces"))
      changed("projects",
              tx_
                .exec("UPDATE projects p SET full_path = n.full_path || '/' "
                      "|| p.path, updated_at = now() FROM namespaces n WHERE "
                      "n.id = p.namespace_id AND p.full_path IS DISTINCT "
                      "FROM n.full_path || '/' || p.path")
                .affected_rows());
    upsert("projects", "project_redirects", "((lower(path)))",
           {{"path", "text"}, {"project_id", "bigint"}}, 0, seed_.redirects);
  }

  /// Enables Zoekt for the listed namespaces, after refusing any that is
  /// a sub-group in the database (the parser refused the document's own).
  void upsert_zoekt_enabled_namespaces(problem_list& problems) {
    const auto& rows = seed_.zoekt_enabled_namespaces;
    count("zoekt_enabled_namespaces", rows.size());
    if (rows.empty())
      return;
    auto sub_groups = tx_.exec_params(
      "SELECT x.ord - 1, n.id FROM jsonb_array_elements($1::jsonb) WITH "
      "ORDINALITY AS x(v, ord) JOIN namespaces n ON n.id = "
      "(x.v->>'namespace_id')::bigint WHERE n.parent_id IS NOT NULL ORDER BY "
      "x.ord",
      rows.array());
    for (const auto& row : sub_groups)
      problems.push_back("zoekt_enabled_namespaces["
                         + row[0].as<std::string>() + "].namespace_id: "
                         + zoekt_sub_group_message(row[1].as<std::int64_t>()));
    if (!sub_groups.empty())
      return;
    changed("zoekt_enabled_namespaces",
            run("INSERT INTO zoekt_enabled_namespaces (namespace_id) SELECT "
                "x.namespace_id FROM jsonb_to_recordset($1::jsonb) AS "
                "x(namespace_id bigint) ON CONFLICT (namespace_id) DO NOTHING",
                rows.array()));
  }

  /// settings.broadcast_messages mirrors the broadcast_messages table.
  void sync_broadcast_setting() {
    changed(
      "settings",
      tx_
        .exec("INSERT INTO settings AS s (key, value) SELECT "
              "'broadcast_messages', coalesce(jsonb_agg(jsonb_build_object("
              "'id', id, 'message', message, 'target_path', target_path, "
              "'starts_at', to_char(starts_at AT TIME ZONE 'UTC', "
              "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'ends_at', "
              "to_char(ends_at AT TIME ZONE 'UTC', "
              "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) ORDER BY id), '[]') "
              "FROM broadcast_messages ON CONFLICT (key) DO UPDATE SET "
              "value = EXCLUDED.value, updated_at = now() WHERE s.value "
              "IS DISTINCT FROM EXCLUDED.value")
        .affected_rows());
  }

  /// Tells LISTENers (read models) which kinds changed; delivered on commit.
  /// The read-model tables' rows went unlogged (write_seed): one '*' in
  /// the change log sends every loader to a full load instead.
  void notify() {
    if (changed_.empty())
      return;
    json kinds = json::array();
    bool read_model = false;
    for (const auto& kind : changed_) {
      kinds.push_back(kind);
      read_model = read_model || kind_concerns_read_model(kind);
    }
    if (read_model)
      tx_.exec("INSERT INTO gatehouse_state.read_model_changes (kind) "
               "VALUES ('*')");
    tx_.exec_params("SELECT pg_notify('gatehouse_changes', $1)",
                    json{{"kinds", kinds}}.dump());
  }

private:
  pqxx::work& tx_;
  const parsed_seed& seed_;
  seed_report& report_;
  std::set<std::string> changed_;
};

} // namespace

void write_seed(pqxx::work& tx, const parsed_seed& seed,
                const seed_options& opts, seed_report& report) {
  tx.exec("SET CONSTRAINTS ALL DEFERRED");
  // A seed rewrites whole tables: logging each row for the read models'
  // incremental updates would cost more than the full load it replaces.
  tx.exec("SET LOCAL gatehouse.read_model_bulk = 'on'");
  loader load{tx, seed, report};
  if (opts.prune)
    load.prune_all();
  load.upsert_all(report.problems);
  if (!report.problems.empty()) {
    report.upserted.clear();
    report.pruned.clear();
    return;
  }
  tx.exec("SET CONSTRAINTS ALL IMMEDIATE");
  load.notify();
}

std::string db_message(const std::exception& e) {
  std::string text = e.what();
  if (text.rfind("ERROR:", 0) == 0) {
    text.erase(0, 6);
    text.erase(0, text.find_first_not_of(' '));
  }
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') {
      while (i + 1 < text.size() && text[i + 1] == ' ')
        ++i;
      if (i + 1 < text.size())
        out += "; ";
    } else {
      out += text[i];
    }
  }
  return out;
}

} // namespace gatehouse::storage::seeding
