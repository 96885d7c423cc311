// `gatehouse webhooks`: the webhook consumer process.
#include "app/commands.hpp"

#include "common/log.hpp"
#include "webhooks/consumer.hpp"

#include <nats/nats.h>

#include <atomic>
#include <csignal>
#include <ctime>
#include <iostream>
#include <pthread.h>
#include <thread>

namespace gatehouse {

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

  webhooks::stop_flag stop;
  std::atomic<bool> done{false};
  std::thread waiter{[&] {
    const timespec tick{0, 200 * 1000 * 1000};
    while (!done) {
      int sig = sigtimedwait(&stop_signals, nullptr, &tick);
      if (sig == SIGINT || sig == SIGTERM) {
        log::info("webhooks: stop requested", {{"signal", sig}});
        stop.request();
        return;
      }
    }
  }};
  log::info("webhooks: starting",
            {{"retries", settings.policy.retries},
             {"timeout_ms", settings.policy.timeout.count()},
             {"backoff_base_ms", settings.backoff_base.count()}});
  int rc = webhooks::run_consumer(settings, stop);
  done = true;
  waiter.join();
  nats_Close();
  log::info("webhooks: stopped");
  return rc;
}

} // namespace gatehouse
