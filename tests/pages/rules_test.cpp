// The rules of GitLab Pages' host lookup (actors/pages/rules.hpp) over
// hand-made rows: GitLab's VirtualHostFinder, VirtualDomain and LookupPath
// specs, without a database (contract other-callers §3).

#include "actors/pages/rules.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace gatehouse::pages;

namespace {

settings_row settings(bool access_control = false) {
  settings_row s;
  s.pages_host = "Pages.Example.COM";
  s.access_control = access_control;
  return s;
}

deployment_row deployment(std::int64_t id, std::string prefix = "") {
  deployment_row d;
  d.id = id;
  d.path_prefix = std::move(prefix);
  d.root_directory = "public";
  d.source_path = "file:///p/" + std::to_string(id) + ".zip";
  return d;
}

project_row project(std::int64_t id, std::int64_t ns, std::string full_path) {
  project_row p;
  p.id = id;
  p.namespace_id = ns;
  p.full_path = std::move(full_path);
  p.visibility = "private";
  p.access_level = "enabled";
  p.deployments = {deployment(id * 10)};
  return p;
}

namespace_row group(std::int64_t id, std::string path,
                    std::optional<std::int64_t> parent = std::nullopt,
                    std::string full_path = {}) {
  namespace_row n;
  n.id = id;
  n.parent_id = parent;
  n.path = path;
  n.full_path = full_path.empty() ? path : full_path;
  return n;
}

rows namespace_rows() {
  rows r;
  r.top_level = group(1, "mygroup");
  r.namespaces = {group(1, "mygroup"), group(2, "sub", 1, "mygroup/sub")};
  r.namespace_projects = {project(5, 1, "mygroup/myproject"),
                          project(6, 2, "mygroup/sub/deep"),
                          project(7, 1, "mygroup/mygroup.pages.example.com")};
  return r;
}

} // namespace

TEST_CASE("§3.1 hosts below the pages host read a unique domain and a "
          "namespace, others a custom domain") {
  auto below = keys_for("mygroup.pages.example.com", settings());
  REQUIRE(below);
  CHECK(below->unique_domain == "mygroup");
  CHECK(below->top_level_path == "mygroup");
  CHECK_FALSE(below->custom_domain);
  auto custom = keys_for("docs.example.org", settings());
  REQUIRE(custom);
  CHECK(custom->custom_domain == "docs.example.org");
  CHECK_FALSE(custom->unique_domain);
  // The pages host itself is looked up as a custom domain, as in GitLab.
  CHECK(keys_for("pages.example.com", settings())->custom_domain);
  CHECK_FALSE(keys_for("", settings()));
  CHECK_FALSE(keys_for(".pages.example.com", settings()));
  CHECK_FALSE(keys_for(std::string(256, 'a'), settings()));
  settings_row none;
  CHECK(keys_for("a.pages.example.com", none)->custom_domain);
}

TEST_CASE("§3.2 namespace domain prefixes trim the namespace") {
  auto d = resolve("mygroup.pages.example.com", settings(), namespace_rows());
  REQUIRE(d.found);
  CHECK(d.root_namespace_id == 1);
  REQUIRE(d.lookup_paths.size() == 3);
  // Longest prefix first.
  CHECK(d.lookup_paths[0].prefix == "/myproject/");
  CHECK(d.lookup_paths[1].prefix == "/sub/deep/");
  CHECK(d.lookup_paths[2].prefix == "/");
  CHECK(d.lookup_paths[2].project_id == 7);
  CHECK(d.lookup_paths[0].source.global_id == "gid://gitlab/PagesDeployment/50");
  CHECK_FALSE(d.certificate);
}

TEST_CASE("§3.2 LookupPath prefix table with path prefixes") {
  auto r = namespace_rows();
  r.namespace_projects = {project(5, 1, "mygroup/myproject")};
  r.namespace_projects[0].multiple_versions = true;
  r.namespace_projects[0].deployments.push_back(deployment(51, "PREFIX"));
  auto d = resolve("mygroup.pages.example.com", settings(), r);
  REQUIRE(d.lookup_paths.size() == 2);
  CHECK(d.lookup_paths[0].prefix == "/myproject/PREFIX/");
  CHECK(d.lookup_paths[1].prefix == "/myproject/");

  // Without multiple versions only the main deployment is served.
  r.namespace_projects[0].multiple_versions = false;
  d = resolve("mygroup.pages.example.com", settings(), r);
  REQUIRE(d.lookup_paths.size() == 1);
  CHECK(d.lookup_paths[0].prefix == "/myproject/");
}

TEST_CASE("§3.1 custom domains: enabled, deployed, TLS pair, https_only") {
  rows r;
  r.domain = domain_row{1, 5, "Pages.IO", true, std::string{"cert"},
                        std::string{"key"}};
  r.domain_projects = {project(5, 1, "mygroup/myproject")};
  r.domain_projects[0].unique_domain_enabled = true;
  r.domain_projects[0].unique_domain = "uniq";
  r.namespaces = {group(1, "mygroup")};
  auto d = resolve("pages.io", settings(), r);
  REQUIRE(d.found);
  CHECK(d.certificate == "cert");
  CHECK(d.root_namespace_id == 1);
  REQUIRE(d.lookup_paths.size() == 1);
  CHECK(d.lookup_paths[0].prefix == "/");
  CHECK(d.lookup_paths[0].https_only);
  CHECK_FALSE(d.lookup_paths[0].unique_host); // never on a custom domain

  auto no_key = r;
  no_key.domain->key.reset();
  CHECK_FALSE(resolve("pages.io", settings(), no_key).lookup_paths[0].https_only);
  auto disabled = r;
  disabled.domain->enabled = false;
  CHECK_FALSE(resolve("pages.io", settings(), disabled).found);
  auto undeployed = r;
  undeployed.domain_projects[0].deployments.clear();
  CHECK_FALSE(resolve("pages.io", settings(), undeployed).found);
}

TEST_CASE("§3.1 a unique domain wins over the namespace, a disabled one falls back") {
  auto r = namespace_rows();
  auto p = project(9, 2, "mygroup/sub/site");
  p.unique_domain_enabled = true;
  p.unique_domain = "mygroup";
  r.unique_projects = {p};
  auto d = resolve("mygroup.pages.example.com", settings(), r);
  REQUIRE(d.lookup_paths.size() == 1);
  CHECK(d.lookup_paths[0].project_id == 9);
  CHECK(d.lookup_paths[0].prefix == "/");
  CHECK(d.lookup_paths[0].unique_host == "mygroup.pages.example.com");
  CHECK(d.root_namespace_id == 1);

  r.unique_projects[0].unique_domain_enabled = false;
  CHECK(resolve("mygroup.pages.example.com", settings(), r).lookup_paths.size()
        == 3);
}

TEST_CASE("§3.2 access control: switch, levels, visibility, group force") {
  auto r = namespace_rows();
  r.namespace_projects = {project(5, 1, "mygroup/a"), project(6, 2, "mygroup/sub/b")};
  r.namespace_projects[0].visibility = "public";
  auto at = [&](const settings_row& s) {
    auto d = resolve("mygroup.pages.example.com", s, r);
    std::map<std::int64_t, bool> out;
    for (auto& p : d.lookup_paths)
      out[p.project_id] = p.access_control;
    return out;
  };
  CHECK(at(settings(false)) == std::map<std::int64_t, bool>{{5, false}, {6, false}});
  CHECK(at(settings(true)) == std::map<std::int64_t, bool>{{5, false}, {6, true}});
  r.namespace_projects[0].access_level = "private";
  CHECK(at(settings(true))[5]);
  r.namespace_projects[0].access_level = "public";
  r.namespaces[0].force_access_control = true; // the top group forces it
  CHECK(at(settings(true))[5]);
  r.namespaces[0].force_access_control = false;
  auto forced = settings(true);
  forced.force_access_control = true;
  CHECK(at(forced)[5]);
}
