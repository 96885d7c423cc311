// The push store actor against a real PostgreSQL server: the reference
// counter (GitLab's Redis counter semantics) and the one post_receive
// transaction (counter, moved message, outbox, NOTIFY). Hidden tag [.pg].

#include "storage/push_store.hpp"
#include "tests/outbox/outbox_fixtures.hpp"

#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;

namespace {

struct store_fixture : migrated_database {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  push_store_actor store = spawn_store(db.url());

  ~store_fixture() {
    self->send_exit(store, caf::exit_reason::user_shutdown);
  }

  push_store_actor spawn_store(const std::string& url) {
    storage::push_store_settings settings;
    settings.database_url = url;
    settings.statement_timeout = 5s;
    return sys.spawn<caf::detached>(storage::push_store, settings);
  }

  template <class T, class... Ts>
  caf::expected<T> request(const push_store_actor& hdl, Ts&&... xs) {
    caf::expected<T> out = caf::make_error(errc::internal, "no answer");
    self->request(hdl, std::chrono::seconds{10}, std::forward<Ts>(xs)...)
      .receive([&](T& x) { out = std::move(x); },
               [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  bool pre(const std::string& repo) {
    auto r = request<bool>(store, atom::pre_receive::value, repo);
    REQUIRE(r);
    return *r;
  }

  caf::expected<post_receive_written> post(post_receive_write w) {
    return request<post_receive_written>(store, atom::post_receive::value,
                                         std::move(w));
  }

  post_receive_write write_for(const std::string& repo) {
    post_receive_write w;
    w.gl_repository = repo;
    return w;
  }

  std::string counter(const std::string& repo) {
    return query("SELECT value FROM gatehouse_state.reference_counters "
                 "WHERE gl_repository = '"
                 + repo + "'");
  }
};

outbox_event make_event(const std::string& id, std::int64_t project,
                        const std::string& kind = "push") {
  outbox_event e;
  e.event_id = id;
  e.project_id = project;
  e.kind = kind;
  e.subject = "gitlab.events." + kind + "." + std::to_string(project);
  e.body = nlohmann::json{{"object_kind", kind}, {"event_id", id}}.dump();
  return e;
}

} // namespace

TEST_CASE_METHOD(store_fixture,
                 "pre_receive counts up with a 600 s expiry; post_receive "
                 "counts down and deletes below zero",
                 "[.pg]") {
  CHECK(pre("project-1"));
  CHECK(counter("project-1") == "1");
  CHECK(query("SELECT expires_at BETWEEN now() + interval '590 seconds' AND "
              "now() + interval '610 seconds' FROM "
              "gatehouse_state.reference_counters WHERE gl_repository = "
              "'project-1'")
        == "t");
  CHECK(pre("project-1"));
  CHECK(counter("project-1") == "2");
  CHECK(pre("wiki-1"));
  CHECK(counter("wiki-1") == "1");

  auto w = post(write_for("project-1"));
  REQUIRE(w);
  CHECK(w->counter_decreased);
  CHECK(w->moved_message.empty());
  CHECK(counter("project-1") == "1");
  REQUIRE(post(write_for("project-1")));
  // Redis DECR to 0 keeps the key.
  CHECK(counter("project-1") == "0");
  // Below zero: the key is deleted, and the decrement still succeeded.
  w = post(write_for("project-1"));
  REQUIRE(w);
  CHECK(w->counter_decreased);
  CHECK(counter("project-1") == "");
  // A repository never counted: the same.
  w = post(write_for("project-99"));
  REQUIRE(w);
  CHECK(w->counter_decreased);
  CHECK(counter("project-99") == "");
  CHECK(counter("wiki-1") == "1");
}

TEST_CASE_METHOD(store_fixture,
                 "an expired counter counts from zero and is deleted by a "
                 "decrement",
                 "[.pg]") {
  CHECK(pre("project-2"));
  CHECK(pre("project-2"));
  CHECK(pre("project-2"));
  CHECK(counter("project-2") == "3");
  exec(*conn,
       "UPDATE gatehouse_state.reference_counters SET expires_at = "
       "now() - interval '1 second' WHERE gl_repository = 'project-2'");
  CHECK(pre("project-2"));
  CHECK(counter("project-2") == "1");
  CHECK(query("SELECT expires_at > now() + interval '590 seconds' FROM "
              "gatehouse_state.reference_counters WHERE gl_repository = "
              "'project-2'")
        == "t");

  exec(*conn,
       "UPDATE gatehouse_state.reference_counters SET expires_at = "
       "now() - interval '1 second' WHERE gl_repository = 'project-2'");
  auto w = post(write_for("project-2"));
  REQUIRE(w);
  CHECK(w->counter_decreased);
  CHECK(counter("project-2") == "");
}

TEST_CASE_METHOD(store_fixture,
                 "post_receive commits the events in order, takes the moved "
                 "message and notifies the relay",
                 "[.pg]") {
  // A listener, as the relay has.
  auto listener = storage::connect(db.url(), 5s);
  struct receiver : pqxx::notification_receiver {
    using pqxx::notification_receiver::notification_receiver;
    void operator()(const std::string& payload, int) override {
      payloads.push_back(payload);
    }
    std::vector<std::string> payloads;
  } rx{*listener, "gatehouse_outbox"};

  exec(*conn,
       "INSERT INTO gatehouse_state.project_moved_messages (user_id, "
       "project_id, message, expires_at) VALUES (3, 7, 'moved!', "
       "now() + interval '5 minutes'), (4, 7, 'stale', now() - "
       "interval '1 second')");
  REQUIRE(pre("project-7"));

  auto w = write_for("project-7");
  w.user_id = 3;
  w.project_id = 7;
  w.events.push_back(make_event("6f1c2d3e-0000-4000-8000-000000000001", 7));
  w.events.push_back(make_event("6f1c2d3e-0000-4000-8000-000000000002", 7));
  w.events.push_back(
    make_event("6f1c2d3e-0000-4000-8000-000000000003", 7, "tag_push"));
  w.events[1].bulk = true;
  w.events[2].commits_unavailable = true;
  auto written = post(w);
  REQUIRE(written);
  CHECK(written->counter_decreased);
  CHECK(written->moved_message == "moved!");
  CHECK(counter("project-7") == "0");
  CHECK(query("SELECT count(*) FROM gatehouse_state.project_moved_messages "
              "WHERE user_id = 3")
        == "0");

  {
    pqxx::nontransaction tx{*conn};
    auto rows = tx.exec(
      "SELECT event_id::text, project_id, subject, kind, bulk, "
      "commits_unavailable, body, published_at IS NULL, attempts, created_at "
      "IS NOT NULL FROM gatehouse_state.outbox ORDER BY seq");
    REQUIRE(rows.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      const auto& e = w.events[i];
      CHECK(rows[i][0].as<std::string>() == e.event_id);
      CHECK(rows[i][1].as<std::int64_t>() == 7);
      CHECK(rows[i][2].as<std::string>() == e.subject);
      CHECK(rows[i][3].as<std::string>() == e.kind);
      CHECK(rows[i][4].as<bool>() == e.bulk);
      CHECK(rows[i][5].as<bool>() == e.commits_unavailable);
      CHECK(rows[i][6].as<std::string>() == e.body);
      CHECK(rows[i][7].as<bool>());
      CHECK(rows[i][8].as<int>() == 0);
      CHECK(rows[i][9].as<bool>());
    }
  }

  REQUIRE(eventually([&] {
    listener->get_notifs();
    return !rx.payloads.empty();
  }));
  CHECK(rx.payloads.front() == "7");

  // An expired moved message is not handed out (and is consumed).
  auto w2 = write_for("project-7");
  w2.user_id = 4;
  w2.project_id = 7;
  written = post(w2);
  REQUIRE(written);
  CHECK(written->moved_message.empty());
  // Unknown user: the message stays for its owner.
  exec(*conn,
       "INSERT INTO gatehouse_state.project_moved_messages (user_id, "
       "project_id, message, expires_at) VALUES (5, 8, 'kept', now() "
       "+ interval '5 minutes')");
  auto w3 = write_for("project-8");
  w3.project_id = 8;
  written = post(w3);
  REQUIRE(written);
  CHECK(written->moved_message.empty());
  CHECK(query("SELECT message FROM gatehouse_state.project_moved_messages "
              "WHERE user_id = 5")
        == "kept");
}

TEST_CASE_METHOD(store_fixture,
                 "post_receive is one transaction: a failure commits nothing",
                 "[.pg]") {
  exec(*conn,
       "INSERT INTO gatehouse_state.project_moved_messages (user_id, "
       "project_id, message, expires_at) VALUES (3, 9, 'moved!', "
       "now() + interval '5 minutes')");
  REQUIRE(pre("project-9"));
  REQUIRE(pre("project-9"));

  SECTION("a duplicate event id fails the insert after the counter change") {
    auto w = write_for("project-9");
    w.user_id = 3;
    w.project_id = 9;
    w.events.push_back(make_event("7a1c2d3e-0000-4000-8000-000000000001", 9));
    w.events.push_back(make_event("7a1c2d3e-0000-4000-8000-000000000001", 9));
    auto written = post(w);
    REQUIRE_FALSE(written);
    CHECK(classify(written.error()) == errc::unavailable);
  }
  SECTION("an event id that is no UUID") {
    auto w = write_for("project-9");
    w.user_id = 3;
    w.project_id = 9;
    w.events.push_back(make_event("7a1c2d3e-0000-4000-8000-000000000002", 9));
    w.events.push_back(make_event("not-a-uuid", 9));
    auto written = post(w);
    REQUIRE_FALSE(written);
    CHECK(classify(written.error()) == errc::unavailable);
  }
  SECTION("an event id already in the outbox from an earlier push") {
    auto first = write_for("project-9");
    first.events.push_back(
      make_event("7a1c2d3e-0000-4000-8000-000000000003", 9));
    REQUIRE(post(first));
    REQUIRE(pre("project-9"));
    auto w = write_for("project-9");
    w.user_id = 3;
    w.project_id = 9;
    w.events.push_back(make_event("7a1c2d3e-0000-4000-8000-000000000004", 9));
    w.events.push_back(make_event("7a1c2d3e-0000-4000-8000-000000000003", 9));
    REQUIRE_FALSE(post(w));
    exec(*conn, "DELETE FROM gatehouse_state.outbox");
  }
  // Nothing of it was committed.
  CHECK(counter("project-9") == "2");
  CHECK(query("SELECT count(*) FROM gatehouse_state.outbox") == "0");
  CHECK(query("SELECT message FROM gatehouse_state.project_moved_messages "
              "WHERE user_id = 3 AND project_id = 9")
        == "moved!");
  // And the store still works.
  auto ok = write_for("project-9");
  ok.user_id = 3;
  ok.project_id = 9;
  ok.events.push_back(make_event("7a1c2d3e-0000-4000-8000-0000000000ff", 9));
  auto written = post(ok);
  REQUIRE(written);
  CHECK(written->moved_message == "moved!");
  CHECK(counter("project-9") == "1");
  CHECK(query("SELECT count(*) FROM gatehouse_state.outbox") == "1");
}

TEST_CASE_METHOD(store_fixture,
                 "concurrent post_receives of one project get seq in commit "
                 "order",
                 "[.pg]") {
  // Several stores (several replicas) write events of one project at once,
  // while a reader watches the outbox as the relay does: every snapshot must
  // show a gap-free run of seq, or a relay could publish seq n+1 before a
  // still uncommitted seq n.
  std::vector<push_store_actor> stores;
  for (int i = 0; i < 4; ++i)
    stores.push_back(spawn_store(db.url()));
  constexpr int per_store = 50;
  std::atomic<bool> done{false};
  std::atomic<int> snapshots{0};
  std::atomic<int> holes{0};
  std::thread watcher{[&] {
    auto c = storage::connect(db.url(), 5s);
    while (!done) {
      pqxx::nontransaction tx{*c};
      auto r = tx.exec("SELECT min(seq), max(seq), count(*) FROM "
                       "gatehouse_state.outbox WHERE project_id = 11");
      if (!r[0][0].is_null()
          && r[0][1].as<std::int64_t>() - r[0][0].as<std::int64_t>() + 1
            != r[0][2].as<std::int64_t>())
        ++holes;
      ++snapshots;
    }
  }};
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int i = 0; i < 4; ++i)
    writers.emplace_back([&, i] {
      caf::scoped_actor me{sys};
      for (int n = 0; n < per_store; ++n) {
        post_receive_write w;
        w.gl_repository = "project-11";
        w.project_id = 11;
        char id[64];
        std::snprintf(id, sizeof id, "8b1c2d3e-0000-4000-8000-%06d%06d", i, n);
        w.events.push_back(make_event(id, 11));
        w.events.push_back(
          make_event(std::string{id}.replace(9, 4, "1111"), 11));
        bool ok = false;
        me->request(stores[i], 10s, atom::post_receive::value, w)
          .receive([&](post_receive_written&) { ok = true; },
                   [&](caf::error&) {});
        if (!ok)
          ++failures;
      }
    });
  for (auto& t : writers)
    t.join();
  done = true;
  watcher.join();
  for (auto& s : stores)
    self->send_exit(s, caf::exit_reason::user_shutdown);
  CHECK(failures == 0);
  CHECK(query("SELECT count(*) FROM gatehouse_state.outbox") == "400");
  CHECK(snapshots > 10);
  CHECK(holes == 0);
  // The two events of one push are adjacent.
  CHECK(query("SELECT count(*) FROM gatehouse_state.outbox a JOIN "
              "gatehouse_state.outbox b ON b.seq = a.seq + 1 WHERE "
              "substr(a.event_id::text, 10, 4) = '0000' AND "
              "substr(b.event_id::text, 10, 4) = '1111' AND "
              "substr(a.event_id::text, 14) = substr(b.event_id::text, 14)")
        == "200");
}

namespace {

/// Holds a push store in one transaction while more post_receives queue
/// behind it: the first push waits on a row lock this fixture holds; the
/// pushes sent meanwhile make up the store's next batch, all at once.
struct batch_fixture : store_fixture {
  std::unique_ptr<pqxx::connection> blocker_conn
    = storage::connect(db.url(), 10s);
  std::optional<pqxx::work> blocker;
  std::vector<std::thread> callers;
  std::atomic<int> sent{0};

  ~batch_fixture() {
    release();
    for (auto& t : callers)
      if (t.joinable())
        t.join();
  }

  /// Answers land in `out`, an error when the store refused. Returns once
  /// the request is in the store's mailbox, so sends queue in call order.
  void send(post_receive_write w, caf::expected<post_receive_written>* out) {
    int queued = sent + 1;
    callers.emplace_back([this, w = std::move(w), out] {
      caf::scoped_actor me{sys};
      auto pending = me->request(store, 30s, atom::post_receive::value, w);
      // The request is in the store's mailbox once request() returns.
      ++sent;
      pending.receive([&](post_receive_written& x) { *out = std::move(x); },
                      [&](caf::error& e) { *out = std::move(e); });
    });
    REQUIRE(eventually([&] { return sent == queued; }));
  }

  /// Counts a push; the answer lands in `out`. Returns once the request
  /// is in the store's mailbox.
  void send_count(std::string repo, std::string id, std::optional<bool>* out) {
    int queued = sent + 1;
    callers.emplace_back([this, repo, id, out] {
      caf::scoped_actor me{sys};
      auto pending
        = id.empty()
            ? me->request(store, 30s, atom::pre_receive::value, repo)
            : me->request(store, 30s, atom::pre_receive::value, repo, id);
      ++sent;
      pending.receive([&](bool x) { *out = x; }, [&](caf::error&) {});
    });
    REQUIRE(eventually([&] { return sent == queued; }));
  }

  /// Sends `first`, which the store starts writing and then waits on.
  void occupy(post_receive_write first,
              caf::expected<post_receive_written>* out) {
    REQUIRE(pre(first.gl_repository));
    blocker.emplace(*blocker_conn);
    blocker->exec("SELECT 1 FROM gatehouse_state.reference_counters WHERE "
                  "gl_repository = "
                  + blocker->quote(first.gl_repository) + " FOR UPDATE");
    send(std::move(first), out);
    REQUIRE(eventually([&] {
      return query("SELECT count(*) FROM pg_stat_activity WHERE "
                   "wait_event_type = 'Lock' AND query LIKE "
                   "'%post_receive_batch%'")
        == "1";
    }));
  }


  void release() {
    if (blocker) {
      blocker->commit();
      blocker.reset();
    }
  }

  void join() {
    for (auto& t : callers)
      t.join();
    callers.clear();
  }
};

post_receive_write push_with_event(std::int64_t project, std::int64_t user,
                                   const std::string& event_id) {
  post_receive_write w;
  w.gl_repository = "project-" + std::to_string(project);
  w.project_id = project;
  w.user_id = user;
  w.events.push_back(make_event(event_id, project));
  return w;
}

} // namespace

TEST_CASE_METHOD(batch_fixture,
                 "post_receives queued during a commit are written in one "
                 "transaction, each answered with its own result",
                 "[.pg]") {
  exec(*conn,
       "INSERT INTO gatehouse_state.project_moved_messages (user_id, "
       "project_id, message, expires_at) SELECT u, 30 + u, 'moved ' || u, "
       "now() + interval '5 minutes' FROM generate_series(1, 4) AS u");
  for (int i = 1; i <= 4; ++i)
    REQUIRE(pre("project-" + std::to_string(30 + i)));
  REQUIRE(pre("project-31"));
  std::atomic<int> woken{0};
  self->send_exit(store, caf::exit_reason::user_shutdown);
  storage::push_store_settings settings;
  settings.database_url = db.url();
  settings.on_events_committed = [&] { ++woken; };
  store = sys.spawn<caf::detached>(storage::push_store, settings);

  caf::expected<post_receive_written> first = caf::error{};
  occupy(push_with_event(29, 9, "5d1c2d3e-0000-4000-8000-000000000029"),
         &first);
  std::vector<caf::expected<post_receive_written>> answers(4, caf::error{});
  std::vector<std::string> bodies;
  for (int i = 1; i <= 4; ++i) {
    auto w = push_with_event(30 + i, i,
                             "5d1c2d3e-0000-4000-8000-00000000003"
                               + std::to_string(i));
    // Multi-byte UTF-8 and JSON escapes travel byte for byte.
    w.events.front().body = nlohmann::json{{"message", std::string(i, 'x')
                                                         + " Grüße 🚀 \"q\" "
                                                         + "\\ \n"}}
                              .dump();
    bodies.push_back(w.events.front().body);
    send(std::move(w), &answers[i - 1]);
  }
  release();
  join();

  REQUIRE(first);
  CHECK(first->moved_message.empty());
  for (int i = 1; i <= 4; ++i) {
    INFO("push " << i);
    REQUIRE(answers[i - 1]);
    CHECK(answers[i - 1]->counter_decreased);
    CHECK(answers[i - 1]->moved_message == "moved " + std::to_string(i));
  }
  // project-31 was counted twice, the others once.
  CHECK(counter("project-31") == "1");
  for (int i = 2; i <= 4; ++i)
    CHECK(counter("project-" + std::to_string(30 + i)) == "0");
  CHECK(query("SELECT count(*) FROM gatehouse_state.project_moved_messages")
        == "0");
  // The four queued pushes: one transaction, events in the order sent.
  CHECK(query("SELECT count(DISTINCT xmin::text) FROM gatehouse_state.outbox "
              "WHERE project_id BETWEEN 31 AND 34")
        == "1");
  CHECK(query("SELECT string_agg(project_id::text, ',' ORDER BY seq) FROM "
              "gatehouse_state.outbox WHERE project_id BETWEEN 31 AND 34")
        == "31,32,33,34");
  for (int i = 1; i <= 4; ++i)
    CHECK(query("SELECT body FROM gatehouse_state.outbox WHERE project_id = "
                + std::to_string(30 + i))
          == bodies[i - 1]);
  CHECK(query("SELECT count(DISTINCT xmin::text) FROM gatehouse_state.outbox")
        == "2");
  // The relay was woken after each commit.
  CHECK(eventually([&] { return woken == 2; }));
}

TEST_CASE_METHOD(batch_fixture,
                 "a push that fails in a batch fails alone; the others are "
                 "written one by one",
                 "[.pg]") {
  // An event id already in the outbox: its push cannot commit.
  REQUIRE(
    post(push_with_event(40, 0, "6e1c2d3e-0000-4000-8000-000000000099")));

  caf::expected<post_receive_written> first = caf::error{};
  occupy(push_with_event(39, 9, "6e1c2d3e-0000-4000-8000-000000000039"),
         &first);
  std::vector<caf::expected<post_receive_written>> answers(5, caf::error{});
  for (int i = 1; i <= 5; ++i) {
    auto w = push_with_event(40 + i, i,
                             "6e1c2d3e-0000-4000-8000-00000000004"
                               + std::to_string(i));
    if (i == 2)
      w.events.push_back(
        make_event("6e1c2d3e-0000-4000-8000-000000000099", 42));
    if (i == 3)
      w.events.push_back(make_event("not-a-uuid", 43));
    if (i == 5)
      w.events.front().body = std::string{"{\"nul\": \"a\0b\"}", 14};
    send(std::move(w), &answers[i - 1]);
  }
  release();
  join();

  REQUIRE(first);
  CHECK(answers[0]);
  REQUIRE_FALSE(answers[1]);
  CHECK(classify(answers[1].error()) == errc::unavailable);
  REQUIRE_FALSE(answers[2]);
  CHECK(classify(answers[2].error()) == errc::unavailable);
  CHECK(answers[3]);
  REQUIRE_FALSE(answers[4]);
  CHECK(classify(answers[4].error()) == errc::unavailable);
  // The failed pushes changed nothing; the others committed.
  CHECK(query("SELECT string_agg(project_id::text, ',' ORDER BY seq) FROM "
              "gatehouse_state.outbox WHERE project_id BETWEEN 41 AND 45")
        == "41,44");
  CHECK(query("SELECT count(DISTINCT xmin::text) FROM gatehouse_state.outbox "
              "WHERE project_id IN (41, 44)")
        == "2");
}

TEST_CASE_METHOD(batch_fixture,
                 "two writes with one request id in the same queue: the "
                 "second answers what the first committed",
                 "[.pg]") {
  exec(*conn,
       "INSERT INTO gatehouse_state.project_moved_messages (user_id, "
       "project_id, message, expires_at) VALUES (5, 51, 'moved once', "
       "now() + interval '5 minutes')");
  REQUIRE(pre("project-51"));
  REQUIRE(pre("project-51"));

  caf::expected<post_receive_written> first = caf::error{};
  occupy(push_with_event(50, 9, "7f1c2d3e-0000-4000-8000-000000000050"),
         &first);
  auto w = push_with_event(51, 5, "7f1c2d3e-0000-4000-8000-000000000051");
  w.request_id = "retried-51";
  auto retry = w;
  retry.events.front().event_id = "7f1c2d3e-0000-4000-8000-000000000052";
  caf::expected<post_receive_written> a = caf::error{};
  caf::expected<post_receive_written> b = caf::error{};
  send(w, &a);
  send(retry, &b);
  release();
  join();

  REQUIRE(first);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->moved_message == "moved once");
  CHECK(b->moved_message == "moved once");
  CHECK(b->counter_decreased);
  // Counted twice, decreased once; one event.
  CHECK(counter("project-51") == "1");
  CHECK(query("SELECT string_agg(event_id::text, ',') FROM "
              "gatehouse_state.outbox WHERE project_id = 51")
        == "7f1c2d3e-0000-4000-8000-000000000051");
}

TEST_CASE_METHOD(batch_fixture,
                 "pre_receives queued during a commit are counted in one "
                 "transaction; a repeated request id counts once",
                 "[.pg]") {
  caf::expected<post_receive_written> first = caf::error{};
  occupy(push_with_event(60, 9, "8a1c2d3e-0000-4000-8000-000000000060"),
         &first);
  std::vector<std::optional<bool>> counted(5);
  send_count("project-61", "", &counted[0]);
  send_count("project-62", "count-62", &counted[1]);
  send_count("project-61", "", &counted[2]);
  send_count("project-62", "count-62", &counted[3]);
  send_count("project-61", "", &counted[4]);
  release();
  join();

  REQUIRE(first);
  for (const auto& c : counted)
    CHECK(c == std::optional<bool>{true});
  CHECK(counter("project-61") == "3");
  CHECK(counter("project-62") == "1");
  // One transaction counted both; the repeated id, deferred to the next
  // batch, changed nothing.
  CHECK(query("SELECT count(DISTINCT xmin::text) FROM "
              "gatehouse_state.reference_counters WHERE gl_repository IN "
              "('project-61', 'project-62')")
        == "1");
}

TEST_CASE("the push store answers false or unavailable when PostgreSQL is "
          "away",
          "[.pg]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  storage::push_store_settings settings;
  reserved_port nothing_there; // held, never listened on: refused
  settings.database_url = "postgresql://nobody@127.0.0.1:"
    + std::to_string(nothing_there.port()) + "/none?connect_timeout=2";
  auto store = sys.spawn<caf::detached>(storage::push_store, settings);
  bool counted = true;
  self->request(store, 10s, atom::pre_receive::value, std::string{"project-1"})
    .receive([&](bool b) { counted = b; },
             [&](caf::error&) { FAIL("pre_receive must answer false"); });
  CHECK_FALSE(counted);
  post_receive_write w;
  w.gl_repository = "project-1";
  w.events.push_back(make_event("9c1c2d3e-0000-4000-8000-000000000001", 1));
  std::optional<errc> code;
  self->request(store, 10s, atom::post_receive::value, w)
    .receive([&](post_receive_written&) {},
             [&](caf::error& e) { code = classify(e); });
  CHECK(code == errc::unavailable);
  self->send_exit(store, caf::exit_reason::user_shutdown);
}
