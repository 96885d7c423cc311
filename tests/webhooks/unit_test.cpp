// Unit tests of the webhook consumer's pure parts and of one delivery
// against an in-process receiver.
#include "webhooks/address.hpp"
#include "webhooks/consumer.hpp"
#include "webhooks/delivery.hpp"
#include "webhooks/hook_state.hpp"

#include "tests/webhooks/receiver.hpp"

#include <catch2/catch.hpp>

#include <openssl/ssl.h>

#include <cstdlib>
#include <set>

using namespace gatehouse::webhooks;
using gatehouse::test::receiver;
using std::chrono::milliseconds;

namespace {

std::string category(const std::string& ip) {
  return address_category(ip).value_or("public");
}

bool no_pause(milliseconds) {
  return true;
}

} // namespace

TEST_CASE("IPv4 addresses are classified like GitLab's URL blocker",
          "[webhooks][address]") {
  CHECK(category("127.0.0.1") == "loopback");
  CHECK(category("127.255.255.254") == "loopback");
  CHECK(category("10.0.0.1") == "private");
  CHECK(category("10.255.255.255") == "private");
  CHECK(category("172.16.0.1") == "private");
  CHECK(category("172.31.255.255") == "private");
  CHECK(category("172.32.0.1") == "public");
  CHECK(category("172.15.255.255") == "public");
  CHECK(category("192.168.1.1") == "private");
  CHECK(category("192.169.0.1") == "public");
  CHECK(category("169.254.169.254") == "link-local"); // cloud metadata
  CHECK(category("0.0.0.0") == "unspecified");
  CHECK(category("0.0.0.1") == "unspecified"); // Gitea's SSRF bypass
  CHECK(category("100.64.0.1") == "shared (CGNAT)");
  CHECK(category("100.127.255.255") == "shared (CGNAT)");
  CHECK(category("100.128.0.1") == "public");
  CHECK(category("100.63.255.255") == "public");
  CHECK(category("224.0.0.1") == "multicast");
  CHECK(category("255.255.255.255") == "broadcast");
  CHECK(category("240.0.0.1") == "reserved");
  CHECK(category("8.8.8.8") == "public");
  CHECK(category("93.184.216.34") == "public");
  CHECK_THROWS_AS(address_category("example.com"), std::invalid_argument);
}

TEST_CASE("IPv6 addresses are classified, embedded IPv4 included",
          "[webhooks][address]") {
  CHECK(category("::1") == "loopback");
  CHECK(category("::") == "unspecified");
  CHECK(category("fc00::1") == "private");
  CHECK(category("fd12:3456:789a::1") == "private");
  CHECK(category("fe80::1") == "link-local");
  CHECK(category("febf::1") == "link-local");
  CHECK(category("fec0::1") == "private");
  CHECK(category("ff02::1") == "multicast");
  CHECK(category("2001:4860:4860::8888") == "public");
  CHECK(category("2606:4700::1111") == "public");
  // IPv4-mapped and friends take the embedded address's category.
  CHECK(category("::ffff:127.0.0.1") == "loopback (IPv4-mapped)");
  CHECK(category("::ffff:7f00:1") == "loopback (IPv4-mapped)");
  CHECK(category("::ffff:10.1.2.3") == "private (IPv4-mapped)");
  CHECK(category("::ffff:169.254.169.254") == "link-local (IPv4-mapped)");
  CHECK(category("::ffff:8.8.8.8") == "public");
  CHECK(category("::127.0.0.1") == "loopback (IPv4-compatible)");
  CHECK(category("64:ff9b::a9fe:a9fe") == "link-local (NAT64)");
  CHECK(category("2002:7f00:1::") == "loopback (6to4)");
  CHECK(category("2002:0808:0808::") == "public");
}

TEST_CASE("allow_local lets local categories through, never multicast",
          "[webhooks][address]") {
  CHECK(refusal(std::string{"loopback"}, false) == std::string{"loopback"});
  CHECK_FALSE(refusal(std::string{"loopback"}, true));
  CHECK_FALSE(refusal(std::string{"private (IPv4-mapped)"}, true));
  CHECK_FALSE(refusal(std::string{"shared (CGNAT)"}, true));
  CHECK(refusal(std::string{"multicast"}, true) == std::string{"multicast"});
  CHECK(refusal(std::string{"broadcast"}, true));
  CHECK_FALSE(refusal(std::nullopt, false));
}

TEST_CASE("resolution checks every address of a name", "[webhooks][address]") {
  auto r = resolve_and_check("127.0.0.1", false);
  CHECK(r.blocked);
  CHECK(r.addresses.empty());
  CHECK(r.error == "blocked: 127.0.0.1, a loopback address");

  r = resolve_and_check("localhost", false);
  CHECK(r.blocked);
  CHECK_THAT(r.error, Catch::StartsWith("blocked: localhost resolves to "));

  // inet_aton spellings of 127.0.0.1 resolve to it and are refused.
  CHECK(resolve_and_check("2130706433", false).blocked);
  CHECK(resolve_and_check("0x7f.1", false).blocked);
  CHECK(resolve_and_check("::ffff:127.0.0.1", false).blocked);
  CHECK(resolve_and_check("0.0.0.0", false).blocked);

  r = resolve_and_check("127.0.0.1", true);
  CHECK_FALSE(r.blocked);
  CHECK(r.error.empty());
  CHECK(r.addresses == std::vector<std::string>{"127.0.0.1"});

  r = resolve_and_check("no-such-host.invalid", true);
  CHECK_FALSE(r.blocked);
  CHECK(r.addresses.empty());
  CHECK_THAT(r.error, Catch::StartsWith("cannot resolve no-such-host.invalid"));
}

TEST_CASE("four failures disable a hook temporarily, with GitLab's backoff",
          "[webhooks][state]") {
  const milliseconds base{60000};
  std::int64_t now = 1'000'000;
  hook_state s;
  for (int i = 1; i <= 3; ++i) {
    s = after_failure(s, now, base);
    CHECK(s.recent_failures == i);
    CHECK(s.backoff_count == 0);
    CHECK_FALSE(s.disabled_until_ms);
    CHECK(status_at(s, now) == hook_status::executable);
  }
  s = after_failure(s, now, base); // the 4th
  CHECK(s.recent_failures == 4);
  CHECK(s.backoff_count == 1);
  REQUIRE(s.disabled_until_ms);
  CHECK(*s.disabled_until_ms == now + 60000);
  CHECK(status_at(s, now) == hook_status::temporarily_disabled);
  CHECK(status_at(s, now + 60000) == hook_status::temporarily_disabled);
  CHECK(status_at(s, now + 60001) == hook_status::executable);

  // A failure reported while disabled changes nothing (GitLab's backoff!).
  CHECK(after_failure(s, now + 10, base) == s);

  // Each later failure doubles the backoff.
  now += 60001;
  s = after_failure(s, now, base);
  CHECK(s.recent_failures == 5);
  CHECK(s.backoff_count == 2);
  CHECK(*s.disabled_until_ms == now + 120000);
  now = *s.disabled_until_ms + 1;
  s = after_failure(s, now, base);
  CHECK(*s.disabled_until_ms == now + 240000);
}

TEST_CASE("the backoff doubles up to 24 hours", "[webhooks][state]") {
  const milliseconds minute{60000};
  CHECK(backoff_for(0, minute) == minute);
  CHECK(backoff_for(1, minute) == 2 * minute);
  CHECK(backoff_for(10, minute) == 1024 * minute);
  CHECK(backoff_for(11, minute) == std::chrono::hours(24)); // 2048 min capped
  CHECK(backoff_for(36, minute) == std::chrono::hours(24));
  CHECK(backoff_for(1000, minute) == std::chrono::hours(24));
  CHECK(backoff_for(3, milliseconds{250}) == milliseconds{2000});
  CHECK(backoff_for(0, std::chrono::hours(48)) == std::chrono::hours(24));
}

TEST_CASE("forty consecutive failures disable a hook permanently",
          "[webhooks][state]") {
  const milliseconds base{1000};
  std::int64_t now = 0;
  hook_state s;
  for (int i = 1; i <= 39; ++i) {
    s = after_failure(s, now, base);
    if (s.disabled_until_ms)
      now = *s.disabled_until_ms + 1; // wait out each temporary disable
  }
  CHECK(s.recent_failures == 39);
  CHECK_FALSE(s.permanently_disabled);
  CHECK(status_at(s, now) == hook_status::executable);
  s = after_failure(s, now, base); // the 40th
  CHECK(s.recent_failures == 40);
  CHECK(s.permanently_disabled);
  CHECK(status_at(s, now) == hook_status::permanently_disabled);
  // Permanently: no time makes it executable, no failure counts further.
  CHECK(status_at(s, now + 400LL * 24 * 3600 * 1000)
        == hook_status::permanently_disabled);
  CHECK(after_failure(s, now + 400LL * 24 * 3600 * 1000, base) == s);
  CHECK(std::string{to_string(status_at(s, now))} == "permanently_disabled");
}

TEST_CASE("a successful delivery resets the failure state",
          "[webhooks][state]") {
  hook_state s;
  for (int i = 0; i < 3; ++i)
    s = after_failure(s, 0, milliseconds{1000});
  CHECK(after_success(s) == hook_state{});
  s = after_failure(s, 0, milliseconds{1000});
  REQUIRE(s.disabled_until_ms);
  auto reset = after_success(s);
  CHECK(reset.recent_failures == 0);
  CHECK(reset.backoff_count == 0);
  CHECK_FALSE(reset.disabled_until_ms);
  CHECK(status_at(reset, 0) == hook_status::executable);
  // The count starts over: three more failures do not disable it.
  for (int i = 0; i < 3; ++i)
    reset = after_failure(reset, 0, milliseconds{1000});
  CHECK(status_at(reset, 0) == hook_status::executable);
}

TEST_CASE("name-based UUIDs follow RFC 4122 version 5", "[webhooks][uuid]") {
  // The RFC's DNS namespace; Python's uuid5(NAMESPACE_DNS, "python.org").
  const std::array<unsigned char, 16> dns
    = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
       0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
  CHECK(uuid_v5(dns, "python.org") == "886313e1-3b8a-5372-9b90-0c9aee199e5d");
  auto id = webhook_uuid(7);
  CHECK(is_uuid(id));
  CHECK(id[14] == '5');
  CHECK(id == webhook_uuid(7));
  CHECK(id != webhook_uuid(8));
  CHECK(is_uuid("3F2504E0-4F89-11D3-9A0C-0305E82C3301"));
  CHECK_FALSE(is_uuid("3f2504e0-4f89-11d3-9a0c-0305e82c330"));
  CHECK_FALSE(is_uuid("3f2504e0+4f89-11d3-9a0c-0305e82c3301"));
  CHECK_FALSE(is_uuid("not-a-uuid"));
}

TEST_CASE("the Idempotency-Key is stable per event and hook",
          "[webhooks][uuid]") {
  const std::string event = "0b8f1b5e-4a4c-4c2e-9d55-1d2f3e4a5b6c";
  auto key = idempotency_key(event, 1);
  CHECK(is_uuid(key));
  CHECK(key == idempotency_key(event, 1));
  CHECK(key == idempotency_key("0B8F1B5E-4A4C-4C2E-9D55-1D2F3E4A5B6C", 1));
  CHECK(key != idempotency_key(event, 2));
  CHECK(key != idempotency_key("1b8f1b5e-4a4c-4c2e-9d55-1d2f3e4a5b6c", 1));
  CHECK(key != webhook_uuid(1));
}

TEST_CASE("delivery headers are GitLab's, the token only when set",
          "[webhooks][headers]") {
  instance_settings settings{false, "https://gitlab.example.com", "18.6.0"};
  const std::string event = "0b8f1b5e-4a4c-4c2e-9d55-1d2f3e4a5b6c";
  auto find = [](const header_list& h,
                 const std::string& name) -> std::optional<std::string> {
    for (auto& [k, v] : h)
      if (k == name)
        return v;
    return std::nullopt;
  };

  hook_target with_token{3, "https://hooks.example.com/x", "s3cret"};
  auto h = delivery_headers(with_token, event_kind::push, event, settings);
  CHECK(find(h, "Content-Type") == std::string{"application/json"});
  CHECK(find(h, "User-Agent") == std::string{"GitLab/18.6.0"});
  CHECK(find(h, "X-Gitlab-Event") == std::string{"Push Hook"});
  CHECK(find(h, "X-Gitlab-Token") == std::string{"s3cret"});
  CHECK(find(h, "X-Gitlab-Event-UUID") == event);
  CHECK(find(h, "X-Gitlab-Webhook-UUID") == webhook_uuid(3));
  CHECK(find(h, "Idempotency-Key") == idempotency_key(event, 3));
  CHECK(find(h, "X-Gitlab-Instance")
        == std::string{"https://gitlab.example.com"});
  CHECK(h.size() == 8);

  hook_target without_token{4, "https://hooks.example.com/y", ""};
  h = delivery_headers(without_token, event_kind::tag_push, event, settings);
  CHECK(find(h, "X-Gitlab-Event") == std::string{"Tag Push Hook"});
  CHECK_FALSE(find(h, "X-Gitlab-Token"));
  CHECK(h.size() == 7);

  // Line breaks cannot smuggle a header in (GitLab strips them too).
  hook_target injected{5, "https://hooks.example.com/z", "a\r\nX-Evil: 1\n"};
  h = delivery_headers(injected, event_kind::push, event, settings);
  CHECK(find(h, "X-Gitlab-Token") == std::string{"aX-Evil: 1"});
}

TEST_CASE("webhook URLs are parsed into host, port, path and credentials",
          "[webhooks][url]") {
  std::string error;
  auto u = parse_target_url("http://127.0.0.1:9911/hook?a=1#frag", error);
  REQUIRE(u);
  CHECK_FALSE(u->https);
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == 9911);
  CHECK(u->path == "/hook?a=1");
  CHECK(u->host_header() == "127.0.0.1:9911");
  CHECK_FALSE(u->basic_auth);

  u = parse_target_url("HTTPS://user:p%40ss@Hooks.Example.com", error);
  REQUIRE(u);
  CHECK(u->https);
  CHECK(u->port == 443);
  CHECK(u->host == "Hooks.Example.com");
  CHECK(u->path == "/");
  CHECK(u->host_header() == "Hooks.Example.com");
  REQUIRE(u->basic_auth);
  CHECK(u->basic_auth->first == "user");
  CHECK(u->basic_auth->second == "p@ss");

  u = parse_target_url("http://[::1]:8080/x y", error);
  REQUIRE(u);
  CHECK(u->host == "::1");
  CHECK(u->host_header() == "[::1]:8080");
  CHECK(u->path == "/x%20y");

  u = parse_target_url("http://example.com?q", error);
  REQUIRE(u);
  CHECK(u->path == "/?q");

  for (const char* bad :
       {"ftp://example.com/", "http://", "http://:80/", "http://example.com:0/",
        "http://example.com:99999/", "http://exa mple.com/", "http://[::1/",
        "http://example.com:8x/", "javascript:alert(1)"}) {
    INFO(bad);
    error.clear();
    CHECK_FALSE(parse_target_url(bad, error));
    CHECK_FALSE(error.empty());
  }
  // The error never echoes the URL (it may carry a password).
  parse_target_url("http://user:hunter2@:1/", error);
  CHECK(error.find("hunter2") == std::string::npos);
}

TEST_CASE("a delivery posts the body to the checked address",
          "[webhooks][delivery]") {
  receiver rx;
  const std::string event = "0b8f1b5e-4a4c-4c2e-9d55-1d2f3e4a5b6c";
  const std::string body
    = R"({"object_kind":"push","ref":"refs/heads/main","x":"\u00e9 é"})";
  hook_target hook{1, rx.url("/hook?x=1"), "tok"};
  instance_settings settings{true, "https://gitlab.example.com", "18.6.0"};
  auto headers = delivery_headers(hook, event_kind::push, event, settings);
  delivery_policy policy{milliseconds{2000}, 3, milliseconds{10}};
  auto r = deliver(hook, headers, body, true, policy, no_pause);
  CHECK(r.delivered);
  CHECK(r.status == 200);
  CHECK(r.attempts == 1);
  CHECK(r.error.empty());
  auto reqs = rx.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].body == body);
  CHECK(reqs[0].path == "/hook");
  CHECK(reqs[0].query_x == "1");
  CHECK(reqs[0].header("X-Gitlab-Token") == "tok");
  CHECK(reqs[0].header("Content-Type") == "application/json");
  CHECK(reqs[0].header("User-Agent") == "GitLab/18.6.0");
  CHECK(reqs[0].header("Host") == "127.0.0.1:" + std::to_string(rx.port()));
}

TEST_CASE("failed attempts are retried with the same Idempotency-Key",
          "[webhooks][delivery]") {
  receiver rx;
  rx.status = 500;
  const std::string event = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";
  hook_target hook{9, rx.url("/hook"), ""};
  instance_settings settings{true, "https://gitlab.example.com", "18.6.0"};
  auto headers = delivery_headers(hook, event_kind::push, event, settings);
  std::vector<milliseconds> pauses;
  int before = 0;
  delivery_policy policy{milliseconds{2000}, 3, milliseconds{200}};
  auto r = deliver(
    hook, headers, "{}", true, policy,
    [&](milliseconds d) {
      pauses.push_back(d);
      return true;
    },
    [&] { ++before; });
  CHECK_FALSE(r.delivered);
  CHECK_FALSE(r.abandoned);
  CHECK(r.attempts == 4);
  CHECK(before == 4);
  CHECK(r.status == 500);
  CHECK(r.error == "HTTP 500");
  CHECK(pauses
        == std::vector<milliseconds>{milliseconds{200}, milliseconds{400},
                                     milliseconds{800}});
  auto reqs = rx.requests();
  REQUIRE(reqs.size() == 4);
  std::set<std::string> keys;
  for (auto& req : reqs) {
    keys.insert(req.header("Idempotency-Key"));
    CHECK_FALSE(req.has_header("X-Gitlab-Token"));
  }
  CHECK(keys == std::set<std::string>{idempotency_key(event, 9)});

  // Success on a retry ends the delivery.
  rx.status = 201;
  r = deliver(hook, headers, "{}", true, policy, no_pause);
  CHECK(r.delivered);
  CHECK(r.attempts == 1);
  CHECK(r.status == 201);

  // A stop during a pause abandons the delivery without an outcome.
  rx.status = 503;
  r = deliver(hook, headers, "{}", true, policy,
              [](milliseconds) { return false; });
  CHECK(r.abandoned);
  CHECK(r.attempts == 1);
}

TEST_CASE("a refused target gets no request", "[webhooks][delivery]") {
  receiver rx;
  instance_settings settings{false, "https://gitlab.example.com", "18.6.0"};
  delivery_policy policy{milliseconds{2000}, 3, milliseconds{1}};
  for (auto host : {"127.0.0.1", "localhost", "[::ffff:127.0.0.1]"}) {
    INFO(host);
    hook_target hook{2, rx.url("/hook", host), "tok"};
    auto headers = delivery_headers(
      hook, event_kind::push, "0b8f1b5e-4a4c-4c2e-9d55-1d2f3e4a5b6c", settings);
    auto r = deliver(hook, headers, "{}", false, policy, no_pause);
    CHECK_FALSE(r.delivered);
    CHECK(r.attempts == 0);
    CHECK_THAT(r.error, Catch::StartsWith("blocked: "));
  }
  CHECK(rx.count() == 0);
}

TEST_CASE("the connection goes to the checked address, not a new lookup",
          "[webhooks][delivery]") {
  receiver rx;
  std::string error;
  // .invalid never resolves: the request can only arrive through the
  // pinned address, while the Host header keeps the name.
  auto url = parse_target_url(
    "http://hooks.gatehouse.invalid:" + std::to_string(rx.port()) + "/p",
    error);
  REQUIRE(url);
  auto r = post_once(*url, "127.0.0.1", {{"Content-Type", "application/json"}},
                     "{}", milliseconds{2000});
  CHECK(r.ok());
  auto reqs = rx.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].header("Host")
        == "hooks.gatehouse.invalid:" + std::to_string(rx.port()));
}

TEST_CASE("an attempt ends at its deadline even when the receiver stalls",
          "[webhooks][delivery]") {
  httplib::Server slow;
  slow.Post(".*", [](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    res.status = 200;
  });
  int port = slow.bind_to_any_port("127.0.0.1");
  std::thread t{[&] {
    slow.listen_after_bind();
  }};
  while (!slow.is_running())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::string error;
  auto url
    = parse_target_url("http://127.0.0.1:" + std::to_string(port) + "/", error);
  REQUIRE(url);
  auto started = std::chrono::steady_clock::now();
  auto r = post_once(*url, "127.0.0.1", {}, "{}", milliseconds{300});
  auto took = std::chrono::steady_clock::now() - started;
  CHECK_FALSE(r.ok());
  CHECK(r.status == 0);
  CHECK_FALSE(r.error.empty());
  CHECK(took < std::chrono::milliseconds(1200));
  slow.stop();
  t.join();
}

namespace {

std::string tls_server_name; // written by the server's SNI callback

int remember_server_name(SSL* ssl, int*, void*) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  tls_server_name = name ? name : "";
  return SSL_TLSEXT_ERR_OK;
}

} // namespace

TEST_CASE("https to the pinned address keeps SNI and certificate checks on "
          "the URL's host",
          "[webhooks][delivery]") {
  // A CA and a certificate for hooks.gatehouse.test, made with the openssl
  // tool; the client trusts the CA through SSL_CERT_FILE.
  char dir_template[] = "/tmp/gatehouse-tls.XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  const std::string dir = dir_template;
  const std::string script = "cd " + dir
    + " && "
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
      " -nodes -keyout ca.key -out ca.pem -days 2"
      " -subj '/CN=Gatehouse Test CA' && "
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
      " -keyout srv.key -out srv.csr"
      " -subj '/CN=hooks.gatehouse.test' && "
      "printf 'subjectAltName=DNS:hooks.gatehouse.test\\n' > ext && "
      "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
      " -out srv.pem -days 2 -extfile ext";
  REQUIRE(std::system(("(" + script + ") >/dev/null 2>&1").c_str()) == 0);
  ::setenv("SSL_CERT_FILE", (dir + "/ca.pem").c_str(), 1);

  httplib::SSLServer server{(dir + "/srv.pem").c_str(),
                            (dir + "/srv.key").c_str()};
  REQUIRE(server.is_valid());
  SSL_CTX_set_tlsext_servername_callback(server.ssl_context(),
                                         remember_server_name);
  std::string host_header;
  server.Post(".*", [&](const httplib::Request& req, httplib::Response& res) {
    host_header = req.get_header_value("Host");
    res.status = 204;
  });
  int port = server.bind_to_any_port("127.0.0.1");
  std::thread t{[&] {
    server.listen_after_bind();
  }};
  while (!server.is_running())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));

  std::string error;
  auto url = parse_target_url(
    "https://hooks.gatehouse.test:" + std::to_string(port) + "/hook", error);
  REQUIRE(url);
  auto r = post_once(*url, "127.0.0.1", {}, "{}", milliseconds{3000});
  CHECK(r.error == "");
  CHECK(r.status == 204);
  CHECK(tls_server_name == "hooks.gatehouse.test");
  CHECK(host_header == "hooks.gatehouse.test:" + std::to_string(port));

  // The same server under a name its certificate does not carry: refused.
  url = parse_target_url(
    "https://other.gatehouse.test:" + std::to_string(port) + "/hook", error);
  REQUIRE(url);
  r = post_once(*url, "127.0.0.1", {}, "{}", milliseconds{3000});
  CHECK_FALSE(r.ok());
  CHECK(r.status == 0);
  CHECK_FALSE(r.error.empty());

  server.stop();
  t.join();
  ::unsetenv("SSL_CERT_FILE");
  std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("only push and tag push events are for webhooks; the agent "
          "registry's events on the same stream are not",
          "[webhooks][consumer]") {
  using kind = std::optional<event_kind>;
  CHECK(webhook_event_kind("gitlab.events.push.10", std::string{"push"})
        == kind{event_kind::push});
  CHECK(webhook_event_kind("gitlab.events.tag_push.10",
                           std::string{"tag_push"})
        == kind{event_kind::tag_push});
  // Without the header, the subject says it.
  CHECK(webhook_event_kind("gitlab.events.push.10", std::nullopt)
        == kind{event_kind::push});
  CHECK(webhook_event_kind("gitlab.events.tag_push.10", std::nullopt)
        == kind{event_kind::tag_push});
  // The agent registry's events (subject kind, header kind).
  CHECK_FALSE(webhook_event_kind("gitlab.events.agent_configuration.7",
                                 std::string{"agent_configuration"}));
  CHECK_FALSE(webhook_event_kind("gitlab.events.agent_connection.7",
                                 std::string{"agent_registered"}));
  CHECK_FALSE(webhook_event_kind("gitlab.events.agent_connection.7",
                                 std::string{"agent_upgraded"}));
  CHECK_FALSE(webhook_event_kind("gitlab.events.agent_config_push.7",
                                 std::string{"agent_config_push"}));
  CHECK_FALSE(
    webhook_event_kind("gitlab.events.agent_config_push.7", std::nullopt));
  CHECK_FALSE(webhook_event_kind("other.subject", std::nullopt));
  CHECK_FALSE(webhook_event_kind("gitlab.events.pushy.7", std::nullopt));
}
