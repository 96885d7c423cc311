// `gatehouse webhooks`: the webhook consumer process.
#include "app/commands.hpp"

#include "common/log.hpp"
#include "common/stop_watchdog.hpp"
#include "webhooks/consumer.hpp"

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <pthread.h>
#include <thread>

namespace gatehouse {

namespace {

/// From SIGTERM (or SIGINT) to the exit at the latest: within Kubernetes'
/// and systemd's grace periods, and 1 s short of the 5 s README promises.
constexpr std::chrono::milliseconds stop_deadline{4000};

/// How long nats.c's threads may take to let go of the library once the
/// consumer closed its connection.
constexpr std::chrono::milliseconds close_wait{2000};

} // namespace

int webhooks_command(const config& cfg, const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::cerr << "gatehouse: webhooks takes no arguments\n";
    return 64; // EX_USAGE
  }
  // Block the stop signals before any thread (nats.c's included) starts, so
  // only the waiter below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  webhooks::consumer_settings settings;
  settings.nats_url = cfg.nats_url;
  settings.nats_creds_file = cfg.nats_creds_file;
  settings.nats_nkey_seed_file = cfg.nats_nkey_seed_file;
  settings.database_url = cfg.database_url;
  settings.replicas = cfg.events_replicas;
  settings.policy.timeout = cfg.webhook_timeout;
  settings.policy.retries = cfg.webhook_retries;
  settings.backoff_base = cfg.webhook_backoff_base;
  settings.heartbeat_file = cfg.webhooks_heartbeat_file;

  webhooks::stop_flag stop;
  // The stop's deadline: the consumer normally stops within a second or
  // two, but a call to PostgreSQL or NATS that hangs (statement timeout
  // 30 s, JetStream requests 5 s, a delivery attempt up to its timeout) must
  // not keep the process past its grace period. What such an exit leaves is
  // at-least-once safe: an outcome is stored in one transaction (uncommitted
  // means not stored), and a message is acknowledged only after its
  // outcomes are stored, so JetStream redelivers the rest.
  stop_watchdog watchdog{
    "webhooks: not stopped in time; exiting, unacknowledged events are "
    "redelivered",
    stop_deadline};
  std::atomic<bool> finished{false};
  std::thread waiter{[&] {
    const timespec tick{0, 200 * 1000 * 1000};
    while (!finished.load()) {
      int sig = sigtimedwait(&stop_signals, nullptr, &tick);
      if (sig == SIGINT || sig == SIGTERM) {
        log::info("webhooks: stop requested", {{"signal", sig}});
        stop.request();
        watchdog.arm();
        return;
      }
    }
  }};
  log::info("webhooks: starting",
            {{"retries", settings.policy.retries},
             {"timeout_ms", settings.policy.timeout.count()},
             {"backoff_base_ms", settings.backoff_base.count()}});
  int rc = webhooks::run_consumer(settings, stop);
  // natsConnection_Destroy returns before every thread of the connection
  // has let go of the library: the delivery thread of its request/reply
  // subscription (JetStream API calls) ends on its own, and the last thread
  // to let go frees the library. nats_Close does not wait for that, and
  // exit() then ran nats.c's atexit handler, which destroys the library's
  // lock, while that thread was still freeing the library: it locked the
  // null mutex (ASan: SEGV on address 0x10 in pthread_mutex_trylock, on a
  // nats.c thread, after SIGTERM). Wait until the library is gone.
  natsStatus closed = nats_CloseAndWait(close_wait.count());
  finished = true;
  waiter.join();
  watchdog.disarm();
  if (closed != NATS_OK && closed != NATS_NOT_INITIALIZED) {
    // A nats.c thread still runs: exit() would race it as above.
    log::warn("webhooks: nats.c did not finish closing; exiting without it",
              {{"error", natsStatus_GetText(closed)}});
    log::flush();
    std::_Exit(rc);
  }
  log::info("webhooks: stopped");
  return rc;
}

} // namespace gatehouse
