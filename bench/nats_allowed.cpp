// gatehouse_nats_bench: a closed-loop load client for Gatehouse's internal
// calls over NATS, written against nats.c (Debian ships no `nats` CLI).
//
// It keeps --concurrency requests outstanding, as wrk keeps its connections
// busy: each reply (or timeout) sends the next request of its slot. Every
// request goes to --subject with the Protobuf body built from --body (the
// same JSON body the HTTP benchmark posts, read through protobuf's JSON
// parser into AllowedRequest), and a reply counts as ok when its
// Gatehouse-Status is --status. Replies arrive on one wildcard inbox
// subscription; latencies are taken from publish to reply.
//
//   gatehouse_nats_bench --url nats://127.0.0.1:4222 --body
//   bench/allowed-body.json
//     [--subject gatehouse.internal.v1.allowed] [--concurrency 16]
//     [--duration 10] [--warmup 2] [--timeout-ms 5000] [--status 200]
//     [--request-ids] [--json] [--threads 1]
//
// --threads N opens N connections, each with its own reply subscription (so
// its own nats.c reader and delivery threads) and an equal share of the
// outstanding requests, as wrk -t N spreads its connections over N threads.
//
// Prints one summary line (or one JSON object with --json); exits 1 when a
// request failed or timed out, or none completed.

#include "gatehouse/internal/v1/access.pb.h"

#include <google/protobuf/util/json_util.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
  std::string url = "nats://127.0.0.1:4222";
  std::string subject = "gatehouse.internal.v1.allowed";
  std::string body_file;
  int concurrency = 16;
  double duration_s = 10;
  double warmup_s = 2;
  int timeout_ms = 5000;
  int status = 200;
  bool request_ids = false;
  bool json = false;
  int threads = 1;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "gatehouse_nats_bench: " << problem
            << "\nusage: gatehouse_nats_bench --url URL --body FILE "
               "[--subject S] [--concurrency N] [--duration SECONDS] "
               "[--warmup SECONDS] [--timeout-ms MS] [--status CODE] "
               "[--request-ids] [--json] [--threads N]\n";
  std::exit(2);
}

options parse_args(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--url")
      o.url = value();
    else if (a == "--subject")
      o.subject = value();
    else if (a == "--body")
      o.body_file = value();
    else if (a == "--concurrency" || a == "-c")
      o.concurrency = std::atoi(value().c_str());
    else if (a == "--duration" || a == "-d")
      o.duration_s = std::atof(value().c_str());
    else if (a == "--warmup")
      o.warmup_s = std::atof(value().c_str());
    else if (a == "--timeout-ms")
      o.timeout_ms = std::atoi(value().c_str());
    else if (a == "--status")
      o.status = std::atoi(value().c_str());
    else if (a == "--request-ids")
      o.request_ids = true;
    else if (a == "--json")
      o.json = true;
    else if (a == "--threads" || a == "-t")
      o.threads = std::atoi(value().c_str());
    else
      usage("unknown argument " + a);
  }
  if (o.body_file.empty())
    usage("--body is required");
  if (o.concurrency < 1 || o.duration_s <= 0 || o.timeout_ms < 1
      || o.threads < 1)
    usage("concurrency, duration, timeout and threads must be positive");
  if (o.threads > o.concurrency)
    o.threads = o.concurrency;
  return o;
}

// The Protobuf payload of the JSON body (GitLab's keys are the field names;
// ids may be JSON strings, as GitLab Shell sends them).
std::string payload_of(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    usage("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  gatehouse::internal::v1::AllowedRequest req;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  auto st = google::protobuf::util::JsonStringToMessage(ss.str(), &req, opts);
  if (!st.ok())
    usage(path + ": " + st.ToString());
  return req.SerializeAsString();
}

// One outstanding request per slot.
struct slot {
  std::uint64_t seq = 0;
  clock_type::time_point sent;
};

struct bench {
  options opt;
  std::string payload;
  natsConnection* nc = nullptr;
  natsSubscription* sub = nullptr;
  std::string inbox;
  std::mutex mtx;
  std::vector<slot> slots;
  bool measuring = false;
  bool stopping = false;
  std::vector<std::uint32_t> latencies_us;
  std::map<int, std::uint64_t> statuses;
  std::uint64_t timeouts = 0;
  std::uint64_t publish_errors = 0;
  std::uint64_t next_id = 0;

  // Sends the next request of slot `i`; mtx held.
  void send(std::size_t i) {
    auto& s = slots[i];
    ++s.seq;
    s.sent = clock_type::now();
    auto reply = inbox + "." + std::to_string(i) + "." + std::to_string(s.seq);
    natsMsg* msg = nullptr;
    natsStatus st
      = natsMsg_Create(&msg, opt.subject.c_str(), reply.c_str(), payload.data(),
                       static_cast<int>(payload.size()));
    if (st == NATS_OK && opt.request_ids) {
      auto id = "bench-" + std::to_string(++next_id);
      st = natsMsgHeader_Set(msg, "Gatehouse-Request-Id", id.c_str());
    }
    if (st == NATS_OK)
      st = natsConnection_PublishMsg(nc, msg);
    if (msg)
      natsMsg_Destroy(msg);
    if (st != NATS_OK)
      ++publish_errors; // the timeout check resends
  }

  static void on_reply(natsConnection*, natsSubscription*, natsMsg* msg,
                       void* closure) {
    auto* b = static_cast<bench*>(closure);
    auto now = clock_type::now();
    // <inbox>.<slot>.<seq>
    std::string subject = natsMsg_GetSubject(msg);
    auto rest = subject.substr(b->inbox.size() + 1);
    auto dot = rest.find('.');
    std::size_t i = std::stoul(rest.substr(0, dot));
    std::uint64_t seq = std::stoull(rest.substr(dot + 1));
    const char* status_text = nullptr;
    int status = 0;
    if (natsMsgHeader_Get(msg, "Gatehouse-Status", &status_text) == NATS_OK
        && status_text)
      status = std::atoi(status_text);
    natsMsg_Destroy(msg);
    std::lock_guard<std::mutex> guard{b->mtx};
    if (i >= b->slots.size() || b->slots[i].seq != seq)
      return; // the answer to a request that already timed out
    if (b->measuring) {
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  now - b->slots[i].sent)
                  .count();
      b->latencies_us.push_back(static_cast<std::uint32_t>(us));
      ++b->statuses[status];
    }
    if (!b->stopping)
      b->send(i);
  }

  // Resends the requests whose reply is overdue.
  void check_timeouts() {
    std::lock_guard<std::mutex> guard{mtx};
    auto now = clock_type::now();
    for (std::size_t i = 0; i < slots.size(); ++i)
      if (now - slots[i].sent > std::chrono::milliseconds(opt.timeout_ms)) {
        if (measuring)
          ++timeouts;
        if (!stopping)
          send(i);
      }
  }
};

void sleep_checking(std::vector<std::unique_ptr<bench>>& benches,
                    double seconds) {
  auto until = clock_type::now()
    + std::chrono::microseconds(static_cast<long>(seconds * 1e6));
  while (clock_type::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (auto& b : benches)
      b->check_timeouts();
  }
}

// Connects `b` and subscribes its reply inbox; false after printing why.
bool connect(bench& b) {
  natsOptions* nopts = nullptr;
  natsStatus st = natsOptions_Create(&nopts);
  if (st == NATS_OK)
    st = natsOptions_SetURL(nopts, b.opt.url.c_str());
  if (st == NATS_OK)
    st = natsOptions_SetName(nopts, "gatehouse-nats-bench");
  // Replies are small and many: no delivery delay, a large pending buffer.
  if (st == NATS_OK)
    st = natsOptions_SetMaxPendingMsgs(nopts, 1 << 20);
  // Requests are sent from the reply callback: without this, nats.c's
  // flusher adds about 1 ms to each.
  if (st == NATS_OK)
    st = natsOptions_SetSendAsap(nopts, true);
  if (st == NATS_OK)
    st = natsConnection_Connect(&b.nc, nopts);
  natsOptions_Destroy(nopts);
  if (st != NATS_OK) {
    std::cerr << "gatehouse_nats_bench: connect " << b.opt.url << ": "
              << natsStatus_GetText(st) << '\n';
    return false;
  }
  natsInbox* inbox = nullptr;
  if (natsInbox_Create(&inbox) != NATS_OK) {
    std::cerr << "gatehouse_nats_bench: no inbox\n";
    return false;
  }
  b.inbox = inbox;
  natsInbox_Destroy(inbox);
  st = natsConnection_Subscribe(&b.sub, b.nc, (b.inbox + ".>").c_str(),
                                &bench::on_reply, &b);
  if (st == NATS_OK)
    st = natsSubscription_SetPendingLimits(b.sub, -1, -1);
  if (st == NATS_OK)
    st = natsConnection_Flush(b.nc);
  if (st != NATS_OK) {
    std::cerr << "gatehouse_nats_bench: subscribe: " << natsStatus_GetText(st)
              << '\n';
    return false;
  }
  return true;
}

double percentile_ms(const std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty())
    return 0;
  auto idx
    = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[idx] / 1000.0;
}

} // namespace

int main(int argc, char** argv) {
  const options opt = parse_args(argc, argv);
  const std::string payload = payload_of(opt.body_file);
  std::vector<std::unique_ptr<bench>> benches;
  for (int t = 0; t < opt.threads; ++t) {
    auto b = std::make_unique<bench>();
    b->opt = opt;
    // An equal share of the outstanding requests, the first ones one more.
    b->opt.concurrency
      = opt.concurrency / opt.threads + (t < opt.concurrency % opt.threads);
    b->payload = payload;
    if (!connect(*b))
      return 1;
    benches.push_back(std::move(b));
  }

  for (auto& b : benches) {
    std::lock_guard<std::mutex> guard{b->mtx};
    b->slots.resize(static_cast<std::size_t>(b->opt.concurrency));
    b->measuring = opt.warmup_s <= 0;
    for (std::size_t i = 0; i < b->slots.size(); ++i)
      b->send(i);
  }
  if (opt.warmup_s > 0) {
    sleep_checking(benches, opt.warmup_s);
    for (auto& b : benches) {
      std::lock_guard<std::mutex> guard{b->mtx};
      b->measuring = true;
    }
  }
  auto start = clock_type::now();
  sleep_checking(benches, opt.duration_s);
  std::vector<std::uint32_t> lat;
  std::map<int, std::uint64_t> statuses;
  std::uint64_t timeouts = 0;
  std::uint64_t publish_errors = 0;
  double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  for (auto& b : benches) {
    std::lock_guard<std::mutex> guard{b->mtx};
    b->stopping = true;
    b->measuring = false;
    lat.insert(lat.end(), b->latencies_us.begin(), b->latencies_us.end());
    for (auto& [code, count] : b->statuses)
      statuses[code] += count;
    timeouts += b->timeouts;
    publish_errors += b->publish_errors;
  }
  for (auto& b : benches) {
    natsSubscription_Unsubscribe(b->sub);
    natsSubscription_Destroy(b->sub);
    natsConnection_Close(b->nc);
    natsConnection_Destroy(b->nc);
  }

  std::sort(lat.begin(), lat.end());
  std::uint64_t ok = statuses[opt.status];
  std::uint64_t other = lat.size() - ok;
  double rps = elapsed > 0 ? static_cast<double>(lat.size()) / elapsed : 0;
  double p50 = percentile_ms(lat, 0.50);
  double p99 = percentile_ms(lat, 0.99);
  if (opt.json) {
    std::printf("{\"subject\":\"%s\",\"concurrency\":%d,\"requests\":%zu,"
                "\"seconds\":%.3f,\"rps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
                "\"unexpected_status\":%llu,\"timeouts\":%llu,"
                "\"publish_errors\":%llu}\n",
                opt.subject.c_str(), opt.concurrency, lat.size(), elapsed,
                rps, p50, p99, static_cast<unsigned long long>(other),
                static_cast<unsigned long long>(timeouts),
                static_cast<unsigned long long>(publish_errors));
  } else {
    std::printf("%s  concurrency %d: %zu requests in %.2f s, %.0f req/s, "
                "p50 %.3f ms, p99 %.3f ms, %llu not %d, %llu timeouts\n",
                opt.subject.c_str(), opt.concurrency, lat.size(), elapsed,
                rps, p50, p99, static_cast<unsigned long long>(other),
                opt.status, static_cast<unsigned long long>(timeouts));
  }
  nats_Close();
  return (lat.empty() || other > 0 || timeouts > 0) ? 1 : 0;
}
