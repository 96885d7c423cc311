// The answers the HTTP edge writes straight to text must be, byte for byte,
// what dumping their JSON documents gives.

#include "edges/http/codec.hpp"

#include <catch2/catch.hpp>

#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::http;

namespace {

// Texts that take each of the writer's paths: plain ASCII, the two escaped
// characters, control characters, DEL, UTF-8, invalid UTF-8.
const std::vector<std::string> texts = {
  "",
  "group1/project1",
  "say \"hi\"",
  "back\\slash",
  "tab\tnew\nline\r\x01\x1f",
  "del\x7f",
  std::string("nul\0byte", 8),
  "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80",
  "bad \xff\xfe utf-8 \xc3",
  "GitLab: The project you were looking for could not be found.",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF9FZToz Some User (gitlab.example)",
};

struct picker {
  std::mt19937 rng{20261203};

  const std::string& text() {
    return texts[rng() % texts.size()];
  }
  bool coin() {
    return rng() % 2 == 0;
  }
  std::int64_t number() {
    switch (rng() % 4) {
      case 0:
        return 0;
      case 1:
        return -static_cast<std::int64_t>(rng());
      case 2:
        return std::numeric_limits<std::int64_t>::max();
      default:
        return static_cast<std::int64_t>(rng());
    }
  }
  std::optional<std::string> maybe_text() {
    return coin() ? std::optional<std::string>{text()} : std::nullopt;
  }
  std::optional<std::int64_t> maybe_number() {
    return coin() ? std::optional<std::int64_t>{number()} : std::nullopt;
  }
  std::vector<std::string> list() {
    std::vector<std::string> out;
    for (auto n = rng() % 4; n > 0; --n)
      out.push_back(text());
    return out;
  }
};

template <call_id Id, class Answer>
void same_as_dump(const Answer& answer) {
  auto expected = encode(call_tag<Id>{}, answer);
  auto written = encode_text(call_tag<Id>{}, answer);
  CHECK(written.status == expected.status);
  CHECK(written.body == dump(expected.body));
}

} // namespace

TEST_CASE("/allowed answers are written as their JSON dumps",
          "[http][codec]") {
  picker pick;
  for (int i = 0; i < 2000; ++i) {
    access::allowed_outcome o;
    o.status = pick.coin() ? 200 : (pick.coin() ? 403 : 404);
    o.message = pick.text();
    if (pick.coin() || o.status == 200) {
      access::allowed_success s;
      s.gl_repository = pick.text();
      s.gl_project_path = pick.text();
      s.gl_project_id = pick.maybe_number();
      s.gl_root_namespace_id = pick.maybe_number();
      s.gl_id = pick.text();
      s.gl_username = pick.maybe_text();
      s.gl_key_type = pick.maybe_text();
      s.gl_key_id = pick.maybe_number();
      s.git_config_options = pick.list();
      s.gl_console_messages = pick.list();
      if (pick.coin()) {
        access::gitaly_info g;
        g.storage_name = pick.text();
        g.relative_path = pick.text();
        g.gl_repository = pick.text();
        g.gl_project_path = pick.text();
        g.address = pick.text();
        g.token = pick.maybe_text();
        s.gitaly = g;
      }
      o.success = s;
    }
    INFO("case " << i);
    same_as_dump<call_id::allowed>(o);
  }
}

TEST_CASE("/authorized_keys answers are written as their JSON dumps",
          "[http][codec]") {
  picker pick;
  for (int i = 0; i < 500; ++i) {
    access::authorized_key k;
    k.id = pick.number();
    k.title = pick.text();
    k.created_at = pick.text();
    k.expires_at = pick.maybe_text();
    k.key = pick.text();
    k.usage_type = pick.text();
    INFO("case " << i);
    same_as_dump<call_id::authorized_keys>(k);
  }
}
