// The outbox relay against a real PostgreSQL and private nats-servers:
// headers and subjects, exactly-once publication across two relays (two
// replicas), per-project order, NATS outages, and a crash between publish
// and mark. Hidden tag [.nats].

#include "tests/outbox/outbox_fixtures.hpp"

#include <algorithm>
#include <set>
#include <thread>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;

namespace {

struct relay_fixture : migrated_database {
  private_nats server;

  relay_fixture() {
    server.start();
  }

  std::int64_t unpublished() {
    return count(*conn,
                 "SELECT count(*) FROM gatehouse_state.outbox WHERE "
                 "published_at IS NULL");
  }

  bool all_published(std::chrono::milliseconds limit = 20s) {
    return eventually([&] { return unpublished() == 0; }, limit);
  }

  /// Every outbox row, in seq order.
  std::vector<event_row> rows() {
    std::vector<event_row> out;
    pqxx::nontransaction tx{*conn};
    for (const auto& r :
         tx.exec("SELECT seq, event_id::text, project_id, subject, kind, "
                 "bulk, commits_unavailable, body FROM gatehouse_state.outbox "
                 "ORDER BY seq")) {
      event_row e;
      e.seq = r[0].as<std::int64_t>();
      e.event_id = r[1].as<std::string>();
      e.project_id = r[2].as<std::int64_t>();
      e.subject = r[3].as<std::string>();
      e.kind = r[4].as<std::string>();
      e.bulk = r[5].as<bool>();
      e.commits_unavailable = r[6].as<bool>();
      e.body = r[7].as<std::string>();
      out.push_back(std::move(e));
    }
    return out;
  }

  /// Checks that the stream holds exactly the outbox's events, each once,
  /// and per project in seq order.
  void check_stream_matches_outbox() {
    js_client client{server.url()};
    auto messages = client.read_all();
    auto outbox = rows();
    REQUIRE(messages.size() == outbox.size());
    std::set<std::string> ids;
    std::map<std::int64_t, std::vector<std::string>> stream_order;
    std::map<std::string, std::int64_t> project_of;
    for (const auto& e : outbox)
      project_of[e.event_id] = e.project_id;
    for (const auto& m : messages) {
      auto id = m.headers.at("Nats-Msg-Id");
      CHECK(ids.insert(id).second);
      REQUIRE(project_of.count(id) == 1);
      stream_order[project_of[id]].push_back(id);
    }
    std::map<std::int64_t, std::vector<std::string>> outbox_order;
    for (const auto& e : outbox)
      outbox_order[e.project_id].push_back(e.event_id);
    CHECK(stream_order == outbox_order);
  }
};

} // namespace

TEST_CASE_METHOD(relay_fixture,
                 "the relay publishes every row once, with the documented "
                 "subject and headers",
                 "[.nats]") {
  std::vector<event_row> expected;
  expected.push_back(insert_event(*conn, 1));
  expected.push_back(insert_event(*conn, 1, "push", true));
  expected.push_back(insert_event(*conn, 2, "tag_push", false, true));
  expected.push_back(insert_event(*conn, 1, "tag_push", true, true));
  expected.push_back(insert_event(*conn, 3, "push", false, false,
                                  "not json, still carried verbatim"));

  auto nc = connect_nats(server.url());
  nats::outbox_relay relay{fast_relay(), outbox_on(db.url()), *nc};
  relay.start();
  REQUIRE(all_published());
  CHECK(query("SELECT count(*) FROM gatehouse_state.outbox WHERE "
              "published_at < created_at")
        == "0");

  js_client client{server.url()};
  auto messages = client.read_all();
  REQUIRE(messages.size() == expected.size());
  std::map<std::string, stream_message> by_id;
  for (auto& m : messages)
    by_id[m.headers["Nats-Msg-Id"]] = m;
  for (const auto& e : expected) {
    INFO("event " << e.event_id);
    REQUIRE(by_id.count(e.event_id) == 1);
    const auto& m = by_id[e.event_id];
    CHECK(m.subject
          == "gitlab.events." + e.kind + "." + std::to_string(e.project_id));
    CHECK(m.data == e.body);
    std::map<std::string, std::string> headers{
      {"Nats-Msg-Id", e.event_id},
      {"Content-Type", "application/json"},
      {"Gatehouse-Event", e.kind}};
    if (e.bulk)
      headers["Gatehouse-Bulk"] = "true";
    if (e.commits_unavailable)
      headers["Gatehouse-Commits"] = "unavailable";
    CHECK(m.headers == headers);
  }
  // Order within project 1 is seq order.
  std::vector<std::string> project1;
  for (auto& m : messages)
    if (m.subject.rfind(".1") == m.subject.size() - 2)
      project1.push_back(m.headers["Nats-Msg-Id"]);
  CHECK(project1
        == std::vector<std::string>{expected[0].event_id, expected[1].event_id,
                                    expected[3].event_id});

  // Nothing is published twice, also not after further passes.
  std::this_thread::sleep_for(600ms);
  CHECK(client.stream_messages() == 5);
  auto stats = relay.stats();
  CHECK(stats.published == 5);
  CHECK(stats.duplicates == 0);
  CHECK(stats.failures == 0);
  CHECK(stats.database_connected);
  CHECK(eventually([&] { return relay.stats().pending == 0; }));

  // A row committed later is picked up from its NOTIFY (well before the
  // 200 ms poll would matter, but either way within a second).
  auto later = insert_event(*conn, 2);
  REQUIRE(all_published(5s));
  CHECK(client.stream_messages() == 6);
  relay.stop();
  nc->stop();
}

TEST_CASE_METHOD(relay_fixture,
                 "two relays (two replicas) keep per-project order and "
                 "publish every event exactly once",
                 "[.nats]") {
  auto nc1 = connect_nats(server.url());
  auto nc2 = connect_nats(server.url());
  auto settings = fast_relay();
  settings.batch_size = 7; // many passes, many lock hand-overs
  settings.max_projects = 3;
  nats::outbox_relay relay1{settings, outbox_on(db.url()), *nc1};
  nats::outbox_relay relay2{settings, outbox_on(db.url()), *nc2};
  relay1.start();
  relay2.start();

  // Two writers (disjoint projects) commit while both relays run.
  constexpr int per_writer = 300;
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w)
    writers.emplace_back([&, w] {
      auto c = storage::connect(db.url(), 10s);
      for (int n = 0; n < per_writer; ++n) {
        insert_event(*c, 10 + w * 3 + n % 3, n % 5 == 0 ? "tag_push" : "push");
        if (n % 50 == 0)
          std::this_thread::sleep_for(5ms);
      }
    });
  for (auto& t : writers)
    t.join();
  REQUIRE(all_published(60s));
  relay1.stop();
  relay2.stop();

  check_stream_matches_outbox();
  auto s1 = relay1.stats();
  auto s2 = relay2.stats();
  INFO("relay1 published " << s1.published << ", relay2 " << s2.published);
  // Each row was published by exactly one relay, and never twice.
  CHECK(s1.published + s2.published == 2 * per_writer);
  // Both took part (the work splits about evenly here).
  CHECK(s1.published > 0);
  CHECK(s2.published > 0);
  CHECK(s1.duplicates + s2.duplicates == 0);
  CHECK(s1.failures + s2.failures == 0);
  nc1->stop();
  nc2->stop();
}

TEST_CASE_METHOD(relay_fixture,
                 "while NATS is down rows wait with their attempts recorded; "
                 "after a restart all go out once",
                 "[.nats]") {
  auto nc = connect_nats(server.url());
  nats::outbox_relay relay{fast_relay(), outbox_on(db.url()), *nc};
  relay.start();
  for (int i = 0; i < 5; ++i)
    insert_event(*conn, 1 + i % 2);
  REQUIRE(all_published());

  // A writer keeps committing through the outage.
  std::atomic<bool> writing{true};
  std::atomic<int> written{0};
  std::thread writer{[&] {
    auto c = storage::connect(db.url(), 10s);
    while (writing) {
      insert_event(*c, 1 + written % 3);
      ++written;
      std::this_thread::sleep_for(5ms);
    }
  }};
  std::this_thread::sleep_for(300ms);
  server.stop();
  // Rows pile up unpublished; the relay records its attempts.
  REQUIRE(eventually(
    [&] {
      return count(*conn,
                   "SELECT count(*) FROM gatehouse_state.outbox "
                   "WHERE published_at IS NULL AND attempts > 0 AND "
                   "last_error IS NOT NULL")
        > 0;
    },
    15s));
  std::this_thread::sleep_for(1s);
  CHECK(unpublished() > 0);
  CHECK(relay.stats().failures > 0);
  CHECK(eventually([&] { return relay.stats().pending > 0; }));

  server.start(); // same port, same store directory
  std::this_thread::sleep_for(500ms);
  writing = false;
  writer.join();
  REQUIRE(all_published(30s));
  check_stream_matches_outbox();
  CHECK(count(*conn, "SELECT count(*) FROM gatehouse_state.outbox")
        == 5 + written);
  relay.stop();
  nc->stop();
}

TEST_CASE_METHOD(relay_fixture,
                 "a row published but not marked (a relay killed in "
                 "between) is absorbed by JetStream and then marked",
                 "[.nats]") {
  auto nc = connect_nats(server.url());
  auto row = insert_event(*conn, 4, "push", true);
  auto next = insert_event(*conn, 4);
  {
    // What the killed relay managed: the publish, not the mark.
    js_client client{server.url()};
    REQUIRE(client.publish(row.subject, row.event_id, row.body,
                           {{"Content-Type", "application/json"},
                            {"Gatehouse-Event", "push"},
                            {"Gatehouse-Bulk", "true"}}));
    REQUIRE(client.stream_messages() == 1);
  }
  nats::outbox_relay relay{fast_relay(), outbox_on(db.url()), *nc};
  relay.start();
  REQUIRE(all_published());
  relay.stop();
  check_stream_matches_outbox();
  js_client client{server.url()};
  CHECK(client.stream_messages() == 2);
  auto stats = relay.stats();
  CHECK(stats.published == 2);
  CHECK(stats.duplicates == 1);
  nc->stop();
}

TEST_CASE_METHOD(relay_fixture,
                 "an event JetStream refuses stops only its project's queue",
                 "[.nats]") {
  auto nc = connect_nats(server.url());
  // Larger than nats-server's default max_payload (1 MB).
  auto huge = insert_event(*conn, 5, "push", false, false,
                           "\"" + std::string(2 * 1024 * 1024, 'x') + "\"");
  auto behind = insert_event(*conn, 5);
  auto other = insert_event(*conn, 6);
  nats::outbox_relay relay{fast_relay(), outbox_on(db.url()), *nc};
  relay.start();
  REQUIRE(eventually([&] {
    return query("SELECT published_at IS NOT NULL FROM gatehouse_state.outbox "
                 "WHERE project_id = 6")
      == "t";
  }));
  REQUIRE(eventually([&] {
    return count(*conn,
                 "SELECT attempts FROM gatehouse_state.outbox WHERE "
                 "seq = "
                   + std::to_string(huge.seq))
      >= 2;
  }));
  // The row behind it waits: order before progress.
  CHECK(query("SELECT count(*) FROM gatehouse_state.outbox WHERE project_id "
              "= 5 AND published_at IS NULL")
        == "2");
  CHECK(query("SELECT attempts FROM gatehouse_state.outbox WHERE seq = "
              + std::to_string(behind.seq))
        == "0");
  CHECK(query("SELECT last_error FROM gatehouse_state.outbox WHERE seq = "
              + std::to_string(huge.seq))
        != "NULL");
  // Once the operator fixes the row, the queue moves on, in order.
  exec(*conn,
       "UPDATE gatehouse_state.outbox SET body = '{}' WHERE seq = "
         + std::to_string(huge.seq));
  REQUIRE(all_published(15s));
  relay.stop();
  check_stream_matches_outbox();
  nc->stop();
}

TEST_CASE_METHOD(relay_fixture,
                 "the relay waits for PostgreSQL and resumes after it "
                 "returns",
                 "[.nats]") {
  auto nc = connect_nats(server.url());
  auto settings = fast_relay();
  // Kill the relay's session from the server side twice; it reconnects.
  nats::outbox_relay relay{settings, outbox_on(db.url()), *nc};
  relay.start();
  insert_event(*conn, 8);
  REQUIRE(all_published());
  for (int round = 0; round < 2; ++round) {
    exec(*conn,
         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
         "WHERE datname = current_database() AND pid <> "
         "pg_backend_pid() AND application_name = 'gatehouse'");
    insert_event(*conn, 8);
    REQUIRE(all_published(15s));
  }
  CHECK(relay.stats().db_failures >= 1);
  relay.stop();
  check_stream_matches_outbox();
  nc->stop();
}
