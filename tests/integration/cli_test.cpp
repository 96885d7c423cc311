#include "tests/integration/stack.hpp"

#include <catch2/catch.hpp>

#include <pqxx/pqxx>

#include <algorithm>
#include <ctime>

using namespace gatehouse;
using namespace gatehouse::test;

namespace {

// The environment of a stack with one variable replaced.
std::map<std::string, std::string> with(std::map<std::string, std::string> env,
                                        const std::string& key,
                                        const std::string& value) {
  env[key] = value;
  return env;
}

int serve_exit_code(const std::map<std::string, std::string>& env,
                    std::string& err) {
  // serve exits at once when start-up fails; a healthy one would be killed.
  return run_cli({"serve"}, env, nullptr, &err);
}

} // namespace

TEST_CASE("migrate applies each file once, however often it runs",
          "[.integration][cli]") {
  stack gh; // migrated once by the constructor
  std::string out;
  REQUIRE(run_cli({"migrate"}, gh.env(), &out) == 0);
  CHECK_THAT(out, Catch::Contains("0 applied"));
  pqxx::connection conn{gh.database_url()};
  pqxx::nontransaction tx{conn};
  auto applied = tx.exec1("SELECT count(*), count(DISTINCT name) FROM "
                          "schema_migrations");
  CHECK(applied[0].as<int>() >= 1);
  CHECK(applied[0].as<int>() == applied[1].as<int>());
}

TEST_CASE("seed reports problems with their JSON paths and changes nothing",
          "[.integration][cli]") {
  stack gh;
  auto path = make_temp_dir("seed") + "/bad.json";
  write_file(path, R"({"users":[{"id":1,"username":"root","name":"R",
    "email":"r@example.com","public_email":"","state":"active","admin":true,
    "external":false,"can_create_project":true,"two_factor_enabled":false}],
    "projects":[{"id":10,"namespace_id":9,"path":"p","name":"P",
    "description":"","visibility":"private","archived":false,
    "default_branch":"main","storage":"default","disk_path":"x",
    "repository_access_level":"enabled","merge_requests_enabled":true,
    "lfs_enabled":true,"repository_exists":true,"redirects":[]}]})");
  std::string err;
  CHECK(run_cli({"seed", path}, gh.env(), nullptr, &err) == 1);
  CHECK_THAT(err, Catch::Contains("projects[0].namespace_id"));
  pqxx::connection conn{gh.database_url()};
  pqxx::nontransaction tx{conn};
  CHECK(tx.exec1("SELECT count(*) FROM users")[0].as<int>() == 0);

  write_file(path, "{not json");
  CHECK(run_cli({"seed", path}, gh.env(), nullptr, &err) == 1);
  CHECK_THAT(err, Catch::Contains("not valid JSON"));
}

TEST_CASE("the demo seed loads, twice", "[.integration][cli]") {
  stack gh;
  auto demo
    = env_or_fail("GATEHOUSE_TEST_SOURCE_DIR") + "/scripts/demo-seed.json";
  std::string err;
  CHECK(run_cli({"seed", demo}, gh.env(), nullptr, &err) == 0);
  INFO(err);
  CHECK(run_cli({"seed", demo}, gh.env(), nullptr, &err) == 0);
}

TEST_CASE("start-up stops with one line on an unusable secret file",
          "[.integration][cli]") {
  stack gh;
  std::string err;
  auto dir = make_temp_dir("badsecret");

  SECTION("unreadable") {
    CHECK(
      serve_exit_code(
        with(gh.env(), "GATEHOUSE_SHELL_SECRET_FILE", dir + "/missing"), err)
      == 2);
    CHECK_THAT(err, Catch::Contains(dir + "/missing"));
  }
  SECTION("a Shell secret that is only whitespace") {
    write_file(dir + "/blank", " \n\t\n");
    CHECK(serve_exit_code(
            with(gh.env(), "GATEHOUSE_SHELL_SECRET_FILE", dir + "/blank"), err)
          == 2);
    CHECK_THAT(err, Catch::Contains("empty"));
  }
  SECTION("a KAS secret that is not base64 of 32 bytes") {
    write_file(dir + "/short", "c2hvcnQ=");
    CHECK(serve_exit_code(
            with(gh.env(), "GATEHOUSE_KAS_SECRET_FILE", dir + "/short"), err)
          == 2);
    CHECK_THAT(err, Catch::Contains("32 bytes"));
  }
  SECTION("a Workhorse secret that is not base64 at all") {
    write_file(dir + "/text", "this is not base64!");
    CHECK(
      serve_exit_code(
        with(gh.env(), "GATEHOUSE_WORKHORSE_SECRET_FILE", dir + "/text"), err)
      == 2);
  }
  // One line for the operator, never the secret's content.
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
  CHECK_THAT(err, !Catch::Contains("this is not base64"));
}

TEST_CASE("a secret file readable by others starts with a warning",
          "[.integration][cli]") {
  stack gh;
  ::chmod(gh.secrets().pages.c_str(), 0644);
  gh.start();
  gh.stop();
  CHECK_THAT(gh.log(), Catch::Contains("readable by other users"));
}

TEST_CASE("an unset secret file disables that caller's routes",
          "[.integration][cli]") {
  stack gh{{}, {}, {{"GATEHOUSE_SHELL_SECRET_FILE", ""}}};
  std::string out;
  // jwt needs the variable; serve runs without it and refuses Shell calls.
  CHECK(run_cli({"jwt", "shell"}, gh.env(), &out) == 1);
  CHECK(run_cli({"jwt", "pages"}, gh.env(), &out) == 0);
  CHECK(std::count(out.begin(), out.end(), '.') == 2);
  gh.start();
  auto key = read_file(gh.secrets().shell);
  key.pop_back();
  auto token = jwt::sign(jwt::caller::shell, key, std::time(nullptr));
  auto res = gh.client().Get("/api/v4/internal/check",
                             {{"Gitlab-Shell-Api-Request", token}});
  REQUIRE(res);
  CHECK(res->status == 401);
  CHECK(res->body == R"({"message":"401 Unauthorized"})");
}

TEST_CASE("the CLI explains its usage", "[.integration][cli]") {
  std::string out, err;
  CHECK(run_cli({"--help"}, {}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("migrate"));
  CHECK_THAT(out, Catch::Contains("seed [--prune] FILE"));
  CHECK(run_cli({"--version"}, {}, &out) == 0);
  CHECK_THAT(out, Catch::StartsWith("gatehouse "));
  CHECK(run_cli({"frobnicate"}, {}, nullptr, &err) == 64);
  CHECK(run_cli({"jwt", "nobody"}, {}, nullptr, &err) == 64);
  CHECK(run_cli({"seed"}, {}, nullptr, &err) == 64);
}
