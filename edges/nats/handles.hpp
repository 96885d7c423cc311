#pragma once

// Owning handles for nats.c objects: each nats.c type with its own
// *_Destroy becomes a unique_ptr that calls it, so that no early return or
// error path leaks or double-frees one.
//
//   nats::msg_ptr msg;
//   auto s = nats::create(msg, natsMsg_Create, subject, nullptr, data, n);

#include <nats/nats.h>

#include <memory>
#include <utility>

namespace gatehouse::nats {

namespace detail {

template <class T, void (*Destroy)(T*)>
struct destroyer {
  void operator()(T* x) const noexcept {
    Destroy(x);
  }
};

/// Closes a connection before destroying it: nats.c flushes and stops its
/// threads on close, and only frees on destroy.
struct connection_closer {
  void operator()(natsConnection* nc) const noexcept {
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
  }
};

} // namespace detail

using options_ptr
  = std::unique_ptr<natsOptions,
                    detail::destroyer<natsOptions, natsOptions_Destroy>>;
using connection_ptr
  = std::unique_ptr<natsConnection, detail::connection_closer>;
using msg_ptr
  = std::unique_ptr<natsMsg, detail::destroyer<natsMsg, natsMsg_Destroy>>;
/// Destroying a subscription does not unsubscribe: a durable JetStream
/// consumer stays.
using subscription_ptr = std::unique_ptr<
  natsSubscription,
  detail::destroyer<natsSubscription, natsSubscription_Destroy>>;
using jetstream_ptr
  = std::unique_ptr<jsCtx, detail::destroyer<jsCtx, jsCtx_Destroy>>;
using pub_ack_ptr
  = std::unique_ptr<jsPubAck, detail::destroyer<jsPubAck, jsPubAck_Destroy>>;
using stream_info_ptr
  = std::unique_ptr<jsStreamInfo,
                    detail::destroyer<jsStreamInfo, jsStreamInfo_Destroy>>;
using consumer_info_ptr
  = std::unique_ptr<jsConsumerInfo,
                    detail::destroyer<jsConsumerInfo, jsConsumerInfo_Destroy>>;
using msg_metadata_ptr
  = std::unique_ptr<jsMsgMetaData,
                    detail::destroyer<jsMsgMetaData, jsMsgMetaData_Destroy>>;

/// Calls `make(&raw, args...)`, a nats.c function that creates an object,
/// and hands the object to `target` (replacing what it held) before
/// returning make's status, so that `target` is usable in the same
/// expression: `if (create(msg, natsMsg_Create, ...) == NATS_OK && msg)`.
template <class Handle, class Make, class... Args>
natsStatus create(Handle& target, Make make, Args&&... args) {
  typename Handle::pointer raw = nullptr;
  natsStatus s = make(&raw, std::forward<Args>(args)...);
  target.reset(raw);
  return s;
}

} // namespace gatehouse::nats
