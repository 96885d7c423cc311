#pragma once

// A webhook receiver on 127.0.0.1 for the tests: records every request and
// answers with a status the test can change.

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gatehouse::test {

struct received_request {
  std::string path;
  std::string query_x;
  httplib::Headers headers; // case-insensitive keys
  std::string body;

  /// The value of header `name`; "" when absent.
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string{} : it->second;
  }

  bool has_header(const std::string& name) const {
    return headers.find(name) != headers.end();
  }
};

class receiver {
public:
  receiver() {
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      received_request r;
      r.path = req.path;
      if (req.has_param("x"))
        r.query_x = req.get_param_value("x");
      r.headers = req.headers;
      r.body = req.body;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        requests_.push_back(std::move(r));
      }
      res.status = status.load();
      res.set_content("ok", "text/plain");
    };
    server_.Post(".*", handler);
    port_ = server_.bind_to_any_port("127.0.0.1");
    // bind_to_any_port listens already: connections queue until the
    // thread accepts them.
    thread_ = std::thread{[this] {
      server_.listen_after_bind();
    }};
    // stop() before the loop runs would be lost and join() would hang.
    while (!server_.is_running())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  ~receiver() {
    server_.stop();
    thread_.join();
  }

  receiver(const receiver&) = delete;
  receiver& operator=(const receiver&) = delete;

  int port() const {
    return port_;
  }

  std::string url(const std::string& path,
                  const std::string& host = "127.0.0.1") const {
    return "http://" + host + ":" + std::to_string(port_) + path;
  }

  std::vector<received_request> requests() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return requests_;
  }

  std::size_t count() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return requests_.size();
  }

  /// The status every request is answered with.
  std::atomic<int> status{200};

private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mtx_;
  std::vector<received_request> requests_;
};

} // namespace gatehouse::test
