#pragma once

#include "messages/interfaces.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

struct __natsConnection;
struct __natsOptions;

namespace gatehouse::nats {

/// Settings of the NATS connection, fixed at start.
struct nats_settings {
  /// One or more URLs, comma-separated; may carry user:password or a token.
  std::string url = "nats://127.0.0.1:4222";
  /// A .creds file (user JWT + nkey seed) when the server wants one.
  std::string creds_file;
  /// An nkey seed file when the server authenticates by nkey.
  std::string nkey_seed_file;
  /// The JetStream stream that carries push events.
  std::string stream = "GATEHOUSE_EVENTS";
  std::string stream_subjects = "gitlab.events.>";
  /// JetStream's duplicate window: a republished event with the same
  /// Nats-Msg-Id inside it is absorbed.
  std::chrono::minutes duplicate_window{10};
  /// Stream replicas (3 on a NATS cluster for host-loss durability).
  int replicas = 1;
};

/// The process's NATS connection. Connects in the background and retries
/// forever, so Gatehouse starts and serves while NATS is away; reports every
/// state change to the system-status actor; (re)creates the event stream
/// after each connect on a thread of its own, never on nats.c's threads.
class connection {
public:
  connection(nats_settings settings, system_status_actor status);
  ~connection();

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Starts connecting; false with `error` set when the settings are
  /// unusable (a bad URL, an unreadable creds file). An unreachable server is
  /// not an error.
  bool start(std::string& error);

  /// Closes the connection and joins the helper thread.
  void stop();

  /// Whether the event stream was ensured since the last connect.
  bool stream_ready() const;

  /// The underlying connection, for later publishers; may be null.
  __natsConnection* raw() const {
    return conn_.load();
  }

private:
  static void on_connected(__natsConnection* nc, void* self);
  static void on_disconnected(__natsConnection* nc, void* self);
  static void on_closed(__natsConnection* nc, void* self);
  void report(const char* state);
  void stream_loop();
  bool ensure_stream(std::string& error);

  nats_settings settings_;
  system_status_actor status_;
  __natsOptions* opts_ = nullptr;
  // Written once by start(); nats.c may call back before that returns.
  std::atomic<__natsConnection*> conn_{nullptr};
  std::thread worker_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  bool need_stream_ = false;
  bool stream_ready_ = false;
  bool stopping_ = false;
  bool closed_ = false; // nats.c's closed callback has run
};

} // namespace gatehouse::nats
