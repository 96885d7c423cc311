#pragma once

// A small nats.c request/reply client for the NATS edge tests: sends a
// Protobuf request with an optional Gatehouse-Request-Id and returns the
// reply's Gatehouse-Status and body.

#include <catch2/catch.hpp>
#include <google/protobuf/message_lite.h>
#include <nats/nats.h>

#include <string>

namespace gatehouse::test {

/// A reply, or a timeout (`answered` false).
struct nats_answer {
  bool answered = false;
  natsStatus error = NATS_OK;
  int status = 0;
  std::string body;
  std::string request_id;
};

class nats_client {
public:
  explicit nats_client(const std::string& url) {
    natsOptions* opts = nullptr;
    REQUIRE(natsOptions_Create(&opts) == NATS_OK);
    REQUIRE(natsOptions_SetURL(opts, url.c_str()) == NATS_OK);
    REQUIRE(natsOptions_SetMaxReconnect(opts, -1) == NATS_OK);
    auto st = natsConnection_Connect(&nc_, opts);
    natsOptions_Destroy(opts);
    INFO("connect " << url << ": " << natsStatus_GetText(st));
    REQUIRE(st == NATS_OK);
  }

  ~nats_client() {
    if (nc_) {
      natsConnection_Close(nc_);
      natsConnection_Destroy(nc_);
    }
  }

  nats_client(const nats_client&) = delete;
  nats_client& operator=(const nats_client&) = delete;

  /// Sends `payload` to gatehouse.internal.v1.<call>; thread-safe.
  nats_answer request_raw(const std::string& call, const std::string& payload,
                          const std::string& request_id = {},
                          int timeout_ms = 5000) const {
    nats_answer out;
    auto subject = "gatehouse.internal.v1." + call;
    natsMsg* msg = nullptr;
    natsStatus st
      = natsMsg_Create(&msg, subject.c_str(), nullptr, payload.data(),
                       static_cast<int>(payload.size()));
    if (st == NATS_OK && !request_id.empty())
      st = natsMsgHeader_Set(msg, "Gatehouse-Request-Id", request_id.c_str());
    natsMsg* reply = nullptr;
    if (st == NATS_OK)
      st = natsConnection_RequestMsg(&reply, nc_, msg, timeout_ms);
    natsMsg_Destroy(msg);
    out.error = st;
    if (st != NATS_OK || !reply)
      return out;
    out.answered = true;
    const char* value = nullptr;
    if (natsMsgHeader_Get(reply, "Gatehouse-Status", &value) == NATS_OK
        && value)
      out.status = std::stoi(value);
    value = nullptr;
    if (natsMsgHeader_Get(reply, "Gatehouse-Request-Id", &value) == NATS_OK
        && value)
      out.request_id = value;
    if (const char* data = natsMsg_GetData(reply))
      out.body.assign(data,
                      static_cast<std::size_t>(natsMsg_GetDataLength(reply)));
    natsMsg_Destroy(reply);
    return out;
  }

  nats_answer request(const std::string& call,
                      const google::protobuf::MessageLite& req,
                      const std::string& request_id = {},
                      int timeout_ms = 5000) const {
    return request_raw(call, req.SerializeAsString(), request_id, timeout_ms);
  }

private:
  natsConnection* nc_ = nullptr;
};

} // namespace gatehouse::test
