#include "common/base64.hpp"
#include "common/secrets.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>

using namespace gatehouse;
using jwt::caller;

namespace {

// A fresh directory per test case, removed afterwards.
struct temp_dir {
  std::string path;

  temp_dir() {
    std::string tmpl = "/tmp/gatehouse-secrets-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }

  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }

  // Writes `content` to `name` with `mode`; returns the full path.
  std::string file(const std::string& name, const std::string& content,
                   mode_t mode = 0600) const {
    auto full = path + "/" + name;
    std::ofstream(full, std::ios::binary) << content;
    REQUIRE(::chmod(full.c_str(), mode) == 0);
    return full;
  }
};

// What() of the secret_error thrown by load_secret, or "" if none.
std::string load_error(caller who, const std::string& path) {
  try {
    load_secret(who, path);
  } catch (const secret_error& e) {
    return e.what();
  }
  return "";
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

} // namespace

TEST_CASE("shell secrets are trimmed of surrounding whitespace",
          "[unit][secrets]") {
  temp_dir dir;
  auto s = load_secret(caller::shell,
                       dir.file("shell", " \t0123456789abcdef \n\r\n"));
  CHECK(s.key == "0123456789abcdef");
  CHECK_FALSE(s.warning);
  // Inner whitespace is part of the key; no format rules.
  CHECK(load_secret(caller::shell, dir.file("inner", "a b\nc\n")).key
        == "a b\nc");
}

TEST_CASE("an empty shell secret is an error", "[unit][secrets]") {
  temp_dir dir;
  auto empty = dir.file("empty", "");
  CHECK(load_error(caller::shell, empty) == empty + ": shell secret is empty");
  auto blank = dir.file("blank", " \n\t\r\n");
  CHECK(load_error(caller::shell, blank) == blank + ": shell secret is empty");
}

TEST_CASE("base64 secrets must decode to exactly 32 bytes", "[unit][secrets]") {
  temp_dir dir;
  auto bytes = random_bytes(32);
  auto text = base64_encode(bytes);
  for (auto who : {caller::workhorse, caller::kas, caller::pages}) {
    INFO(jwt::to_string(who));
    CHECK(load_secret(who, dir.file("plain", text)).key == bytes);
    CHECK(load_secret(who, dir.file("lf", text + "\n")).key == bytes);
    CHECK(load_secret(who, dir.file("crlf", text + "\r\n")).key == bytes);

    auto short_file = dir.file("short", base64_encode(random_bytes(31)) + "\n");
    CHECK(load_error(who, short_file)
          == short_file
            + ": must be base64 of exactly 32 bytes (got 31 bytes)");
    auto long_file = dir.file("long", base64_encode(random_bytes(33)));
    CHECK(load_error(who, long_file)
          == long_file + ": must be base64 of exactly 32 bytes (got 33 bytes)");
    auto empty = dir.file("empty", "");
    CHECK(load_error(who, empty)
          == empty + ": must be base64 of exactly 32 bytes (got 0 bytes)");

    // Only one line ending is tolerated, and no other whitespace.
    for (auto bad :
         {text + "\n\n", " " + text, text + " \n",
          text.substr(0, 20) + "\n" + text.substr(20), "-" + text.substr(1),
          std::string(44, '*'), text.substr(0, 43) + "=="}) {
      auto path = dir.file("bad", bad);
      auto error = load_error(who, path);
      CHECK(error.rfind(path + ": must be base64 of exactly 32 bytes", 0) == 0);
      CHECK(error.find(text.substr(0, 8)) == std::string::npos);
    }
  }
}

TEST_CASE("error messages never contain the secret", "[unit][secrets]") {
  temp_dir dir;
  auto path = dir.file("bad", "very-secret-value!");
  auto error = load_error(caller::pages, path);
  CHECK_FALSE(error.empty());
  CHECK(error.find("very-secret") == std::string::npos);
}

TEST_CASE("an unreadable secret file is an error", "[unit][secrets]") {
  temp_dir dir;
  auto missing = dir.path + "/missing";
  for (auto who :
       {caller::shell, caller::workhorse, caller::kas, caller::pages}) {
    INFO(jwt::to_string(who));
    CHECK(load_error(who, missing)
          == missing + ": cannot read: No such file or directory");
    CHECK(load_error(who, dir.path)
          == dir.path + ": cannot read: Is a directory");
  }
}

TEST_CASE("a secret readable by others loads with a warning",
          "[unit][secrets]") {
  temp_dir dir;
  auto shell = dir.file("shell", "abc\n", 0644);
  auto s = load_secret(caller::shell, shell);
  CHECK(s.key == "abc");
  REQUIRE(s.warning);
  CHECK(*s.warning == shell + " is readable by other users; chmod 600 it");

  auto kas = dir.file("kas", base64_encode(random_bytes(32)), 0640);
  CHECK(load_secret(caller::kas, kas).warning);
  auto owner_only = dir.file("owner", base64_encode(random_bytes(32)), 0400);
  CHECK_FALSE(load_secret(caller::kas, owner_only).warning);
}

TEST_CASE("create_secret_file writes a loadable 0600 secret once",
          "[unit][secrets]") {
  temp_dir dir;
  for (auto who :
       {caller::shell, caller::workhorse, caller::kas, caller::pages}) {
    INFO(jwt::to_string(who));
    auto path = dir.path + "/" + jwt::to_string(who);
    REQUIRE(create_secret_file(who, path));
    CHECK(mode_of(path) == 0600);
    std::ifstream in(path, std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(in)),
                        std::istreambuf_iterator<char>());
    auto loaded = load_secret(who, path);
    CHECK_FALSE(loaded.warning);
    if (who == caller::shell) {
      CHECK(content.size() == 32);
      CHECK(content.find_first_not_of("0123456789abcdef") == std::string::npos);
      CHECK(loaded.key == content);
    } else {
      CHECK(content.size() == 44);
      CHECK(loaded.key.size() == 32);
    }
    // A second call leaves the existing file alone.
    CHECK_FALSE(create_secret_file(who, path));
    std::ifstream again(path, std::ios::binary);
    std::string after((std::istreambuf_iterator<char>(again)),
                      std::istreambuf_iterator<char>());
    CHECK(after == content);
  }
  // Two fresh secrets differ.
  REQUIRE(create_secret_file(caller::kas, dir.path + "/a"));
  REQUIRE(create_secret_file(caller::kas, dir.path + "/b"));
  CHECK(load_secret(caller::kas, dir.path + "/a").key
        != load_secret(caller::kas, dir.path + "/b").key);
  // A directory that does not exist is an error, not false.
  CHECK_THROWS_AS(create_secret_file(caller::kas, dir.path + "/no/such"),
                  secret_error);
}
