#pragma once

// A downstream reader of Gatehouse's event stream for integration suites:
// what a pipeline or webhook consumer would see on GATEHOUSE_EVENTS.

#include "tests/support/process.hpp"

#include <catch2/catch.hpp>
#include <nats/nats.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <unistd.h>
#include <utility>
#include <vector>

namespace gatehouse::test {

inline const std::string events_stream = "GATEHOUSE_EVENTS";

struct stream_message {
  std::string subject;
  std::uint64_t sequence = 0;
  std::map<std::string, std::string> headers;
  std::string data;
  /// Mutable so that checks may index missing keys through a const ref.
  mutable nlohmann::json body;
};

/// Reads GATEHOUSE_EVENTS back as a downstream consumer would (nats.c, a
/// durable pull consumer per read), filtered by subject. Every message read
/// is acknowledged on the reader's own consumer only.
class jetstream_reader {
public:
  explicit jetstream_reader(const std::string& nats_url,
                            std::string durable_prefix = "test_reader_")
    : durable_prefix_(std::move(durable_prefix)) {
    REQUIRE(natsConnection_ConnectTo(&nc_, nats_url.c_str()) == NATS_OK);
    REQUIRE(natsConnection_JetStream(&js_, nc_, nullptr) == NATS_OK);
  }

  ~jetstream_reader() {
    if (js_)
      jsCtx_Destroy(js_);
    if (nc_) {
      natsConnection_Close(nc_);
      natsConnection_Destroy(nc_);
    }
  }

  jetstream_reader(const jetstream_reader&) = delete;
  jetstream_reader& operator=(const jetstream_reader&) = delete;

  /// Every message on `subject` (wildcards allowed) in stream order; empty
  /// while the stream does not exist.
  std::vector<stream_message> read(const std::string& subject) {
    std::vector<stream_message> out;
    static std::atomic<int> counter{0};
    auto durable = durable_prefix_ + std::to_string(::getpid()) + "_"
                   + std::to_string(counter++);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.FilterSubject = subject.c_str();
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_AddConsumer(&ci, js_, events_stream.c_str(), &cc, nullptr, &jerr)
        != NATS_OK)
      return out; // no stream yet: nothing was published
    auto expected = static_cast<std::size_t>(ci->NumPending);
    jsConsumerInfo_Destroy(ci);
    if (expected > 0) {
      jsSubOptions so;
      jsSubOptions_Init(&so);
      so.Stream = events_stream.c_str();
      so.Consumer = durable.c_str();
      natsSubscription* sub = nullptr;
      REQUIRE(js_PullSubscribe(&sub, js_, subject.c_str(), durable.c_str(),
                               nullptr, &so, &jerr)
              == NATS_OK);
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (out.size() < expected
             && std::chrono::steady_clock::now() < deadline) {
        natsMsgList list{};
        if (natsSubscription_Fetch(&list, sub, 256, 1000, &jerr) != NATS_OK)
          continue;
        for (int i = 0; i < list.Count; ++i)
          out.push_back(take(list.Msgs[i]));
        natsMsgList_Destroy(&list);
      }
      natsSubscription_Destroy(sub);
    }
    js_DeleteConsumer(js_, events_stream.c_str(), durable.c_str(), nullptr,
                      &jerr);
    return out;
  }

  /// Waits (bounded) until `subject` holds at least `n` messages; answers
  /// what it holds then.
  std::vector<stream_message> wait_for(const std::string& subject,
                                       std::size_t n,
                                       std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    std::vector<stream_message> msgs;
    eventually(
      [&] {
        msgs = read(subject);
        return msgs.size() >= n;
      },
      limit);
    return msgs;
  }

private:
  static stream_message take(natsMsg* m) {
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
    sm.body = nlohmann::json::parse(sm.data, nullptr, false);
    natsMsg_Ack(m, nullptr);
    return sm;
  }

  std::string durable_prefix_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

} // namespace gatehouse::test
