// GitLab Pages' calls end to end (contract other-callers §1.1, §1.3, §3,
// §15: the cases of GitLab's spec/requests/api/internal/pages_spec.rb): the
// real `gatehouse serve` against PostgreSQL, seeded through the CLI. Every
// 200 is checked against the schemas' exact key sets and JSON types.

#include "common/base64.hpp"
#include "common/jwt.hpp"
#include "tests/integration/stack.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <cctype>
#include <ctime>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using json = nlohmann::json;

namespace {

const char* const pages_host = "pages.example.com";

json deployment(int id, int project, const std::string& prefix = "") {
  return {{"id", id},
          {"project_id", project},
          {"path_prefix", prefix},
          {"source_path", "file:///var/pages/" + std::to_string(id) + ".zip"},
          {"sha256", std::string(64, 'a' + id % 6)},
          {"file_size", 1000 + id},
          {"file_count", 10 + id}};
}

json project(int id, int ns, const std::string& path, json extra = json::object()) {
  json p = {{"id", id}, {"namespace_id", ns}, {"path", path}};
  p.update(extra);
  return p;
}

// The document every case reads. Namespaces: acme (1) > sub (2); empty (4);
// locked (6, forces access control) > inner (7); clash (8); bare (9, no
// deployment).
json seed_document() {
  json projects = json::array({
    project(10, 1, "myproject"),
    project(11, 1, "acme.pages.example.com"), // the group's homepage
    project(12, 2, "subproject"),
    project(13, 1, "nopages"),
    project(14, 1, "uniq",
            {{"pages_unique_domain_enabled", true},
             {"pages_unique_domain", "uniq-abc123"},
             {"pages_primary_domain", "https://docs.example.org"}}),
    project(15, 1, "uniqoff",
            {{"pages_unique_domain_enabled", false},
             {"pages_unique_domain", "uniq-off"}}),
    project(16, 1, "custom"),
    project(17, 1, "plain"),
    project(18, 1, "undeployed"),
    project(19, 1, "disabled"),
    project(20, 1, "versions", {{"pages_multiple_versions_enabled", true}}),
    project(21, 1, "single"),
    project(22, 1, "private", {{"pages_access_level", "private"}}),
    project(23, 1, "publicpages", {{"visibility", "public"}}),
    project(24, 7, "site"),
    project(25, 1, "https-off", {{"pages_https_only", false}}),
    project(26, 8, "site"),
    project(27, 4, "winner",
            {{"pages_unique_domain_enabled", true},
             {"pages_unique_domain", "clash"}}),
    project(28, 9, "undeployed"),
  });
  json deployments = json::array();
  for (int p : {10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27})
    deployments.push_back(deployment(100 + p, p));
  deployments.push_back(deployment(200, 20, "v2"));
  deployments.push_back(deployment(201, 21, "beta"));
  return {
    {"settings", {{"pages_host", pages_host}}},
    {"storages", json::array({{{"name", "default"}, {"gitaly_address", "unix:/tmp/gitaly.socket"}}})},
    {"namespaces",
     json::array({{{"id", 1}, {"path", "acme"}, {"name", "Acme"}},
                  {{"id", 2}, {"path", "sub"}, {"name", "Sub"}, {"parent_id", 1}},
                  {{"id", 4}, {"path", "empty"}, {"name", "Empty"}},
                  {{"id", 6},
                   {"path", "locked"},
                   {"name", "Locked"},
                   {"force_pages_access_control", true}},
                  {{"id", 7}, {"path", "inner"}, {"name", "Inner"}, {"parent_id", 6}},
                  {{"id", 8}, {"path", "clash"}, {"name", "Clash"}},
                  {{"id", 9}, {"path", "bare"}, {"name", "Bare"}}})},
    {"projects", projects},
    {"pages_domains",
     json::array({{{"id", 1},
                   {"project_id", 16},
                   {"domain", "docs.example.org"},
                   {"certificate", "-----BEGIN CERTIFICATE-----\nc\n"},
                   {"key", "-----BEGIN PRIVATE KEY-----\nk\n"}},
                  {{"id", 2}, {"project_id", 17}, {"domain", "plain.example.org"}},
                  {{"id", 3}, {"project_id", 18}, {"domain", "nodeploy.example.org"}},
                  {{"id", 4},
                   {"project_id", 19},
                   {"domain", "off.example.org"},
                   {"enabled", false}}})},
    {"pages_deployments", deployments},
  };
}

// One served Gatehouse for every case: settings are read per request, so a
// case that changes them re-seeds them and puts them back.
stack& shared() {
  static std::unique_ptr<stack> gh = [] {
    auto s = std::make_unique<stack>();
    s->seed(seed_document());
    s->start();
    return s;
  }();
  return *gh;
}

std::string pages_token(const stack& gh) {
  auto key = base64_decode(read_file(gh.secrets().pages));
  REQUIRE(key);
  return jwt::sign(jwt::caller::pages, *key, std::time(nullptr));
}

reply get(const std::string& target, bool signed_ = true) {
  auto& gh = shared();
  httplib::Headers headers;
  if (signed_)
    headers.emplace("Gitlab-Pages-Api-Request", pages_token(gh));
  return make_reply(gh.client().Get(target.c_str(), headers));
}

reply lookup(const std::string& host) {
  std::string query;
  for (unsigned char c : host) {
    if (std::isalnum(c) || c == '.' || c == '-' || c == '_') {
      query += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789ABCDEF";
      query += '%';
      query += hex[c >> 4];
      query += hex[c & 15];
    }
  }
  return get("/api/v4/internal/pages?host=" + query);
}

void check_no_content(const reply& r) {
  CHECK(r.status == 204);
  CHECK(r.body.empty());
  CHECK(r.content_type.empty());
}

std::set<std::string> keys_of(const json& object) {
  std::set<std::string> out;
  for (const auto& item : object.items())
    out.insert(item.key());
  return out;
}

bool string_or_null(const json& v) {
  return v.is_string() || v.is_null();
}

// virtual_domain.json and lookup_path.json (additionalProperties: false),
// plus the newer root_namespace_id.
void check_schema(const json& d) {
  REQUIRE(d.is_object());
  CHECK(keys_of(d)
        == std::set<std::string>{"certificate", "key", "root_namespace_id",
                                 "lookup_paths"});
  CHECK(string_or_null(d["certificate"]));
  CHECK(string_or_null(d["key"]));
  CHECK(d["root_namespace_id"].is_number_integer());
  REQUIRE(d["lookup_paths"].is_array());
  for (const auto& p : d["lookup_paths"]) {
    CHECK(keys_of(p)
          == std::set<std::string>{"access_control", "https_only", "prefix",
                                   "project_id", "source", "unique_host",
                                   "root_directory", "primary_domain"});
    CHECK(p["project_id"].is_number_integer());
    CHECK(p["access_control"].is_boolean());
    CHECK(p["https_only"].is_boolean());
    CHECK(p["prefix"].is_string());
    CHECK(string_or_null(p["unique_host"]));
    CHECK(p["root_directory"].is_string());
    CHECK(string_or_null(p["primary_domain"]));
    const auto& s = p["source"];
    REQUIRE(s.is_object());
    CHECK(keys_of(s)
          == std::set<std::string>{"type", "path", "global_id", "sha256",
                                   "file_size", "file_count"});
    CHECK(s["type"] == "zip");
    CHECK(s["path"].is_string());
    CHECK(s["global_id"].is_string());
    CHECK(s["sha256"].is_string());
    CHECK(s["file_size"].is_number_integer());
    CHECK((s["file_count"].is_number_integer() || s["file_count"].is_null()));
  }
}

// The 200 answer of `host`, checked against the schema.
json domain(const std::string& host) {
  auto r = lookup(host);
  INFO(host << ": " << r.status << " " << r.body);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  check_schema(r.j);
  return r.j;
}

// The lookup path of `project` in `d`.
json path_of(const json& d, int project) {
  for (const auto& p : d["lookup_paths"])
    if (p["project_id"] == project)
      return p;
  FAIL("no lookup path for project " << project << " in " << d.dump());
  return {};
}

std::vector<std::string> prefixes(const json& d) {
  std::vector<std::string> out;
  for (const auto& p : d["lookup_paths"])
    out.push_back(p["prefix"]);
  return out;
}

} // namespace

TEST_CASE("§1.1 §1.3 §3.1 Pages calls need the Pages JWT",
          "[.integration][pages]") {
  auto& gh = shared();
  const std::string unauthorized = R"({"message":"401 Unauthorized"})";
  for (const char* target : {"/api/v4/internal/pages/status",
                             "/api/v4/internal/pages",
                             "/api/v4/internal/pages?host=acme.pages.example.com"}) {
    INFO(target);
    auto none = get(target, false);
    CHECK(none.status == 401);
    CHECK(none.body == unauthorized);
    // Signed with another caller's secret, or wrong issuer: refused too.
    auto shell = make_reply(gh.client().Get(
      target, {{"Gitlab-Pages-Api-Request", gh.shell_token()}}));
    CHECK(shell.status == 401);
    CHECK(shell.body == unauthorized);
  }
}

TEST_CASE("§3.1 /pages/status answers 204 with an empty body",
          "[.integration][pages]") {
  check_no_content(get("/api/v4/internal/pages/status"));
}

TEST_CASE("§1.3 §3.1 a missing host is Grape's 400, after the JWT check",
          "[.integration][pages]") {
  auto r = get("/api/v4/internal/pages");
  CHECK(r.status == 400);
  CHECK(r.body == R"({"error":"host is missing"})");
  auto invalid = get("/api/v4/internal/pages?host[]=a");
  CHECK(invalid.status == 400);
  CHECK(invalid.body == R"({"error":"host is invalid"})");
}

TEST_CASE("§3.1 §15 hosts that name no domain answer 204 with an empty body",
          "[.integration][pages]") {
  SECTION("unknown host") { check_no_content(lookup("any-domain.gitlab.io")); }
  SECTION("empty host") { check_no_content(get("/api/v4/internal/pages?host=")); }
  SECTION("longer than DNS allows") {
    check_no_content(lookup(std::string(300, 'a') + ".pages.example.com"));
  }
  SECTION("custom domain without a deployment") {
    check_no_content(lookup("nodeploy.example.org"));
  }
  SECTION("disabled custom domain") { check_no_content(lookup("off.example.org")); }
  SECTION("disabled unique domain, no namespace of that name") {
    check_no_content(lookup("uniq-off.pages.example.com"));
  }
  SECTION("a name below a sub-domain of the pages host is no namespace") {
    check_no_content(lookup("sub.acme.pages.example.com"));
  }
  SECTION("the pages host itself is no custom domain") {
    check_no_content(lookup(pages_host));
  }
}

TEST_CASE("§3.1 §3.2 a custom domain answers its project and TLS pair",
          "[.integration][pages]") {
  auto d = domain("docs.example.org");
  CHECK(d["certificate"] == "-----BEGIN CERTIFICATE-----\nc\n");
  CHECK(d["key"] == "-----BEGIN PRIVATE KEY-----\nk\n");
  CHECK(d["root_namespace_id"] == 1);
  REQUIRE(d["lookup_paths"].size() == 1);
  CHECK(d["lookup_paths"][0]
        == json{{"access_control", false},
                {"https_only", true}, // a certificate, and GitLab's default
                {"prefix", "/"},
                {"project_id", 16},
                {"source",
                 {{"type", "zip"},
                  {"path", "file:///var/pages/116.zip"},
                  {"global_id", "gid://gitlab/PagesDeployment/116"},
                  {"sha256", std::string(64, 'a' + 116 % 6)},
                  {"file_size", 1116},
                  {"file_count", 126}}},
                {"unique_host", nullptr},
                {"root_directory", "public"},
                {"primary_domain", nullptr}});

  SECTION("§15 the host is matched case-insensitively") {
    CHECK(domain("Docs.EXAMPLE.org") == d);
  }
  SECTION("keys come in GitLab's entity order") {
    auto body = lookup("docs.example.org").body;
    CHECK(body.find("\"certificate\"") < body.find("\"key\""));
    CHECK(body.find("\"root_namespace_id\"") < body.find("\"lookup_paths\""));
    CHECK(body.find("\"access_control\"") < body.find("\"primary_domain\""));
  }
  SECTION("without a certificate https_only is false") {
    auto plain = domain("plain.example.org");
    CHECK(plain["certificate"].is_null());
    CHECK(plain["key"].is_null());
    CHECK(path_of(plain, 17)["https_only"] == false);
  }
}

TEST_CASE("§3.1 §15 a namespace domain serves every project below it",
          "[.integration][pages]") {
  auto d = domain("acme.pages.example.com");
  CHECK(d["certificate"].is_null());
  CHECK(d["key"].is_null());
  CHECK(d["root_namespace_id"] == 1);
  SECTION("prefixes: /<project>/, sub-groups, the group root at /") {
    CHECK(path_of(d, 10)["prefix"] == "/myproject/");
    CHECK(path_of(d, 11)["prefix"] == "/");
    CHECK(path_of(d, 12)["prefix"] == "/sub/subproject/");
    CHECK(path_of(d, 10)["unique_host"].is_null());
    CHECK(path_of(d, 10)["root_directory"] == "public");
    CHECK(path_of(d, 10)["https_only"] == true);
    CHECK(path_of(d, 25)["https_only"] == false);
  }
  SECTION("projects without a deployment are left out") {
    for (const auto& p : d["lookup_paths"])
      CHECK(p["project_id"] != 13);
  }
  SECTION("multiple versions: every prefix; otherwise the main one only") {
    CHECK(path_of(d, 21)["prefix"] == "/single/");
    std::set<std::string> versions;
    for (const auto& p : d["lookup_paths"])
      if (p["project_id"] == 20)
        versions.insert(p["prefix"].get<std::string>());
    CHECK(versions == std::set<std::string>{"/versions/", "/versions/v2/"});
    for (const auto& p : d["lookup_paths"])
      if (p["project_id"] == 21)
        CHECK(p["prefix"] == "/single/");
  }
  SECTION("a unique domain project keeps its unique host here") {
    CHECK(path_of(d, 14)["unique_host"] == "uniq-abc123.pages.example.com");
  }
  SECTION("longest prefix first, a fixed order") {
    auto list = prefixes(d);
    for (std::size_t i = 1; i < list.size(); ++i)
      CHECK(list[i - 1].size() >= list[i].size());
    CHECK(list.back() == "/");
    CHECK(domain("acme.pages.example.com") == d);
  }
  SECTION("the namespace is matched case-insensitively") {
    CHECK(domain("ACME.Pages.Example.COM") == d);
  }
  SECTION("a namespace without pages projects: 200 and no lookup paths") {
    auto bare = domain("bare.pages.example.com");
    CHECK(bare["lookup_paths"] == json::array());
    CHECK(bare["root_namespace_id"] == 9);
  }
  SECTION("a sub-group is no namespace domain") {
    check_no_content(lookup("sub.pages.example.com"));
  }
}

TEST_CASE("§3.1 a unique domain serves its project at /",
          "[.integration][pages]") {
  auto d = domain("uniq-abc123.pages.example.com");
  CHECK(d["certificate"].is_null());
  CHECK(d["root_namespace_id"] == 1);
  REQUIRE(d["lookup_paths"].size() == 1);
  auto p = d["lookup_paths"][0];
  CHECK(p["project_id"] == 14);
  CHECK(p["prefix"] == "/");
  CHECK(p["unique_host"] == "uniq-abc123.pages.example.com");
  CHECK(p["primary_domain"] == "https://docs.example.org");
  CHECK(p["root_directory"] == "public");
  CHECK(domain("Uniq-ABC123.pages.example.com") == d);

  SECTION("a unique domain wins over a namespace of the same name") {
    auto clash = domain("clash.pages.example.com");
    REQUIRE(clash["lookup_paths"].size() == 1);
    CHECK(clash["lookup_paths"][0]["project_id"] == 27);
    CHECK(clash["root_namespace_id"] == 4);
  }
}

TEST_CASE("§3.2 access_control follows GitLab's switches and levels",
          "[.integration][pages]") {
  auto& gh = shared();
  auto set = [&](bool on, bool force) {
    gh.seed({{"settings",
              {{"pages_access_control", on},
               {"force_pages_access_control", force}}}});
  };
  auto access = [](const json& d, int project) {
    return path_of(d, project)["access_control"].get<bool>();
  };

  set(false, false);
  auto off = domain("acme.pages.example.com");
  CHECK_FALSE(access(off, 22)); // private pages, but the switch is off
  CHECK_FALSE(access(off, 10));
  CHECK_FALSE(access(domain("locked.pages.example.com"), 24));

  set(true, false);
  auto on = domain("acme.pages.example.com");
  CHECK(access(on, 22));        // pages_access_level private
  CHECK(access(on, 10));        // enabled in a private project
  CHECK_FALSE(access(on, 23));  // enabled in a public project
  CHECK(access(domain("locked.pages.example.com"), 24)); // group forces it
  CHECK(path_of(domain("docs.example.org"), 16)["access_control"] == true);

  set(true, true);
  CHECK(access(domain("acme.pages.example.com"), 23)); // instance forces it

  set(false, true); // forcing without the switch does nothing
  CHECK_FALSE(access(domain("acme.pages.example.com"), 22));
  set(false, false);
}

TEST_CASE("§3 seed fields are validated with JSON paths",
          "[.integration][pages]") {
  auto& gh = shared();
  auto path = make_temp_dir("pages-seed") + "/bad.json";
  write_file(path,
             json{{"namespaces",
                   json::array({{{"id", 1},
                                 {"path", "acme"},
                                 {"force_pages_access_control", "yes"}}})},
                  {"projects",
                   json::array({project(10, 1, "myproject",
                                        {{"pages_access_level", "open"},
                                         {"pages_unique_domain_enabled", true}}),
                                project(11, 1, "other",
                                        {{"pages_unique_domain", "a.b"},
                                         {"pages_primary_domain", "docs"}}),
                                project(12, 1, "third",
                                        {{"pages_unique_domain", "UNIQ-abc123"}}),
                                project(13, 1, "fourth",
                                        {{"pages_unique_domain", "uniq-abc123"}})})}}
               .dump());
  std::string out, err;
  CHECK(run_cli({"seed", path}, gh.env(), &out, &err) != 0);
  INFO(err);
  for (const char* expected :
       {"namespaces[0].force_pages_access_control: must be true or false",
        "projects[0].pages_access_level: must be one of enabled, private, "
        "public, disabled",
        "projects[0].pages_unique_domain_enabled: needs a "
        "pages_unique_domain",
        "projects[1].pages_unique_domain: must be a DNS label",
        "projects[1].pages_primary_domain: must be an http:// or https:// URL",
        "projects[3].pages_unique_domain: unique domain \"uniq-abc123\" is "
        "also used by projects[2]"})
    CHECK_THAT(err + out, Catch::Contains(expected));
}

TEST_CASE("§3 seed --prune removes Pages rows the document no longer lists",
          "[.integration][pages]") {
  stack gh;
  gh.seed(seed_document());
  gh.start();
  auto fetch = [&](const std::string& host) {
    auto key = base64_decode(read_file(gh.secrets().pages));
    REQUIRE(key);
    return make_reply(gh.client().Get(
      ("/api/v4/internal/pages?host=" + host).c_str(),
      {{"Gitlab-Pages-Api-Request",
        jwt::sign(jwt::caller::pages, *key, std::time(nullptr))}}));
  };
  REQUIRE(fetch("docs.example.org").status == 200);

  auto doc = seed_document();
  doc["pages_domains"].erase(0); // docs.example.org
  auto& deployments = doc["pages_deployments"];
  for (auto it = deployments.begin(); it != deployments.end(); ++it)
    if ((*it)["project_id"] == 10) {
      deployments.erase(it);
      break;
    }
  auto path = make_temp_dir("pages-prune") + "/seed.json";
  write_file(path, doc.dump());
  std::string out, err;
  INFO(out << err);
  REQUIRE(run_cli({"seed", "--prune", path}, gh.env(), &out, &err) == 0);
  check_no_content(fetch("docs.example.org"));
  auto acme = fetch("acme.pages.example.com");
  REQUIRE(acme.status == 200);
  for (const auto& p : acme.j["lookup_paths"])
    CHECK(p["project_id"] != 10);
  // The same document again changes nothing and still succeeds.
  REQUIRE(run_cli({"seed", "--prune", path}, gh.env(), &out, &err) == 0);
  CHECK(fetch("acme.pages.example.com").j == acme.j);
}

TEST_CASE("§3 migration 009_pages is harmless when run again",
          "[.integration][pages]") {
  // As a database image's init directory might run it before migrate does.
  auto& gh = shared();
  auto sql = read_file(env_or_fail("GATEHOUSE_TEST_SOURCE_DIR")
                       + "/storage/schema/009_pages.sql");
  REQUIRE_FALSE(sql.empty());
  pqxx::connection conn{gh.env().at("GATEHOUSE_DATABASE_URL")};
  for (int run = 0; run < 2; ++run) {
    pqxx::work tx{conn};
    CHECK_NOTHROW(tx.exec(sql));
    tx.commit();
  }
  // The rows are untouched: the lookups answer as before.
  CHECK(domain("docs.example.org")["lookup_paths"].size() == 1);
}
