// GATEHOUSE_* variables added for containers: their defaults, their ranges,
// and a clear error naming the variable for a value that cannot be used.
#include "common/config.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

using namespace gatehouse;

namespace {

/// Sets one variable for the scope of a test (each test case runs in a
/// process of its own under ctest).
struct scoped_env {
  std::string name;
  scoped_env(std::string n, const char* value) : name(std::move(n)) {
    ::setenv(name.c_str(), value, 1);
  }
  ~scoped_env() {
    ::unsetenv(name.c_str());
  }
};

std::string error_of(const char* name, const char* value) {
  scoped_env env{name, value};
  try {
    config_from_env();
  } catch (const config_error& e) {
    return e.what();
  }
  return {};
}

} // namespace

TEST_CASE("the database wait defaults to a minute and takes 0 to a day") {
  ::unsetenv("GATEHOUSE_DATABASE_WAIT_SECONDS");
  CHECK(config_from_env().database_wait == std::chrono::seconds(60));
  {
    scoped_env env{"GATEHOUSE_DATABASE_WAIT_SECONDS", "0"};
    CHECK(config_from_env().database_wait == std::chrono::seconds(0));
  }
  {
    scoped_env env{"GATEHOUSE_DATABASE_WAIT_SECONDS", "86400"};
    CHECK(config_from_env().database_wait == std::chrono::seconds(86400));
  }
  for (const char* bad : {"-1", "86401", "1m", "5s"})
    CHECK_THAT(error_of("GATEHOUSE_DATABASE_WAIT_SECONDS", bad),
               Catch::StartsWith("GATEHOUSE_DATABASE_WAIT_SECONDS: "));
}

TEST_CASE("the webhooks heartbeat file is off by default and must be an "
          "absolute path") {
  ::unsetenv("GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE");
  CHECK(config_from_env().webhooks_heartbeat_file.empty());
  {
    scoped_env env{"GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE", "/tmp/beat"};
    CHECK(config_from_env().webhooks_heartbeat_file == "/tmp/beat");
  }
  CHECK_THAT(error_of("GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE", "tmp/beat"),
             Catch::StartsWith("GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE: "));
}
