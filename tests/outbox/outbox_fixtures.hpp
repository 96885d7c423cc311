#pragma once

// Shared pieces of the outbox tests: a migrated scratch database, outbox
// rows written the way post_receive writes them, a private nats-server, and
// a small JetStream client that reads the event stream back through a pull
// consumer.

#include "edges/nats/connection.hpp"
#include "edges/nats/outbox_relay.hpp"
#include "messages/errors.hpp"
#include "messages/interfaces.hpp"
#include "messages/outbox.hpp"
#include "storage/database.hpp"
#include "storage/migrate.hpp"
#include "storage/outbox_store.hpp"
#include "tests/integration/stack.hpp"
#include "tests/support/process.hpp"
#include "tests/support/scratch_database.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>
#include <nats/nats.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gatehouse::test {

inline const std::string events_stream = "GATEHOUSE_EVENTS";

/// The first column of the first row of `sql` ("NULL" for null, "" if none).
inline std::string query1(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx{conn};
  auto r = tx.exec(sql);
  if (r.empty())
    return "";
  return r[0][0].is_null() ? "NULL" : r[0][0].as<std::string>();
}

inline std::int64_t count(pqxx::connection& conn, const std::string& sql) {
  return std::stoll(query1(conn, sql));
}

inline void exec(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx{conn};
  tx.exec(sql);
}

/// A scratch database with every migration applied.
struct migrated_database {
  scratch_database db;
  std::unique_ptr<pqxx::connection> conn
    = storage::connect(db.url(), std::chrono::seconds{30});

  migrated_database() {
    storage::migrate(*conn);
  }

  std::string query(const std::string& sql) {
    return query1(*conn, sql);
  }
};

/// What a test expects of one outbox row: what the relay publishes.
using event_row = outbox_row;

/// Inserts one event the way post_receive does (its own transaction, then
/// NOTIFY) and returns the row.
inline event_row insert_event(pqxx::connection& conn, std::int64_t project,
                              const std::string& kind = "push",
                              bool bulk = false,
                              bool commits_unavailable = false,
                              std::string body = {}) {
  pqxx::work tx{conn};
  if (body.empty())
    body = nlohmann::json{{"object_kind", kind},
                          {"project_id", project},
                          {"nonce", std::rand()}}
             .dump();
  auto subject = "gitlab.events." + kind + "." + std::to_string(project);
  auto r = tx.exec_params(
    "INSERT INTO gatehouse_state.outbox (event_id, project_id, subject, "
    "kind, bulk, commits_unavailable, body) VALUES (gen_random_uuid(), $1, "
    "$2, $3, $4, $5, $6) RETURNING seq, event_id::text",
    project, subject, kind, bulk, commits_unavailable, body);
  tx.exec_params("SELECT pg_notify('gatehouse_outbox', $1)",
                 std::to_string(project));
  tx.commit();
  event_row row;
  row.seq = r[0][0].as<std::int64_t>();
  row.event_id = r[0][1].as<std::string>();
  row.project_id = project;
  row.subject = subject;
  row.kind = kind;
  row.bulk = bulk;
  row.commits_unavailable = commits_unavailable;
  row.body = body;
  return row;
}

/// One message read back from the stream.
struct stream_message {
  std::string subject;
  std::uint64_t sequence = 0;
  std::map<std::string, std::string> headers;
  std::string data;
};

/// A plain NATS client for checking what the relay published.
class js_client {
public:
  explicit js_client(const std::string& url) {
    REQUIRE(natsConnection_ConnectTo(&nc_, url.c_str()) == NATS_OK);
    REQUIRE(natsConnection_JetStream(&js_, nc_, nullptr) == NATS_OK);
  }

  ~js_client() {
    if (js_)
      jsCtx_Destroy(js_);
    if (nc_) {
      natsConnection_Close(nc_);
      natsConnection_Destroy(nc_);
    }
  }

  js_client(const js_client&) = delete;
  js_client& operator=(const js_client&) = delete;

  /// Messages in the stream; -1 when it cannot be read.
  std::int64_t stream_messages() {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&si, js_, events_stream.c_str(), nullptr, &jerr)
        != NATS_OK)
      return -1;
    auto n = static_cast<std::int64_t>(si->State.Msgs);
    jsStreamInfo_Destroy(si);
    return n;
  }

  /// Publishes `body` on `subject` with Nats-Msg-Id `id`; whether JetStream
  /// acknowledged it.
  bool publish(const std::string& subject, const std::string& id,
               const std::string& body,
               std::map<std::string, std::string> headers = {}) {
    natsMsg* msg = nullptr;
    REQUIRE(natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(),
                           static_cast<int>(body.size()))
            == NATS_OK);
    headers["Nats-Msg-Id"] = id;
    for (auto& [k, v] : headers)
      natsMsgHeader_Set(msg, k.c_str(), v.c_str());
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    auto s = js_PublishMsg(&ack, js_, msg, nullptr, &jerr);
    natsMsg_Destroy(msg);
    if (ack)
      jsPubAck_Destroy(ack);
    return s == NATS_OK;
  }

  /// Every message of the stream, in stream order, through a fresh durable
  /// pull consumer (deleted afterwards).
  std::vector<stream_message> read_all() {
    std::vector<stream_message> out;
    auto expected = stream_messages();
    REQUIRE(expected >= 0);
    static std::atomic<int> counter{0};
    auto durable = "outbox_test_" + std::to_string(::getpid()) + "_"
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
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (static_cast<std::int64_t>(out.size()) < expected
           && std::chrono::steady_clock::now() < deadline) {
      natsMsgList list{};
      auto s = natsSubscription_Fetch(&list, sub, 256, 1000, &jerr);
      if (s != NATS_OK)
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

/// A Gatehouse-style NATS connection (it creates the event stream) to a
/// test server, with nobody listening to its state reports.
inline std::unique_ptr<nats::connection> connect_nats(const std::string& url) {
  nats::nats_settings settings;
  settings.url = url;
  auto conn
    = std::make_unique<nats::connection>(settings, system_status_actor{});
  std::string error;
  REQUIRE(conn->start(error));
  REQUIRE(
    eventually([&] { return conn->stream_ready(); }, std::chrono::seconds(20)));
  return conn;
}

/// The relay's own outbox session on `db_url`, as `gatehouse serve` wires it.
inline std::unique_ptr<outbox_port> outbox_on(const std::string& db_url) {
  storage::outbox_store_settings s;
  s.database_url = db_url;
  return std::make_unique<storage::outbox_store>(s);
}

/// Relay settings that react fast enough for tests.
inline nats::outbox_relay_settings fast_relay() {
  nats::outbox_relay_settings s;
  s.poll_interval = std::chrono::milliseconds(200);
  s.publish_timeout = std::chrono::milliseconds(1000);
  s.min_backoff = std::chrono::milliseconds(20);
  s.max_backoff = std::chrono::milliseconds(500);
  return s;
}

} // namespace gatehouse::test
