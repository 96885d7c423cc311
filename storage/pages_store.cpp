#include "storage/pages_store.hpp"

#include <caf/all.hpp>

#include <pqxx/pqxx>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::storage {

namespace {

std::optional<std::string> nullable(const pqxx::field& f) {
  if (f.is_null())
    return std::nullopt;
  return f.as<std::string>();
}

// A PostgreSQL array literal of ids, for `= ANY($1::bigint[])`.
std::string id_array(const std::set<std::int64_t>& ids) {
  std::string out = "{";
  for (auto id : ids)
    out += (out.size() > 1 ? "," : "") + std::to_string(id);
  return out + "}";
}

constexpr const char* project_columns
  = "p.id, p.namespace_id, p.full_path, p.visibility, p.pages_https_only, "
    "p.pages_access_level, p.pages_unique_domain_enabled, "
    "p.pages_unique_domain, p.pages_primary_domain, "
    "p.pages_multiple_versions_enabled";

pages::project_row project_of(const pqxx::row& r) {
  pages::project_row p;
  p.id = r[0].as<std::int64_t>();
  p.namespace_id = r[1].as<std::int64_t>();
  p.full_path = r[2].as<std::string>();
  p.visibility = r[3].as<std::string>();
  p.https_only = r[4].as<bool>();
  p.access_level = r[5].as<std::string>();
  p.unique_domain_enabled = r[6].as<bool>();
  p.unique_domain = nullable(r[7]);
  p.primary_domain = nullable(r[8]);
  p.multiple_versions = r[9].as<bool>();
  return p;
}

constexpr const char* namespace_columns
  = "n.id, n.parent_id, n.path, n.full_path, n.force_pages_access_control";

pages::namespace_row namespace_of(const pqxx::row& r) {
  pages::namespace_row n;
  n.id = r[0].as<std::int64_t>();
  if (!r[1].is_null())
    n.parent_id = r[1].as<std::int64_t>();
  n.path = r[2].as<std::string>();
  n.full_path = r[3].as<std::string>();
  n.force_access_control = r[4].as<bool>();
  return n;
}

std::vector<pages::project_row> projects_where(pqxx::read_transaction& tx,
                                               const std::string& where,
                                               const std::string& arg) {
  std::vector<pages::project_row> out;
  for (const auto& r : tx.exec_params(std::string{"SELECT "} + project_columns
                                        + " FROM projects p WHERE " + where
                                        + " ORDER BY p.id",
                                      arg))
    out.push_back(project_of(r));
  return out;
}

// Fills in the deployments of every project read, and the namespaces from
// each project's namespace up to its root.
void complete(pqxx::read_transaction& tx, pages::rows& out) {
  std::map<std::int64_t, pages::project_row*> projects;
  std::set<std::int64_t> project_ids, namespace_ids;
  for (auto* list :
       {&out.unique_projects, &out.namespace_projects, &out.domain_projects})
    for (auto& p : *list) {
      project_ids.insert(p.id);
      namespace_ids.insert(p.namespace_id);
    }
  if (!project_ids.empty()) {
    std::map<std::int64_t, std::vector<pages::deployment_row>> deployments;
    for (const auto& r : tx.exec_params(
           "SELECT project_id, id, path_prefix, root_directory, source_path, "
           "sha256, file_size, file_count, access_control FROM "
           "pages_deployments WHERE project_id = ANY($1::bigint[]) ORDER BY "
           "project_id, id",
           id_array(project_ids))) {
      pages::deployment_row d;
      d.id = r[1].as<std::int64_t>();
      d.path_prefix = r[2].as<std::string>();
      d.root_directory = r[3].as<std::string>();
      d.source_path = r[4].as<std::string>();
      d.sha256 = r[5].as<std::string>();
      d.file_size = r[6].as<std::int64_t>();
      d.file_count = r[7].as<std::int64_t>();
      d.access_control = r[8].as<bool>();
      deployments[r[0].as<std::int64_t>()].push_back(std::move(d));
    }
    for (auto* list :
         {&out.unique_projects, &out.namespace_projects, &out.domain_projects})
      for (auto& p : *list)
        if (auto it = deployments.find(p.id); it != deployments.end())
          p.deployments = it->second;
  }
  if (out.top_level)
    namespace_ids.insert(out.top_level->id);
  if (namespace_ids.empty())
    return;
  for (const auto& r : tx.exec_params(
         std::string{"WITH RECURSIVE up (id) AS (SELECT unnest($1::bigint[]) "
                     "UNION SELECT n.parent_id FROM namespaces n JOIN up ON "
                     "n.id = up.id WHERE n.parent_id IS NOT NULL) SELECT "}
           + namespace_columns + " FROM namespaces n WHERE n.id IN "
           + "(SELECT id FROM up)",
         id_array(namespace_ids)))
    out.namespaces.push_back(namespace_of(r));
}

pages::rows read_rows(pqxx::connection& c, const pages::rows_query& q) {
  pqxx::read_transaction tx{c, "pages_rows"};
  pages::rows out;
  if (q.unique_domain)
    out.unique_projects
      = projects_where(tx, "lower(p.pages_unique_domain) = $1",
                       *q.unique_domain);
  if (q.top_level_path) {
    auto top = tx.exec_params(std::string{"SELECT "} + namespace_columns
                                + " FROM namespaces n WHERE n.parent_id IS "
                                  "NULL AND lower(n.path) = $1",
                              *q.top_level_path);
    if (!top.empty()) {
      out.top_level = namespace_of(top[0]);
      // Projects anywhere below it, only those with a deployment: a large
      // group's other projects are never read.
      out.namespace_projects = projects_where(
        tx,
        "p.namespace_id IN (WITH RECURSIVE tree (id) AS (SELECT $1::bigint "
        "UNION SELECT n.id FROM namespaces n JOIN tree ON n.parent_id = "
        "tree.id) SELECT id FROM tree) AND EXISTS (SELECT 1 FROM "
        "pages_deployments d WHERE d.project_id = p.id)",
        std::to_string(out.top_level->id));
    }
  }
  if (q.custom_domain) {
    auto domain = tx.exec_params(
      "SELECT id, project_id, domain, enabled, certificate, key FROM "
      "pages_domains WHERE lower(domain) = $1",
      *q.custom_domain);
    if (!domain.empty()) {
      pages::domain_row d;
      d.id = domain[0][0].as<std::int64_t>();
      d.project_id = domain[0][1].as<std::int64_t>();
      d.domain = domain[0][2].as<std::string>();
      d.enabled = domain[0][3].as<bool>();
      d.certificate = nullable(domain[0][4]);
      d.key = nullable(domain[0][5]);
      out.domain_projects
        = projects_where(tx, "p.id = $1", std::to_string(d.project_id));
      out.domain = std::move(d);
    }
  }
  complete(tx, out);
  return out;
}

pages::settings_row read_settings(pqxx::connection& c) {
  pqxx::read_transaction tx{c, "pages_settings"};
  pages::settings_row s;
  // `#>> '{}'` is a JSON scalar's text: a string unquoted, true/false.
  for (const auto& r : tx.exec(
         "SELECT key, value #>> '{}' FROM settings WHERE key IN "
         "('pages_host', 'pages_access_control', "
         "'force_pages_access_control')")) {
    auto key = r[0].as<std::string>();
    auto value = r[1].is_null() ? std::string{} : r[1].as<std::string>();
    if (key == "pages_host")
      s.pages_host = value;
    else if (key == "pages_access_control")
      s.access_control = value == "true";
    else
      s.force_access_control = value == "true";
  }
  return s;
}

} // namespace

pages_store_actor::behavior_type pages_store(
  pages_store_actor::stateful_pointer<pages_store_state> self,
  pages_store_settings settings) {
  self->state.session
    = pg_session{settings.database_url, settings.statement_timeout};
  return {
    [self](pages::settings_query) -> caf::result<pages::settings_row> {
      auto out = self->state.session.run("pages_settings", read_settings);
      if (!out)
        return std::move(out.error());
      return std::move(*out);
    },
    [self](pages::rows_query& q) -> caf::result<pages::rows> {
      auto out = self->state.session.run(
        "pages_rows", [&](pqxx::connection& c) { return read_rows(c, q); });
      if (!out)
        return std::move(out.error());
      return std::move(*out);
    },
  };
}

} // namespace gatehouse::storage
