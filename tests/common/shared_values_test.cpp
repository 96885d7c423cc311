// Values that separate processes compute and must agree on: the seed loader
// writes them into PostgreSQL, the server looks them up. The expected
// values come from other tools (`ssh-keygen -lf`, `sha256sum`), not from
// the code under test.

#include "common/base64.hpp"
#include "common/ssh_key.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace gatehouse;

TEST_CASE("the SSH fingerprint is the one ssh-keygen -lf prints",
          "[common][ssh_key]") {
  // tests/storage/seed_fixtures.hpp's key_a.
  auto blob = base64_decode(
    "AAAAC3NzaC1lZDI1NTE5AAAAID72VztSZsPMmsTmHFHnqhQ3DKLjzzr7+I9n3bASRYnv");
  REQUIRE(blob);
  CHECK(ssh_fingerprint_sha256(*blob)
        == "SHA256:YaYVja1iCRmPcXXR9Oxgv8s3j/9MSOboNQSZf/6Rtjc");
}

TEST_CASE("the token digest is the lower-case hex SHA-256 sha256sum prints",
          "[common][digest]") {
  CHECK(token_digest("glpat-example-token")
        == "348f7423080cf9327ca38d73344ec6e2ef27d1891e1da3cb149d1b823e193bc2");
  CHECK(token_digest("")
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("hex_decode reads either case and refuses anything else",
          "[common][hex]") {
  CHECK(hex_decode("") == std::string{});
  CHECK(hex_decode("00ff7F") == std::string("\x00\xff\x7f", 3));
  CHECK(hex_decode(hex_encode("any bytes\n")) == std::string{"any bytes\n"});
  CHECK_FALSE(hex_decode("abc")); // odd length
  CHECK_FALSE(hex_decode("0g"));  // not a hex digit
  CHECK_FALSE(hex_decode("+1"));
  CHECK_FALSE(hex_decode(" 1"));
}
