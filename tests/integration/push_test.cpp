// End-to-end push processing (issue 4; contract shell-gitaly §2.11, §2.12,
// §7): the real `gatehouse serve` against PostgreSQL, a private nats-server
// (JetStream) and real git repositories. /pre_receive and /post_receive are
// called as Gitaly's hooks call them; the events are read back from the
// GATEHOUSE_EVENTS stream with nats.c, as a downstream consumer would, and
// through `gatehouse events tail`. Hidden tag [.integration][push].

#include "tests/integration/git_repo.hpp"
#include "tests/integration/stack.hpp"

#include <catch2/catch.hpp>
#include <nats/nats.h>
#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

const std::string zeros(40, '0');
const std::string external_url = "https://gitlab.example.com:8443";
const std::string widgets_disk_path = "@hashed/6b/86/widgets";
const std::string events_stream = "GATEHOUSE_EVENTS";
const std::string banner_text = "Maintenance tonight at 22:00 UTC";

// -- the seed
// ----------------------------------------------------------------------

json user(int id, const std::string& username, const std::string& name) {
  return {{"id", id},
          {"username", username},
          {"name", name},
          {"email", username + "@example.com"},
          {"public_email", ""},
          {"state", "active"},
          {"admin", false},
          {"external", false},
          {"can_create_project", true},
          {"two_factor_enabled", false}};
}

json key(int id, int user_id, const std::string& line) {
  return {{"id", id},
          {"user_id", user_id},
          {"title", "key"},
          {"key", line},
          {"usage_type", "auth_and_signing"},
          {"expires_at", nullptr}};
}

json project(int id, const std::string& path, const std::string& disk_path,
             const std::string& storage) {
  return {{"id", id},
          {"namespace_id", 5},
          {"path", path},
          {"name", path},
          {"description", ""},
          {"visibility", "private"},
          {"archived", false},
          {"default_branch", "main"},
          {"storage", storage},
          {"disk_path", disk_path},
          {"repository_access_level", "enabled"},
          {"merge_requests_enabled", true},
          {"lfs_enabled", true},
          {"repository_exists", true},
          {"redirects", json::array()}};
}

// Users: 2 alice (developer of both projects, key 2), 7 mo (maintainer of
// group acme, key 7). Projects: 10 acme/widgets on a storage with a local
// path (a real bare repository), formerly acme/old-widgets; 11 acme/remote
// on a storage without a path.
json push_seed(const std::string& storage_dir) {
  json doc;
  doc["settings"]
    = {{"external_url", external_url},
       {"ssh_clone_url_root", "git@gitlab.example.com:"},
       {"enabled_git_access_protocol", "all"},
       {"receive_max_input_size_mb", 0},
       {"gitlab_version", "18.6.0"},
       {"gitlab_shell_operation_limit", 0},
       {"broadcast_messages",
        json::array({// An older current banner: the newest one wins.
                     {{"id", 1},
                      {"message", "An older banner"},
                      {"target_path", nullptr},
                      {"starts_at", "2020-01-01T00:00:00Z"},
                      {"ends_at", "2099-01-01T00:00:00Z"}},
                     {{"id", 2},
                      {"message", banner_text},
                      {"target_path", nullptr},
                      {"starts_at", "2020-01-01T00:00:00Z"},
                      {"ends_at", "2099-01-01T00:00:00Z"}},
                     // Targeted at other paths: not for this project.
                     {{"id", 3},
                      {"message", "Only for the other group"},
                      {"target_path", "/other/*"},
                      {"starts_at", "2020-01-01T00:00:00Z"},
                      {"ends_at", "2099-01-01T00:00:00Z"}},
                     // Over.
                     {{"id", 4},
                      {"message", "An expired banner"},
                      {"target_path", nullptr},
                      {"starts_at", "2020-01-01T00:00:00Z"},
                      {"ends_at", "2021-01-01T00:00:00Z"}}})}};
  doc["storages"]
    = json::array({{{"name", "local"},
                    {"gitaly_address", "unix:/tmp/gitaly.socket"},
                    {"gitaly_token", ""},
                    {"path", storage_dir}},
                   {{"name", "remote"},
                    {"gitaly_address", "tcp://remote-gitaly:8075"},
                    {"gitaly_token", ""}}});
  doc["users"] = json::array(
    {user(2, "alice", "Alice Developer"), user(7, "mo", "Mo Maintainer")});
  doc["keys"]
    = json::array({key(2, 2,
                       "ssh-ed25519 "
                       "AAAAC3NzaC1lZDI1NTE5AAAAIP2X2ZT+BHT4AtZcaFb3IxHq6JcA9/"
                       "0bd7LMLN9luRQ8 k2@test"),
                   key(7, 7,
                       "ssh-ed25519 "
                       "AAAAC3NzaC1lZDI1NTE5AAAAIGNQH1KbaI2jBlEvOd5BtAQg89pYBTG"
                       "Ppe9Rga4PZwhG k7@test")});
  doc["namespaces"] = json::array({{{"id", 5},
                                    {"path", "acme"},
                                    {"name", "Acme"},
                                    {"kind", "group"},
                                    {"parent_id", nullptr}}});
  auto widgets = project(10, "widgets", widgets_disk_path, "local");
  widgets["description"] = "Widgets for everyone";
  widgets["redirects"] = json::array({"acme/old-widgets"});
  doc["projects"] = json::array(
    {widgets, project(11, "remote", "@hashed/aa/aa/remote", "remote")});
  doc["members"] = json::array(
    {{{"user_id", 2}, {"project_id", 10}, {"access_level", 30}},
     {{"user_id", 2}, {"project_id", 11}, {"access_level", 30}},
     {{"user_id", 7}, {"namespace_id", 5}, {"access_level", 40}}});
  doc["protected_branches"] = json::array({{{"id", 1},
                                            {"project_id", 10},
                                            {"name", "main"},
                                            {"push_access_level", 40},
                                            {"merge_access_level", 40},
                                            {"allow_force_push", false}}});
  return doc;
}

// -- HTTP
// ----------------------------------------------------------------------------

/// Gitaly's hooks (and GitLab Shell), holding a fresh Shell token.
struct hook_caller {
  const stack& gh;
  std::string token = gh.shell_token();

  reply post(const std::string& path, const json& body) const {
    auto cli = gh.client();
    return make_reply(cli.Post(path.c_str(),
                               {{"Gitlab-Shell-Api-Request", token}},
                               body.dump(), "application/json"));
  }

  reply pre_receive(const std::string& gl_repository) const {
    return post("/api/v4/internal/pre_receive",
                {{"gl_repository", gl_repository}});
  }

  /// As Gitaly's post-receive hook sends it (push_options null when none).
  reply post_receive(const std::string& gl_repository,
                     const std::string& identifier, const std::string& changes,
                     json push_options = nullptr) const {
    return post("/api/v4/internal/post_receive",
                {{"gl_repository", gl_repository},
                 {"identifier", identifier},
                 {"changes", changes},
                 {"push_options", push_options}});
  }

  /// GitLab Shell's /allowed for a push over SSH.
  reply allowed_push(const std::string& project_path, int key_id) const {
    return post("/api/v4/internal/allowed",
                {{"action", "git-receive-pack"},
                 {"project", project_path},
                 {"changes", "_any"},
                 {"protocol", "ssh"},
                 {"key_id", std::to_string(key_id)},
                 {"check_ip", "127.0.0.1"}});
  }
};

/// post_receive must answer 200 with the counter decreased.
void require_accepted(const std::string& what, const reply& r) {
  INFO(what << " -> " << r.status << " " << r.body);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  REQUIRE(r.j.is_object());
  CHECK(r.j.value("reference_counter_decreased", false) == true);
}

json alert(const std::string& text) {
  return {{"message", text}, {"type", "alert"}};
}

json basic(const std::string& text) {
  return {{"message", text}, {"type", "basic"}};
}

std::string mr_message(const std::string& branch_text,
                       const std::string& escaped) {
  return "To create a merge request for " + branch_text + ", visit:\n  "
    + external_url
    + "/acme/widgets/-/merge_requests/new?merge_request%5Bsource_branch%5D="
    + escaped;
}

// GitLab's Gitlab::Checks::ContainerMoved text for an SSH push.
const std::string moved_message
  = "Project 'acme/old-widgets' was moved to 'acme/widgets'.\n\n"
    "Please update your Git remote:\n\n"
    "  git remote set-url origin git@gitlab.example.com:acme/widgets.git\n";

// -- PostgreSQL
// ------------------------------------------------------------------------

std::optional<std::string> query_value(const stack& gh,
                                       const std::string& sql) {
  pqxx::connection conn{gh.database_url()};
  pqxx::nontransaction tx{conn};
  auto rows = tx.exec(sql);
  if (rows.empty() || rows[0][0].is_null())
    return std::nullopt;
  return rows[0][0].as<std::string>();
}

std::int64_t query_count(const stack& gh, const std::string& sql) {
  auto v = query_value(gh, sql);
  return v ? std::stoll(*v) : 0;
}

std::int64_t unpublished(const stack& gh) {
  return query_count(gh,
                     "SELECT count(*) FROM gatehouse_state.outbox WHERE "
                     "published_at IS NULL");
}

std::int64_t outbox_rows(const stack& gh) {
  return query_count(gh, "SELECT count(*) FROM gatehouse_state.outbox");
}

/// Waits until the relay has published every outbox row. It marks a row
/// published only on its PubAck, so from then on the stream holds all that
/// the outbox gives it: reading the stream back needs no wait for
/// stragglers.
void wait_all_published(const stack& gh,
                        std::chrono::milliseconds limit = 15s) {
  REQUIRE(eventually([&] { return unpublished(gh) == 0; }, limit));
}

std::set<std::string> outbox_ids(const stack& gh) {
  pqxx::connection conn{gh.database_url()};
  pqxx::nontransaction tx{conn};
  std::set<std::string> ids;
  for (const auto& row :
       tx.exec("SELECT event_id::text FROM gatehouse_state.outbox"))
    ids.insert(row[0].as<std::string>());
  return ids;
}

// -- JetStream (the approach of tests/outbox: a durable pull consumer)
// -------------------

struct stream_message {
  std::string subject;
  std::uint64_t sequence = 0;
  std::map<std::string, std::string> headers;
  std::string data;
  /// The parsed data. Mutable so that checks may index missing keys (null)
  /// through a const reference instead of tripping nlohmann's assertion.
  mutable json body;
};

/// A plain nats.c client reading GATEHOUSE_EVENTS back.
class js_reader {
public:
  explicit js_reader(const std::string& url) {
    REQUIRE(natsConnection_ConnectTo(&nc_, url.c_str()) == NATS_OK);
    REQUIRE(natsConnection_JetStream(&js_, nc_, nullptr) == NATS_OK);
  }

  ~js_reader() {
    if (js_)
      jsCtx_Destroy(js_);
    if (nc_) {
      natsConnection_Close(nc_);
      natsConnection_Destroy(nc_);
    }
  }

  js_reader(const js_reader&) = delete;
  js_reader& operator=(const js_reader&) = delete;

  /// Messages in the stream; -1 while it does not exist.
  std::int64_t count() {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&si, js_, events_stream.c_str(), nullptr, &jerr)
        != NATS_OK)
      return -1;
    auto n = static_cast<std::int64_t>(si->State.Msgs);
    jsStreamInfo_Destroy(si);
    return n;
  }

  /// Waits until the stream holds at least `n` messages.
  bool wait_for(std::int64_t n, std::chrono::milliseconds limit = 20s) {
    return eventually([&] { return count() >= n; }, limit);
  }

  /// Every message of the stream in stream order.
  std::vector<stream_message> read_all() {
    std::vector<stream_message> out;
    auto expected = count();
    REQUIRE(expected >= 0);
    static std::atomic<int> counter{0};
    auto durable = "push_test_" + std::to_string(::getpid()) + "_"
      + std::to_string(counter++);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    REQUIRE(js_AddConsumer(&ci, js_, events_stream.c_str(), &cc, nullptr, &jerr)
            == NATS_OK);
    jsConsumerInfo_Destroy(ci);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = events_stream.c_str();
    so.Consumer = durable.c_str();
    natsSubscription* sub = nullptr;
    REQUIRE(js_PullSubscribe(&sub, js_, "gitlab.events.>", durable.c_str(),
                             nullptr, &so, &jerr)
            == NATS_OK);
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (static_cast<std::int64_t>(out.size()) < expected
           && std::chrono::steady_clock::now() < deadline) {
      natsMsgList list{};
      if (natsSubscription_Fetch(&list, sub, 256, 1000, &jerr) != NATS_OK)
        continue;
      for (int i = 0; i < list.Count; ++i) {
        auto* m = list.Msgs[i];
        stream_message sm;
        sm.subject = natsMsg_GetSubject(m);
        jsMsgMetaData* meta = nullptr;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
          sm.sequence = meta->Sequence.Stream;
          jsMsgMetaData_Destroy(meta);
        }
        const char** keys = nullptr;
        int nkeys = 0;
        if (natsMsgHeader_Keys(m, &keys, &nkeys) == NATS_OK && keys) {
          for (int k = 0; k < nkeys; ++k) {
            const char* v = nullptr;
            natsMsgHeader_Get(m, keys[k], &v);
            sm.headers[keys[k]] = v ? v : "";
          }
          free(static_cast<void*>(keys));
        }
        sm.data.assign(natsMsg_GetData(m),
                       static_cast<std::size_t>(natsMsg_GetDataLength(m)));
        sm.body = json::parse(sm.data, nullptr, false);
        natsMsg_Ack(m, nullptr);
        out.push_back(std::move(sm));
      }
      natsMsgList_Destroy(&list);
    }
    natsSubscription_Destroy(sub);
    js_DeleteConsumer(js_, events_stream.c_str(), durable.c_str(), nullptr,
                      &jerr);
    return out;
  }

private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

bool is_uuid(const std::string& s) {
  static const std::regex re{
    "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"};
  return std::regex_match(s, re);
}

/// How often each Nats-Msg-Id occurs.
std::map<std::string, int> id_counts(const std::vector<stream_message>& msgs) {
  std::map<std::string, int> counts;
  for (const auto& m : msgs) {
    auto it = m.headers.find("Nats-Msg-Id");
    ++counts[it == m.headers.end() ? std::string{"<none>"} : it->second];
  }
  return counts;
}

/// Every outbox row is on the stream exactly once, and nothing else is.
void check_exactly_once(const stack& gh,
                        const std::vector<stream_message>& msgs) {
  auto counts = id_counts(msgs);
  for (const auto& [id, n] : counts) {
    INFO("Nats-Msg-Id " << id);
    CHECK(n == 1);
  }
  std::set<std::string> on_stream;
  for (const auto& [id, n] : counts)
    on_stream.insert(id);
  CHECK(on_stream == outbox_ids(gh));
  CHECK(unpublished(gh) == 0);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    if (!line.empty())
      out.push_back(line);
  return out;
}

/// `git rev-list --reverse <range>` of a repository: commit ids oldest first.
std::vector<std::string> rev_list(const std::string& git_dir,
                                  const std::string& range) {
  return lines_of(
    git({"--git-dir=" + git_dir, "rev-list", "--reverse", range}));
}

/// The commit ids of an event body, in payload order.
std::vector<std::string> commit_ids(const json& body) {
  std::vector<std::string> ids;
  for (const auto& c : body.at("commits"))
    ids.push_back(c.at("id").get<std::string>());
  return ids;
}

/// A fake 40-hex object id numbered `n` (for a storage without a path).
std::string fake_sha(int n) {
  char buf[41];
  std::snprintf(buf, sizeof buf, "%040x", n);
  return buf;
}

// -- the fixture
// -------------------------------------------------------------------------

/// A real repository on storage `local`, a private nats-server and a
/// Gatehouse (not started: each test starts it its own way).
struct push_fixture {
  std::string storage_dir = make_temp_dir("storage");
  bare_repository repo{storage_dir, widgets_disk_path};
  private_nats nats;
  std::unique_ptr<stack> gh;

  push_fixture() {
    nats.start();
    gh = std::make_unique<stack>(nats.url());
    gh->seed(push_seed(storage_dir));
  }

  std::string bare() const {
    return "--git-dir=" + repo.path();
  }

  /// A commit made in the bare repository itself (no ref moves).
  std::string plumbing_commit(const std::string& parent,
                              const std::string& message) {
    return git(
      {bare(), "commit-tree", parent + "^{tree}", "-p", parent, "-m", message});
  }

  void set_ref(const std::string& ref, const std::string& id) {
    git({bare(), "update-ref", ref, id});
  }
};

} // namespace

// =====================================================================================

TEST_CASE_METHOD(push_fixture,
                 "pre_receive and post_receive keep GitLab's reference counter "
                 "in PostgreSQL",
                 "[.integration][push]") {
  gh->start();
  hook_caller api{*gh};
  auto counter = [&](const std::string& glr) {
    return query_value(*gh,
                       "SELECT value FROM gatehouse_state.reference_counters "
                       "WHERE gl_repository = '"
                         + glr + "' AND expires_at > now()");
  };

  auto r = api.pre_receive("project-10");
  {
    INFO(r.body);
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    CHECK(r.body == R"({"reference_counter_increased":true})");
  }
  CHECK(counter("project-10") == std::optional<std::string>{"1"});
  // Expires 600 s after its last change, as GitLab's Redis key does.
  auto ttl = query_count(*gh,
                         "SELECT extract(epoch FROM expires_at - now())::int "
                         "FROM gatehouse_state.reference_counters WHERE "
                         "gl_repository = 'project-10'");
  CHECK(ttl > 590);
  CHECK(ttl <= 600);

  // A second push in flight on the same repository.
  CHECK(api.pre_receive("project-10").j
        == json{{"reference_counter_increased", true}});
  CHECK(counter("project-10") == std::optional<std::string>{"2"});

  auto changes = zeros + " " + fake_sha(1) + " refs/heads/topic\n";
  r = api.post_receive("project-10", "key-2", changes);
  require_accepted("first post_receive", r);
  CHECK(r.j["reference_counter_decreased"] == true);
  CHECK(counter("project-10") == std::optional<std::string>{"1"});
  r = api.post_receive("project-10", "key-2", changes);
  require_accepted("second post_receive", r);
  auto left = counter("project-10");
  CHECK((!left || *left == "0"));

  // GitLab's DECR below zero deletes the key and still answers true.
  r = api.post_receive("project-11", "user-2", changes);
  require_accepted("post_receive without pre_receive", r);
  auto never = counter("project-11");
  CHECK((!never || *never == "0"));
  CHECK(query_count(*gh,
                    "SELECT count(*) FROM gatehouse_state.reference_counters "
                    "WHERE value < 0")
        == 0);
  // The counter is per gl_repository.
  CHECK(api.pre_receive("project-11").j["reference_counter_increased"] == true);
  CHECK(counter("project-11") == std::optional<std::string>{"1"});
  CHECK(!counter("wiki-10"));
  // A counter past its expiry counts as absent: the next push starts at 1.
  {
    pqxx::connection conn{gh->database_url()};
    pqxx::nontransaction tx{conn};
    tx.exec("UPDATE gatehouse_state.reference_counters SET expires_at = now() "
            "- interval '1 second' WHERE gl_repository = 'project-11'");
  }
  CHECK(!counter("project-11"));
  CHECK(api.pre_receive("project-11").j["reference_counter_increased"] == true);
  CHECK(counter("project-11") == std::optional<std::string>{"1"});

  // A missing gl_repository is a Grape 400, as every required parameter.
  r = api.post("/api/v4/internal/pre_receive", json::object());
  CHECK(r.status == 400);
  CHECK(r.j == json{{"error", "gl_repository is missing"}});
}

TEST_CASE_METHOD(push_fixture,
                 "post_receive answers GitLab's messages in GitLab's order",
                 "[.integration][push]") {
  auto c1 = repo.commit("README.md", "one\n", "first");
  repo.push("main:main");
  auto f1 = repo.commit("feature.txt", "feature\n", "feature work");
  repo.push("main:refs/heads/feature");
  repo.push("main:refs/heads/fix/login");
  auto m2 = plumbing_commit(c1, "on main");
  set_ref("refs/heads/main", m2);
  gh->start();
  hook_caller api{*gh};

  const json banner = alert(banner_text);
  const json mr_feature = basic(mr_message("feature", "feature"));

  // A new branch: the banner first (alert), then the merge-request link.
  api.pre_receive("project-10");
  auto r = api.post_receive("project-10", "key-2",
                            zeros + " " + f1 + " refs/heads/feature\n");
  require_accepted("new branch feature", r);
  CHECK(r.j
        == json{{"messages", json::array({banner, mr_feature})},
                {"reference_counter_decreased", true}});

  // The default branch: no merge-request link.
  r = api.post_receive("project-10", "user-2",
                       c1 + " " + m2 + " refs/heads/main\n");
  require_accepted("push to the default branch", r);
  CHECK(r.j["messages"] == json::array({banner}));

  // The branch name is CGI-escaped in the URL, shown raw in the text.
  r = api.post_receive("project-10", "user-2",
                       zeros + " " + f1 + " refs/heads/fix/login\n");
  require_accepted("new branch fix/login", r);
  CHECK(
    r.j["messages"]
    == json::array({banner, basic(mr_message("fix/login", "fix%2Flogin"))}));

  // A deleted branch: no link.
  r = api.post_receive("project-10", "user-2",
                       f1 + " " + zeros + " refs/heads/fix/login\n");
  require_accepted("deleted branch", r);
  CHECK(r.j["messages"] == json::array({banner}));

  // Several branches: one link each, in the order pushed.
  r = api.post_receive("project-10", "user-2",
                       c1 + " " + m2 + " refs/heads/main\n" + zeros + " " + f1
                         + " refs/heads/feature\n" + zeros + " " + f1
                         + " refs/heads/fix/login\n");
  require_accepted("three refs", r);
  CHECK(r.j["messages"]
        == json::array(
          {banner, mr_feature, basic(mr_message("fix/login", "fix%2Flogin"))}));

  // /allowed through the former path keeps the moved message for alice; her
  // next post_receive shows it after the links, and only once.
  auto allowed = api.allowed_push("acme/old-widgets.git", 2);
  {
    INFO(allowed.body);
    REQUIRE(allowed.status == 200);
  }
  r = api.post_receive("project-10", "key-2",
                       f1 + " " + f1 + " refs/heads/feature\n");
  require_accepted("post_receive after a redirected /allowed", r);
  CHECK(r.j["messages"]
        == json::array({banner, mr_feature, basic(moved_message)}));
  r = api.post_receive("project-10", "key-2",
                       f1 + " " + f1 + " refs/heads/feature\n");
  require_accepted("the next post_receive", r);
  CHECK(r.j["messages"] == json::array({banner, mr_feature}));

  // The message is kept per user: mo's redirected /allowed is not alice's.
  allowed = api.allowed_push("acme/old-widgets.git", 7);
  REQUIRE(allowed.status == 200);
  r = api.post_receive("project-10", "key-2",
                       c1 + " " + m2 + " refs/heads/main\n");
  require_accepted("alice after mo's redirected /allowed", r);
  CHECK(r.j["messages"] == json::array({banner}));
  r = api.post_receive("project-10", "key-7",
                       c1 + " " + m2 + " refs/heads/main\n");
  require_accepted("mo after his redirected /allowed", r);
  CHECK(r.j["messages"] == json::array({banner, basic(moved_message)}));

  // A banner targeted at the project's path wins over a newer general one.
  auto doc = push_seed(storage_dir);
  doc["settings"]["broadcast_messages"][0]["message"] = "Acme only";
  doc["settings"]["broadcast_messages"][0]["target_path"] = "/acme/*";
  auto seed_path = make_temp_dir("reseed") + "/seed.json";
  write_file(seed_path, doc.dump());
  std::string err;
  auto rc = run_cli({"seed", seed_path}, gh->env(), nullptr, &err);
  INFO("gatehouse seed: " << err);
  REQUIRE(rc == 0);
  CHECK(eventually(
    [&] {
      r = api.post_receive("project-10", "key-2",
                           c1 + " " + m2 + " refs/heads/main\n");
      return r.j["messages"] == json::array({alert("Acme only")});
    },
    5s));
  INFO(r.body);
  // Not for a project outside the target: the newest general banner.
  r = api.post_receive("project-999", "key-2",
                       c1 + " " + m2 + " refs/heads/main\n");
  CHECK(r.j["messages"] == json::array({banner}));
}

TEST_CASE_METHOD(push_fixture,
                 "post_receive publishes one event per ref with GitLab's "
                 "payload and the documented headers",
                 "[.integration][push]") {
  // main: c1 - c2, then m3 made on the server; feature: c2 - f1 - f2 - f3.
  repo.commit("README.md", "one\n", "first");
  auto c2 = repo.commit("README.md", "two\n", "second");
  repo.push("main:main");
  auto f1 = repo.commit("feature1.txt", "one\n", "feature one");
  auto f2 = repo.commit("README.md", "three\n", "feature two");
  auto f3
    = repo.commit("feature3.txt", "three\n", "feature three\n\nwith a body");
  repo.push("main:refs/heads/feature");
  auto m3 = plumbing_commit(c2, "hotfix on main");
  set_ref("refs/heads/main", m3);
  git({bare(), "tag", "-a", "v1.0", "-m", "Release 1.0", m3});
  auto tag_object = repo.rev("refs/tags/v1.0");
  REQUIRE(tag_object != m3);
  gh->start();
  hook_caller api{*gh};
  js_reader js{nats.url()};

  // -- push 1: a new branch, the default branch, a new annotated tag
  // --------------------
  auto r = api.post_receive("project-10", "key-2",
                            zeros + " " + f3 + " refs/heads/feature\n" + c2
                              + " " + m3 + " refs/heads/main\n" + zeros + " "
                              + tag_object + " refs/tags/v1.0\n");
  require_accepted("push 1", r);
  // After the answer the events are committed: one outbox row per ref.
  CHECK(outbox_rows(*gh) == 3);
  REQUIRE(js.wait_for(3));

  // -- push 2: four new branches at once (GitLab's bulk rule)
  // ---------------------------
  std::string bulk_changes;
  for (int i = 1; i <= 4; ++i) {
    git({bare(), "branch", "b" + std::to_string(i), f3});
    bulk_changes
      += zeros + " " + f3 + " refs/heads/b" + std::to_string(i) + "\n";
  }
  r = api.post_receive("project-10", "key-2", bulk_changes);
  require_accepted("push 2 (bulk)", r);
  REQUIRE(js.wait_for(7));

  // -- push 2b: four branches, two created and two updated
  // ------------------------------- GitLab groups a kind's changes by action
  // (created, removed, pushed) and applies push_event_hooks_limit per group: no
  // bulk here.
  git({bare(), "branch", "c1", f3});
  git({bare(), "branch", "c2", f3});
  r = api.post_receive("project-10", "key-2",
                       zeros + " " + f3 + " refs/heads/c1\n" + zeros + " " + f3
                         + " refs/heads/c2\n" + f2 + " " + f3
                         + " refs/heads/b1\n" + f2 + " " + f3
                         + " refs/heads/b2\n");
  require_accepted("push 2b (two actions)", r);
  REQUIRE(js.wait_for(11));

  // -- push 3: 22 new commits on a branch: the newest 20 are listed
  // ---------------------
  std::string tip = m3;
  for (int i = 1; i <= 22; ++i)
    tip = plumbing_commit(tip, "long " + std::to_string(i));
  set_ref("refs/heads/long", tip);
  r = api.post_receive("project-10", "user-2",
                       zeros + " " + tip + " refs/heads/long\n");
  require_accepted("push 3 (22 commits)", r);

  // -- push 4: a deleted branch
  // ---------------------------------------------------------
  git({bare(), "update-ref", "-d", "refs/heads/b4"});
  r = api.post_receive("project-10", "user-2",
                       f3 + " " + zeros + " refs/heads/b4\n");
  require_accepted("push 4 (deletion)", r);

  // -- push 5: a project whose storage has no local path
  // ---------------------------------
  r = api.post_receive("project-11", "key-2",
                       zeros + " " + fake_sha(77) + " refs/heads/main\n");
  require_accepted("push 5 (no local path)", r);

  REQUIRE(js.wait_for(14));
  wait_all_published(*gh);
  auto msgs = js.read_all();
  REQUIRE(msgs.size() == 14);
  check_exactly_once(*gh, msgs);

  // Events by ref of project 10 (and the one of project 11).
  std::map<std::string, std::vector<const stream_message*>> by_ref;
  for (const auto& m : msgs) {
    INFO(m.subject << " " << m.data);
    REQUIRE(m.body.is_object());
    by_ref[m.body.value("project_id", 0) == 11 ? "p11"
                                               : m.body.value("ref", "")]
      .push_back(&m);
  }

  auto check_common = [&](const stream_message& m, const std::string& kind,
                          int project_id, bool bulk, bool unavailable) {
    INFO("event " << m.subject << " " << m.data);
    CHECK(m.subject
          == "gitlab.events." + kind + "." + std::to_string(project_id));
    REQUIRE(m.headers.count("Nats-Msg-Id") == 1);
    CHECK(is_uuid(m.headers.at("Nats-Msg-Id")));
    std::map<std::string, std::string> headers{
      {"Nats-Msg-Id", m.headers.at("Nats-Msg-Id")},
      {"Content-Type", "application/json"},
      {"Gatehouse-Event", kind}};
    if (bulk)
      headers["Gatehouse-Bulk"] = "true";
    if (unavailable)
      headers["Gatehouse-Commits"] = "unavailable";
    CHECK(m.headers == headers);
    auto& b = m.body;
    CHECK(b["object_kind"] == kind);
    CHECK(b["event_name"] == kind);
    CHECK(b["user_id"] == 2);
    CHECK(b["user_username"] == "alice");
    CHECK(b["user_name"] == "Alice Developer");
    CHECK(b["project_id"] == project_id);
    CHECK(b["push_options"] == json::object());
    REQUIRE(b["project"].is_object());
    CHECK(b["project"]["id"] == project_id);
    auto path = project_id == 10 ? "acme/widgets" : "acme/remote";
    CHECK(b["project"]["path_with_namespace"] == path);
    CHECK(b["project"]["web_url"] == external_url + "/" + path);
    CHECK(b["project"]["git_ssh_url"]
          == std::string{"git@gitlab.example.com:"} + path + ".git");
    CHECK(b["project"]["git_http_url"] == external_url + "/" + path + ".git");
    CHECK(b["project"]["default_branch"] == "main");
    CHECK(b["project"]["visibility_level"] == 0);
    CHECK(b["repository"]["git_ssh_url"] == b["project"]["git_ssh_url"]);
    CHECK(b["total_commits_count"].is_number_integer());
  };

  // The new branch: the commits not on the default branch, oldest first.
  REQUIRE(by_ref["refs/heads/feature"].size() == 1);
  {
    const auto& m = *by_ref["refs/heads/feature"][0];
    check_common(m, "push", 10, false, false);
    auto& b = m.body;
    CHECK(b["before"] == zeros);
    CHECK(b["after"] == f3);
    CHECK(b["ref"] == "refs/heads/feature");
    CHECK(b["ref_protected"] == false);
    CHECK(b["checkout_sha"] == f3);
    // Project#hook_attrs (contract §7.2): `namespace` is the namespace's
    // *name* ("Acme"; its path is "acme"), `description` the project's, as
    // seeded; the deprecated `repository{}` repeats the description.
    CHECK(b["project"]["namespace"] == "Acme");
    CHECK(b["project"]["description"] == "Widgets for everyone");
    CHECK(b["repository"]["description"] == "Widgets for everyone");
    CHECK(b["message"].is_null());
    auto expected = rev_list(repo.path(), "main..feature");
    CHECK(expected == std::vector<std::string>{f1, f2, f3});
    CHECK(commit_ids(b) == expected);
    CHECK(b["total_commits_count"] == 3);
    if (b["commits"].size() == 3) {
      auto& first = b["commits"][0];
      CHECK(first["title"] == "feature one");
      CHECK_THAT(first["message"].get<std::string>(),
                 Catch::StartsWith("feature one"));
      CHECK(first["url"] == external_url + "/acme/widgets/-/commit/" + f1);
      CHECK(first["author"]
            == json{{"name", "Test Author"}, {"email", "author@example.com"}});
      CHECK_THAT(first["timestamp"].get<std::string>(),
                 Catch::StartsWith("2026-01-01T00:00:00"));
      CHECK(first["added"] == json::array({"feature1.txt"}));
      CHECK(first["modified"] == json::array());
      CHECK(first["removed"] == json::array());
      CHECK(b["commits"][1]["modified"] == json::array({"README.md"}));
      CHECK(b["commits"][2]["title"] == "feature three");
      CHECK_THAT(b["commits"][2]["message"].get<std::string>(),
                 Catch::StartsWith("feature three\n\nwith a body"));
    }
  }
  // The default branch: oldrev..newrev.
  REQUIRE(by_ref["refs/heads/main"].size() == 1);
  {
    const auto& m = *by_ref["refs/heads/main"][0];
    check_common(m, "push", 10, false, false);
    auto& b = m.body;
    CHECK(b["before"] == c2);
    CHECK(b["after"] == m3);
    CHECK(b["ref_protected"] == true);
    CHECK(b["checkout_sha"] == m3);
    CHECK(commit_ids(b) == rev_list(repo.path(), c2 + ".." + m3));
    CHECK(b["total_commits_count"] == 1);
  }
  // The annotated tag: tag_push, the tagged commit, the tag message.
  REQUIRE(by_ref["refs/tags/v1.0"].size() == 1);
  {
    const auto& m = *by_ref["refs/tags/v1.0"][0];
    check_common(m, "tag_push", 10, false, false);
    auto& b = m.body;
    CHECK(b["before"] == zeros);
    CHECK(b["after"] == tag_object);
    CHECK(b["checkout_sha"] == m3);
    REQUIRE(b["message"].is_string());
    CHECK_THAT(b["message"].get<std::string>(),
               Catch::StartsWith("Release 1.0"));
    // Git::TagHooksService: [tag_commit], counted.
    CHECK(commit_ids(b) == std::vector<std::string>{m3});
    CHECK(b["total_commits_count"] == 1);
  }
  // The bulk push: every ref its own event, each marked bulk.
  for (int i = 1; i <= 4; ++i) {
    auto ref = "refs/heads/b" + std::to_string(i);
    INFO(ref);
    auto& list = by_ref[ref];
    // b1, b2: also in the mixed push; b4: also deleted later.
    REQUIRE(list.size() == (i == 3 ? 1u : 2u));
    const auto& m = *list[0];
    check_common(m, "push", 10, true, false);
    CHECK(m.body["before"] == zeros);
    CHECK(m.body["after"] == f3);
    CHECK(commit_ids(m.body) == rev_list(repo.path(), m3 + ".." + f3));
  }
  // The mixed push: four branch refs, but at most two per action.
  for (const char* ref : {"refs/heads/c1", "refs/heads/c2"}) {
    INFO(ref);
    REQUIRE(by_ref[ref].size() == 1);
    check_common(*by_ref[ref][0], "push", 10, false, false);
  }
  for (const char* ref : {"refs/heads/b1", "refs/heads/b2"}) {
    INFO(ref);
    const auto& m = *by_ref[ref][1];
    check_common(m, "push", 10, false, false);
    CHECK(m.body["before"] == f2);
    CHECK(commit_ids(m.body) == std::vector<std::string>{f3});
    CHECK(m.body["total_commits_count"] == 1);
  }
  // The 22-commit branch: the newest 20, oldest first; the real count.
  REQUIRE(by_ref["refs/heads/long"].size() == 1);
  {
    const auto& m = *by_ref["refs/heads/long"][0];
    check_common(m, "push", 10, false, false);
    auto all = rev_list(repo.path(), "main..long");
    REQUIRE(all.size() == 22);
    CHECK(commit_ids(m.body)
          == std::vector<std::string>(all.begin() + 2, all.end()));
    CHECK(m.body["total_commits_count"] == 22);
  }
  // The deletion (the second event of b4): no commits, no checkout sha.
  {
    const auto& m = *by_ref["refs/heads/b4"][1];
    check_common(m, "push", 10, false, false);
    CHECK(m.body["before"] == f3);
    CHECK(m.body["after"] == zeros);
    CHECK(m.body["checkout_sha"].is_null());
    CHECK(m.body["commits"] == json::array());
    CHECK(m.body["total_commits_count"] == 0);
  }
  // No local path: marked, empty, zero.
  REQUIRE(by_ref["p11"].size() == 1);
  {
    const auto& m = *by_ref["p11"][0];
    check_common(m, "push", 11, false, true);
    CHECK(m.body["after"] == fake_sha(77));
    CHECK(m.body["commits"] == json::array());
    CHECK(m.body["total_commits_count"] == 0);
  }
}

TEST_CASE_METHOD(push_fixture,
                 "events committed while nats-server is down arrive once it "
                 "is back, each exactly once",
                 "[.integration][push]") {
  auto c1 = repo.commit("README.md", "one\n", "first");
  repo.push("main:main");
  auto f1 = repo.commit("f.txt", "f\n", "feature");
  repo.push("main:refs/heads/feature");
  gh->start();
  hook_caller api{*gh};
  {
    js_reader js{nats.url()};
    require_accepted(
      "warm-up",
      api.post_receive("project-11", "key-2",
                       zeros + " " + fake_sha(1) + " refs/heads/main\n"));
    REQUIRE(js.wait_for(1));
  }
  REQUIRE(eventually([&] { return unpublished(*gh) == 0; }));

  nats.stop();
  int events = 0;
  for (int i = 0; i < 4; ++i) {
    auto r = api.post_receive("project-11", "key-2",
                              fake_sha(1 + i) + " " + fake_sha(2 + i)
                                + " refs/heads/main\n");
    require_accepted("post_receive while NATS is down", r);
    ++events;
  }
  auto r = api.post_receive("project-10", "key-2",
                            zeros + " " + f1 + " refs/heads/feature\n" + zeros
                              + " " + c1 + " refs/tags/v0.1\n");
  require_accepted("two refs while NATS is down", r);
  events += 2;
  // Committed to the outbox, none published.
  CHECK(unpublished(*gh) == events);
  CHECK(outbox_rows(*gh) == 1 + events);
  // Readiness stays 200: Gatehouse still decides and queues events.
  int status = 0;
  gh->readiness(&status);
  CHECK(status == 200);

  nats.start(); // same port, same store directory
  js_reader js{nats.url()};
  REQUIRE(js.wait_for(1 + events, 30s));
  wait_all_published(*gh);
  auto msgs = js.read_all();
  CHECK(msgs.size() == static_cast<std::size_t>(1 + events));
  check_exactly_once(*gh, msgs);
}

TEST_CASE_METHOD(push_fixture,
                 "events pending when Gatehouse is killed with SIGKILL are "
                 "published once by the next Gatehouse",
                 "[.integration][push]") {
  auto first = gh->spawn();
  int events = 0;
  {
    hook_caller api{*gh};
    js_reader js{nats.url()};
    require_accepted(
      "warm-up",
      api.post_receive("project-11", "key-2",
                       zeros + " " + fake_sha(1) + " refs/heads/main\n"));
    ++events;
    REQUIRE(js.wait_for(1));
  }
  REQUIRE(eventually([&] { return unpublished(*gh) == 0; }));

  nats.stop();
  {
    hook_caller api{*gh};
    for (int i = 0; i < 5; ++i) {
      std::string changes;
      // Pushes of one, two and four refs (the last one a bulk push).
      int refs = i == 4 ? 4 : 1 + i % 2;
      for (int k = 0; k < refs; ++k)
        changes += zeros + " " + fake_sha(100 + i * 10 + k) + " refs/heads/b"
          + std::to_string(i) + "-" + std::to_string(k) + "\n";
      require_accepted("post_receive while NATS is down",
                       api.post_receive("project-11", "key-2", changes));
      events += refs;
    }
  }
  CHECK(unpublished(*gh) == events - 1);
  CHECK(first->stop(SIGKILL) == 128 + SIGKILL);

  // A new Gatehouse on the same database, still without NATS.
  auto second = gh->spawn();
  {
    hook_caller api{*gh};
    require_accepted(
      "post_receive on the new Gatehouse",
      api.post_receive("project-10", "key-2",
                       zeros + " " + fake_sha(999) + " refs/heads/late\n"));
    ++events;
  }
  CHECK(unpublished(*gh) == events - 1);

  nats.start();
  js_reader js{nats.url()};
  REQUIRE(js.wait_for(events, 30s));
  wait_all_published(*gh);
  auto msgs = js.read_all();
  CHECK(msgs.size() == static_cast<std::size_t>(events));
  check_exactly_once(*gh, msgs);
  // Order per project survived the crash.
  std::vector<std::string> refs;
  for (const auto& m : msgs)
    if (m.subject == "gitlab.events.push.11")
      refs.push_back(m.body.value("ref", ""));
  std::vector<std::string> expected{"refs/heads/main"};
  for (int i = 0; i < 5; ++i)
    for (int k = 0; k < (i == 4 ? 4 : 1 + i % 2); ++k)
      expected.push_back("refs/heads/b" + std::to_string(i) + "-"
                         + std::to_string(k));
  CHECK(refs == expected);
  CHECK(second->stop(SIGTERM) == 0);
}

TEST_CASE_METHOD(push_fixture,
                 "gatehouse events tail --from-start prints the pushed events "
                 "as JSON lines with their headers",
                 "[.integration][push]") {
  gh->start();
  hook_caller api{*gh};
  js_reader js{nats.url()};
  require_accepted("push",
                   api.post_receive("project-11", "key-2",
                                    zeros + " " + fake_sha(5)
                                      + " refs/heads/main\n" + zeros + " "
                                      + fake_sha(6) + " refs/tags/v1\n"));
  REQUIRE(js.wait_for(2));

  child tail{{binary(), "events", "tail", "--from-start"},
             {{"GATEHOUSE_NATS_URL", nats.url()}},
             make_temp_dir("tail") + "/tail"};
  REQUIRE(eventually(
    [&] { return tail.err().find("tailing stream") != std::string::npos; },
    15s));
  // And one pushed while it tails.
  require_accepted(
    "push while tailing",
    api.post_receive("project-11", "key-2",
                     fake_sha(5) + " " + fake_sha(7) + " refs/heads/main\n"));
  // The stream is complete once the outbox is; the tail has printed all of
  // it once it printed the stream's last message.
  wait_all_published(*gh);
  auto msgs = js.read_all();
  REQUIRE(msgs.size() == 3);
  REQUIRE(eventually(
    [&] {
      auto lines = lines_of(tail.out());
      if (lines.empty())
        return false;
      auto last = json::parse(lines.back(), nullptr, false);
      return last.is_object()
        && last.value("sequence", std::uint64_t{0}) == msgs.back().sequence;
    },
    15s));
  CHECK(tail.stop(SIGINT) == 0);

  auto lines = lines_of(tail.out());
  REQUIRE(lines.size() == 3);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    INFO("line " << lines[i]);
    auto line = json::parse(lines[i], nullptr, false);
    REQUIRE(line.is_object());
    const auto& m = msgs[i];
    CHECK(line["subject"] == m.subject);
    CHECK(line["sequence"] == m.sequence);
    json headers = json::object();
    for (const auto& [k, v] : m.headers)
      headers[k] = v;
    CHECK(line["headers"] == headers);
    CHECK(line["data"] == m.body);
  }
  CHECK(msgs[0].subject == "gitlab.events.push.11");
  CHECK(msgs[1].subject == "gitlab.events.tag_push.11");
  CHECK(msgs[2].body["after"] == fake_sha(7));
}

TEST_CASE_METHOD(push_fixture,
                 "post_receive for an unknown repository or user answers 200 "
                 "and publishes nothing",
                 "[.integration][push]") {
  gh->start();
  hook_caller api{*gh};
  js_reader js{nats.url()};
  const auto changes = zeros + " " + fake_sha(3) + " refs/heads/topic\n";
  for (auto [glr, identifier] :
       std::vector<std::pair<std::string, std::string>>{
         {"project-999", "key-2"},
         {"project-999", "user-2"},
         {"project-11", "user-999"},
         {"project-11", "key-999"},
         // A wiki push fires wiki events in GitLab, not push hooks.
         {"wiki-11", "user-2"}}) {
    auto r = api.post_receive(glr, identifier, changes);
    INFO(glr << " " << identifier);
    require_accepted("unknown repository or user", r);
  }
  CHECK(outbox_rows(*gh) == 0);
  // A known push afterwards: the only event on the stream.
  require_accepted("known push",
                   api.post_receive("project-11", "user-2", changes));
  REQUIRE(js.wait_for(1));
  wait_all_published(*gh);
  auto msgs = js.read_all();
  REQUIRE(msgs.size() == 1);
  CHECK(msgs[0].subject == "gitlab.events.push.11");
  CHECK(outbox_rows(*gh) == 1);
}

TEST_CASE_METHOD(push_fixture,
                 "sequential pushes of one project reach the stream in the "
                 "order they were answered",
                 "[.integration][push]") {
  gh->start();
  hook_caller api{*gh};
  js_reader js{nats.url()};
  std::vector<std::string> sent;
  for (int i = 1; i <= 20; ++i) {
    auto after = fake_sha(1000 + i);
    require_accepted(
      "push " + std::to_string(i),
      api.post_receive("project-11", "key-2",
                       fake_sha(999 + i) + " " + after + " refs/heads/main\n"));
    sent.push_back(after);
  }
  REQUIRE(js.wait_for(20));
  auto msgs = js.read_all();
  REQUIRE(msgs.size() == 20);
  std::vector<std::string> seen;
  std::uint64_t last_sequence = 0;
  for (const auto& m : msgs) {
    CHECK(m.subject == "gitlab.events.push.11");
    CHECK(m.sequence > last_sequence);
    last_sequence = m.sequence;
    seen.push_back(m.body.value("after", ""));
  }
  CHECK(seen == sent);
  check_exactly_once(*gh, msgs);
}
