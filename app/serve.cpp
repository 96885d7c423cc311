#include "app/serve.hpp"

#include "actors/access/access_control.hpp"
#include "actors/agents/agent_registry.hpp"
#include "actors/indexer/indexer_coordination.hpp"
#include "actors/pages/pages_domain.hpp"
#include "actors/push/push_processing.hpp"
#include "actors/system_status.hpp"
#include "common/log.hpp"
#include "common/secrets.hpp"
#include "common/stop_watchdog.hpp"
#include "edges/http/server.hpp"
#include "edges/nats/connection.hpp"
#include "edges/nats/internal_edge.hpp"
#include "edges/nats/outbox_relay.hpp"
#include "edges/nats/index_feed.hpp"
#include "edges/nats/push_feed.hpp"
#include "storage/access_store.hpp"
#include "storage/agent_store.hpp"
#include "storage/indexer_store.hpp"
#include "storage/git_actor.hpp"
#include "storage/outbox_store.hpp"
#include "storage/pages_store.hpp"
#include "storage/push_store.hpp"
#include "storage/read_model_loader.hpp"
#include "storage/request_store.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>

#include <csignal>
#include <cstdlib>
#include <malloc.h>
#include <filesystem>
#include <iostream>
#include <pthread.h>
#include <thread>

namespace gatehouse {

namespace {

constexpr jwt::caller all_callers[]
  = {jwt::caller::shell, jwt::caller::workhorse, jwt::caller::kas,
     jwt::caller::pages};

// Reads every configured secret file; throws secret_error for an unusable one.
std::array<std::optional<std::string>, 4> load_keys(const config& cfg) {
  std::array<std::optional<std::string>, 4> keys;
  for (auto who : all_callers) {
    const auto& path = cfg.secret_file(who);
    if (!path) {
      log::warn("caller disabled: no secret file",
                {{"caller", jwt::to_string(who)},
                 {"variable", secret_file_variable(who)}});
      continue;
    }
    auto loaded = load_secret(who, *path);
    if (loaded.warning)
      log::warn(*loaded.warning, {{"caller", jwt::to_string(who)}});
    keys[static_cast<std::size_t>(who)] = std::move(loaded.key);
  }
  return keys;
}

// One metric with its HELP and TYPE lines, in Prometheus text.
void append_metric(std::string& out, const char* name, const char* type,
                   const char* help, const std::string& value) {
  out += std::string{"# HELP "} + name + " " + help + "\n# TYPE " + name + " "
    + type + "\n" + name + " " + value + "\n";
}

// The outbox relay's counters in Prometheus text.
std::string relay_metrics(const nats::outbox_relay_stats& st) {
  std::string out;
  auto line = [&out](const char* name, const char* type, const char* help,
                     const std::string& value) {
    append_metric(out, name, type, help, value);
  };
  line("gatehouse_outbox_published_total", "counter",
       "Push events this replica published to JetStream and marked.",
       std::to_string(st.published));
  line("gatehouse_outbox_duplicates_total", "counter",
       "PubAcks saying JetStream already had the event.",
       std::to_string(st.duplicates));
  line("gatehouse_outbox_publish_failures_total", "counter",
       "Failed publish attempts.", std::to_string(st.failures));
  line("gatehouse_outbox_pending", "gauge",
       "Unpublished push events in the outbox (-1 before the first count).",
       std::to_string(st.pending));
  line("gatehouse_outbox_oldest_pending_seconds", "gauge",
       "Age of the oldest unpublished push event.",
       std::to_string(st.oldest_pending_seconds));
  return out;
}

// The agent registry's push feed in Prometheus text.
std::string feed_metrics(const nats::push_feed_stats& st) {
  std::string out;
  auto line = [&out](const char* name, const char* type, const char* help,
                     const std::string& value) {
    append_metric(out, name, type, help, value);
  };
  line("gatehouse_agent_feed_handled_total", "counter",
       "Push events the agent registry handled.", std::to_string(st.handled));
  line("gatehouse_agent_feed_notices_total", "counter",
       "Configuration-push notices written.", std::to_string(st.notices));
  line("gatehouse_agent_feed_retried_total", "counter",
       "Push events handed back for redelivery.", std::to_string(st.retried));
  line("gatehouse_agent_feed_terminated_total", "counter",
       "Unusable messages terminated.", std::to_string(st.terminated));
  line("gatehouse_agent_feed_consuming", "gauge",
       "1 while bound to the durable consumer.", st.consuming ? "1" : "0");
  return out;
}

// The indexer's push feed in Prometheus text.
std::string index_feed_metrics(const nats::index_feed_stats& st) {
  std::string out;
  auto line = [&out](const char* name, const char* type, const char* help,
                     const std::string& value) {
    append_metric(out, name, type, help, value);
  };
  line("gatehouse_index_feed_handled_total", "counter",
       "Push events the indexer coordination handled.",
       std::to_string(st.handled));
  line("gatehouse_index_feed_zoekt_tasks_total", "counter",
       "Zoekt index tasks created from push events.",
       std::to_string(st.zoekt_tasks));
  line("gatehouse_index_feed_elastic_requests_total", "counter",
       "Elasticsearch index requests written.",
       std::to_string(st.elastic_requests));
  line("gatehouse_index_feed_retried_total", "counter",
       "Push events handed back for redelivery.", std::to_string(st.retried));
  line("gatehouse_index_feed_terminated_total", "counter",
       "Unusable messages terminated.", std::to_string(st.terminated));
  line("gatehouse_index_feed_consuming", "gauge",
       "1 while bound to the durable consumer.", st.consuming ? "1" : "0");
  return out;
}

/// From SIGTERM (or SIGINT) to the exit at the latest, as for `gatehouse
/// webhooks`: within Docker's 10 s and Kubernetes' 30 s grace periods. The
/// orderly stop takes well under a second while PostgreSQL and NATS answer;
/// with them gone or hanging it could wait on a connection attempt or a
/// statement. A forced exit loses nothing: a push is answered only after
/// its events are committed to the outbox, and whatever the relay had not
/// marked yet is published again later, deduplicated by its event id.
constexpr std::chrono::milliseconds stop_deadline{4000};

// Partitions of the access domain; more than the concurrent callers a
// replica usually serves (bench/http.sh's 16 connections, gitlab-shell's
// bursts), few enough that the read model's updates reach them all at once.
constexpr int access_partitions = 16;

caf::actor_system_config& tune(caf::actor_system_config& cfg) {
  // Measured 1.5x for the HTTP-thread-to-actor bridge (toolchain.md §5.1).
  cfg.set("scheduler.policy", caf::atom("sharing"));
  auto cores = std::max(2u, std::thread::hardware_concurrency());
  cfg.set("scheduler.max-threads", static_cast<size_t>(cores));
  return cfg;
}

// glibc gives each thread that meets a locked arena a new one, up to eight
// per core; with 70 threads spread over them, RSS creeps up as more threads
// happen to allocate at once (the soak saw steps of about 1 MiB). Two arenas
// per core keep contention low on the scheduler and HTTP threads and hold
// RSS flat. MALLOC_ARENA_MAX, when set, still wins.
void cap_malloc_arenas() {
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr)
    return;
  auto cores = std::max(2u, std::thread::hardware_concurrency());
  ::mallopt(M_ARENA_MAX, static_cast<int>(2 * cores));
}

} // namespace

int serve(const config& cfg) {
  // Before the actor system: destroyed after it, so its wait for detached
  // actors stays under the deadline too.
  stop_watchdog watchdog{"gatehouse: not stopped in time; exiting",
                         stop_deadline};
  cap_malloc_arenas();
  std::array<std::optional<std::string>, 4> keys;
  try {
    keys = load_keys(cfg);
  } catch (const secret_error& e) {
    std::cerr << "gatehouse: " << e.what() << '\n';
    return 2;
  }

  // Block the stop signals before any thread starts, so every thread
  // inherits the mask and only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A peer that hangs up mid-write must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);

  caf::actor_system_config sys_cfg;
  caf::actor_system sys{tune(sys_cfg)};

  // Storage blocks on libpqxx: detached, on a thread of its own.
  storage::store_settings store_cfg;
  store_cfg.database_url = cfg.database_url;
  store_cfg.statement_timeout = cfg.request_timeout;
  auto store = sys.spawn<caf::detached>(storage::store, store_cfg);

  // The read model: loaded at start, refreshed on every change notification.
  storage::read_model_loader_settings loader_cfg;
  loader_cfg.database_url = cfg.database_url;
  auto loader
    = sys.spawn<caf::detached>(storage::read_model_loader, loader_cfg);

  storage::access_store_settings access_store_cfg;
  access_store_cfg.database_url = cfg.database_url;
  access_store_cfg.statement_timeout = cfg.request_timeout;
  auto access_store
    = sys.spawn<caf::detached>(storage::access_store, access_store_cfg);

  // git runs as child processes of detached actors, one at a time each, so
  // these actors bound how many git processes run at once. The access check
  // has two lanes: two actors for inspections of a few questions (every
  // ordinary push), two niced ones for larger ones, which therefore never
  // queue in front of an ordinary push nor take its CPU. Push events list
  // commits on two actors of their own.
  storage::git_settings git_cfg;
  git_cfg.per_call_timeout = cfg.request_timeout / 4;
  storage::git_settings heavy_git_cfg = git_cfg;
  heavy_git_cfg.niceness = 10;
  std::vector<git_actor> access_gits;
  for (int i = 0; i < 2; ++i)
    access_gits.push_back(sys.spawn<caf::detached>(storage::git, git_cfg));
  for (int i = 0; i < 2; ++i)
    access_gits.push_back(
      sys.spawn<caf::detached>(storage::git, heavy_git_cfg));
  std::vector<git_actor> push_gits;
  for (int i = 0; i < 2; ++i)
    push_gits.push_back(sys.spawn<caf::detached>(storage::git, git_cfg));

  access_control_settings access_cfg;
  access_cfg.git_timeout = cfg.request_timeout * 3 / 4;
  access_cfg.store_timeout = cfg.request_timeout / 2;
  access_cfg.cheap_git_workers = 2;
  access_cfg.uploads_dir = cfg.uploads_dir;
  access_cfg.workhorse_key
    = keys[static_cast<std::size_t>(jwt::caller::workhorse)].value_or("");
  // Workhorse stores uploads below these; it needs them to exist.
  for (const char* sub : {"/uploads/tmp", "/lfs-objects/tmp/uploads"}) {
    std::error_code ec;
    std::filesystem::create_directories(cfg.uploads_dir + sub, ec);
    if (ec)
      log::warn("uploads directory not created",
                {{"path", cfg.uploads_dir + sub}, {"error", ec.message()}});
  }
  // The access domain in partitions (access::partition_hash): one actor
  // serialized every HTTP thread, and while the thread running it was
  // preempted (two cores, dozens of threads) every other call waited.
  // With more partitions than concurrent callers, a caller mostly finds
  // its partition idle and runs it on its own thread.
  std::vector<access_control_actor> access;
  for (int i = 0; i < access_partitions; ++i)
    access.push_back(
      sys.spawn(access_control, access_cfg, loader, access_gits, access_store));

  system_status_settings status_cfg;
  status_cfg.revision = GATEHOUSE_REVISION;
  auto status = sys.spawn(system_status, status_cfg, store);

  nats::nats_settings nats_cfg;
  nats_cfg.url = cfg.nats_url;
  nats_cfg.creds_file = cfg.nats_creds_file;
  nats_cfg.nkey_seed_file = cfg.nats_nkey_seed_file;
  nats_cfg.replicas = cfg.events_replicas;
  nats::connection nats_conn{nats_cfg, status};

  // Publishes committed push events from the outbox to JetStream, on a
  // thread and a PostgreSQL session of its own.
  storage::outbox_store_settings outbox_cfg;
  outbox_cfg.database_url = cfg.database_url;
  outbox_cfg.statement_timeout = cfg.request_timeout;
  nats::outbox_relay_settings relay_cfg;
  relay_cfg.stream = nats_cfg.stream;
  nats::outbox_relay relay{
    relay_cfg, std::make_unique<storage::outbox_store>(outbox_cfg), nats_conn};

  storage::push_store_settings push_store_cfg;
  push_store_cfg.database_url = cfg.database_url;
  push_store_cfg.statement_timeout = cfg.request_timeout;
  push_store_cfg.on_events_committed = [&relay] { relay.committed(); };
  // Several sessions, so that concurrent pushes commit in parallel and
  // PostgreSQL flushes their WAL together; the outbox's per-project lock
  // keeps each project's events in commit order across them.
  std::vector<push_store_actor> push_stores;
  for (int i = 0; i < cfg.push_sessions; ++i)
    push_stores.push_back(
      sys.spawn<caf::detached>(storage::push_store, push_store_cfg));
  push_processing_settings push_cfg;
  push_cfg.git_timeout = cfg.request_timeout / 2;
  auto push
    = sys.spawn(push_processing, push_cfg, loader, push_gits, push_stores);

  // The internal calls over NATS request/reply, answered by the same
  // actors as the HTTP edge; retried pushes guarded in PostgreSQL.
  storage::request_store_settings requests_cfg;
  requests_cfg.database_url = cfg.database_url;
  requests_cfg.statement_timeout = cfg.request_timeout;
  auto requests
    = sys.spawn<caf::detached>(storage::request_store, requests_cfg);
  nats::internal_edge_settings internal_cfg;
  internal_cfg.request_timeout = cfg.request_timeout;
  // GitLab Pages' lookups: rows read per request (Pages caches answers for
  // minutes), on a detached store of their own.
  storage::pages_store_settings pages_store_cfg;
  pages_store_cfg.database_url = cfg.database_url;
  pages_store_cfg.statement_timeout = cfg.request_timeout / 2;
  // A lookup is two short reads: four connections keep them from queueing
  // behind each other (one served ~600 lookups/s at 16 callers).
  std::vector<pages_store_actor> pages_stores;
  for (int i = 0; i < 4; ++i)
    pages_stores.push_back(
      sys.spawn<caf::detached>(storage::pages_store, pages_store_cfg));
  pages_settings pages_cfg;
  pages_cfg.store_timeout = cfg.request_timeout / 2;
  auto pages = sys.spawn(pages_domain, pages_cfg, pages_stores);

  // KAS's calls: tokens and authorizations from the read model, writes
  // (configurations, usage, connections, notices) on a store of their own,
  // whose events wake the relay like post_receive's.
  storage::agent_store_settings agent_store_cfg;
  agent_store_cfg.database_url = cfg.database_url;
  agent_store_cfg.statement_timeout = cfg.request_timeout / 2;
  agent_store_cfg.on_events_committed = [&relay] { relay.committed(); };
  auto agent_store
    = sys.spawn<caf::detached>(storage::agent_store, agent_store_cfg);
  auto usage_board = std::make_shared<agents::usage_board>();
  agent_registry_settings agents_cfg;
  agents_cfg.store_timeout = cfg.request_timeout / 2;
  auto agent_registry_actor_handle = sys.spawn(
    agent_registry, agents_cfg, loader, agent_store, usage_board);

  // Push events of agent configuration projects, read back from the
  // stream through a durable consumer every replica shares.
  nats::push_feed_settings feed_cfg;
  feed_cfg.stream.name = nats_cfg.stream;
  feed_cfg.stream.subjects = nats_cfg.stream_subjects;
  feed_cfg.stream.duplicate_window = nats_cfg.duplicate_window;
  feed_cfg.stream.replicas = nats_cfg.replicas;
  feed_cfg.request_timeout = cfg.request_timeout;
  nats::push_feed feed{feed_cfg, sys, agent_registry_actor_handle, nats_conn};

  // Search indexing: Zoekt nodes' calls, push events turned into index
  // work, repositories assigned to nodes; writes on a store of its own
  // whose Elasticsearch requests wake the relay.
  storage::indexer_store_settings indexer_store_cfg;
  indexer_store_cfg.database_url = cfg.database_url;
  indexer_store_cfg.statement_timeout = cfg.request_timeout / 2;
  indexer_store_cfg.on_events_committed = [&relay] { relay.committed(); };
  auto indexer_store
    = sys.spawn<caf::detached>(storage::indexer_store, indexer_store_cfg);
  indexer_coordination_settings indexer_cfg;
  indexer_cfg.store_timeout = cfg.request_timeout / 2;
  indexer_cfg.lost_after = cfg.zoekt_lost_node_after;
  indexer_cfg.assign_interval = cfg.zoekt_assign_interval;
  auto indexer_handle
    = sys.spawn(indexer_coordination, indexer_cfg, loader, indexer_store);
  nats::index_feed_settings index_feed_cfg;
  index_feed_cfg.stream.name = nats_cfg.stream;
  index_feed_cfg.stream.subjects = nats_cfg.stream_subjects;
  index_feed_cfg.stream.duplicate_window = nats_cfg.duplicate_window;
  index_feed_cfg.stream.replicas = nats_cfg.replicas;
  index_feed_cfg.request_timeout = cfg.request_timeout;
  nats::index_feed index_feed{index_feed_cfg, sys, indexer_handle, nats_conn};

  domain_actors domains{status, access, push, pages,
                        agent_registry_actor_handle, indexer_handle};
  nats::internal_edge internal_edge{internal_cfg, {&sys, domains, requests}};

  http::http_settings http_cfg;
  http_cfg.host = cfg.http_host;
  http_cfg.port = cfg.http_port;
  http_cfg.threads = cfg.http_threads;
  http_cfg.max_body = cfg.http_max_body;
  http_cfg.request_timeout = cfg.request_timeout;
  http_cfg.relative_url_root = cfg.relative_url_root;
  http_cfg.keys = keys;
  http::server http_srv{http_cfg, {&sys, domains, [&relay, &internal_edge, &feed, &index_feed, usage_board] {
                                     return relay_metrics(relay.stats())
                                       + internal_edge.metrics()
                                       + feed_metrics(feed.stats())
                                       + index_feed_metrics(index_feed.stats())
                                       + usage_board->render();
                                   }}};

  int rc = 0;
  std::string error;
  std::thread http_thread;
  if (!nats_conn.start(error)) {
    std::cerr << "gatehouse: " << error << '\n';
    rc = 2;
  } else if (!http_srv.bind(error)) {
    std::cerr << "gatehouse: " << error << '\n';
    rc = 2;
  } else if (!internal_edge.start(nats_conn.raw(), error)) {
    std::cerr << "gatehouse: " << error << '\n';
    rc = 2;
  } else {
    relay.start();
    feed.start();
    index_feed.start();
    http_thread = std::thread{[&] {
      http_srv.run();
    }};
    log::info(
      "gatehouse serving",
      {{"version", GATEHOUSE_VERSION},
       {"revision", GATEHOUSE_REVISION},
       {"listen", cfg.http_host + ":" + std::to_string(http_srv.port())},
       {"relative_url_root", cfg.relative_url_root}});
    int sig = 0;
    sigwait(&stop_signals, &sig);
    log::info("gatehouse stopping", {{"signal", sig}});
    watchdog.arm();
  }

  // Reverse order of start: edges first, so nothing new arrives.
  http_srv.stop();
  if (http_thread.joinable())
    http_thread.join();
  relay.stop();
  feed.stop();
  index_feed.stop();
  // Answers still in flight go out before the connection closes.
  internal_edge.stop();
  nats_conn.stop();
  caf::anon_send_exit(requests, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(push, caf::exit_reason::user_shutdown);
  for (auto& push_store : push_stores)
    caf::anon_send_exit(push_store, caf::exit_reason::user_shutdown);
  // They call relay.committed(): gone before the relay is.
  caf::scoped_actor{sys}->wait_for(push_stores);
  for (auto& partition : access)
    caf::anon_send_exit(partition, caf::exit_reason::user_shutdown);
  for (auto* lane : {&access_gits, &push_gits})
    for (auto& g : *lane)
      caf::anon_send_exit(g, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(agent_registry_actor_handle,
                      caf::exit_reason::user_shutdown);
  caf::anon_send_exit(agent_store, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(indexer_handle, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(indexer_store, caf::exit_reason::user_shutdown);
  // They call relay.committed() too: gone before the relay is.
  caf::scoped_actor{sys}->wait_for(agent_store, indexer_store);
  caf::anon_send_exit(pages, caf::exit_reason::user_shutdown);
  for (auto& store : pages_stores)
    caf::anon_send_exit(store, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(access_store, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(loader, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(status, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(store, caf::exit_reason::user_shutdown);
  return rc;
}

} // namespace gatehouse
