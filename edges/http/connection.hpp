#pragma once

// Connections of the HTTP edge, owned by us instead of httplib: httplib 0.11
// gives every connection a pool thread for its whole life and a fresh read
// buffer per request. So a caller that sends its request head slowly, or a
// keep-alive connection between requests, holds a thread (32 of them stall
// every caller), and pipelined requests after the first are lost with the
// buffer. Here a connection holds a thread only while a complete request
// head is being answered; otherwise it waits in the waiting room, one epoll
// thread for all of them. Internal to the HTTP edge.

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace gatehouse::http {

using conn_clock = std::chrono::steady_clock;

/// Bounds on what one connection may make the edge hold.
struct connection_limits {
  /// Request line and header fields together, in bytes: past it, 431.
  std::size_t max_head_bytes = 32 * 1024;
  /// Header fields of one request: past it, 431.
  std::size_t max_header_fields = 100;
  /// From the first byte of a request head to its blank line: past it, 408
  /// and the connection closes. Counts the whole head, not each recv, so a
  /// byte every few seconds does not keep a head open.
  std::chrono::milliseconds head_timeout{10000};
  /// How long a connection may wait for its next request.
  std::chrono::milliseconds idle_timeout{5000};
  /// Each wait for body bytes, and for the peer to take answer bytes.
  std::chrono::milliseconds io_timeout{5000};
  /// How long a connection refused before its body was read keeps reading
  /// (and discarding) what the peer still sends, so the peer reads the
  /// answer instead of a reset.
  std::chrono::milliseconds linger_timeout{1000};
  /// Open connections; more are closed as soon as they are accepted.
  std::size_t max_connections = 4096;
};

/// What the bytes buffered for a request head amount to.
enum class head_verdict {
  /// No blank line yet, within the limits.
  incomplete,
  /// The request line and header fields are all there.
  complete,
  /// A request line longer than httplib's compiled limit (414).
  too_long_uri,
  /// Larger than max_head_bytes (431).
  too_large,
  /// More than max_header_fields (431).
  too_many_fields,
  /// head_timeout passed before the head was complete (408).
  timed_out,
};

/// Judges the start of `pending` as a request head. Lines end with CRLF,
/// as httplib requires.
head_verdict scan_head(std::string_view pending,
                       const connection_limits& limits);

/// One accepted socket, its read buffer for its whole life (pipelined
/// requests survive between requests), and the state of its current
/// request that the server's handlers set.
class connection {
public:
  explicit connection(int fd);
  ~connection(); // closes the socket

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  int fd() const {
    return fd_;
  }

  /// Received bytes not yet consumed.
  std::string_view pending() const {
    return std::string_view{buffer_}.substr(start_);
  }

  /// Receives what the socket has without waiting, keeping at most
  /// `max_pending` bytes buffered. False when the peer closed or failed.
  bool fill_nonblocking(std::size_t max_pending);

  /// Waits up to `timeout` for bytes; what recv returns (0 for EOF, -1 for
  /// an error or the timeout).
  long fill_blocking(std::chrono::milliseconds timeout);

  /// Moves up to `size` pending bytes to `out`.
  std::size_t take(char* out, std::size_t size);

  /// Open connections in this process.
  static std::size_t open_count() {
    return open_.load();
  }

  // -- the current request (set by the server's handlers) --------------------

  /// Forgets the previous request's state.
  void begin_request();

  /// Pre-routing saw a complete, well-framed head.
  bool screened = false;
  /// The head announced a body (Content-Length > 0 or chunked).
  bool body_expected = false;
  /// httplib read the whole body into the request.
  bool body_consumed = false;
  /// Nothing more may be read from this connection: answer, then close.
  bool must_close = false;
  /// Body bytes (chunk framing included) that read() may deliver; set by
  /// pre-routing once the head is consumed, so every later read is body.
  /// Unlimited unless set.
  std::size_t body_budget = static_cast<std::size_t>(-1);
  /// read() refused a byte past body_budget.
  bool body_over_limit = false;
  /// Body bytes read() delivered.
  std::size_t body_read = 0;
  /// The body is large enough to give memory back to the system after it.
  bool large_body = false;

private:
  int fd_;
  std::string buffer_;
  std::size_t start_ = 0;
  static std::atomic<std::size_t> open_;
};

/// httplib's view of a connection: reads come from its buffer first, and
/// body reads are counted against its budget.
class connection_stream : public httplib::Stream {
public:
  connection_stream(connection& conn, const connection_limits& limits);

  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override;

private:
  connection& conn_;
  const connection_limits& limits_;
  std::string remote_ip_, local_ip_;
  int remote_port_ = 0, local_port_ = 0;
};

/// Writes all of `data` within `timeout`; false when the peer does not take
/// it.
bool write_all(int fd, std::string_view data,
               std::chrono::milliseconds timeout);

/// One thread and one epoll set for every connection between requests:
/// waits for a complete request head (or a limit) and hands the connection
/// to `ready`, which runs it on a worker.
class waiting_room {
public:
  using ready_fn
    = std::function<void(std::shared_ptr<connection>, head_verdict)>;

  waiting_room(connection_limits limits, ready_fn ready);
  ~waiting_room();

  waiting_room(const waiting_room&) = delete;
  waiting_room& operator=(const waiting_room&) = delete;

  /// Starts the thread; idempotent.
  void start();

  /// Waits for `conn`'s next request head without holding a worker thread.
  /// After stop(), closes it instead.
  void park(std::shared_ptr<connection> conn);

  /// Closes `conn` the way a peer still sending can read our answer: shuts
  /// down writing, discards what arrives for linger_timeout, then closes.
  void linger(std::shared_ptr<connection> conn);

  /// Stops the thread and closes every waiting connection. Idempotent.
  void stop();

private:
  enum class mode { parked, lingering };
  struct entry {
    std::shared_ptr<connection> conn;
    mode how;
    conn_clock::time_point deadline;
    bool head_started;
  };

  void add(std::shared_ptr<connection> conn, mode how);
  void loop();
  // One readiness event of `fd`; may hand the connection on.
  void on_readable(int fd);
  void expire(conn_clock::time_point now);
  void hand_on(int fd, head_verdict verdict);

  connection_limits limits_;
  ready_fn ready_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::mutex mutex_;
  std::unordered_map<int, entry> waiting_;
  bool stopped_ = false;
  bool started_ = false;
  std::thread thread_;
};

} // namespace gatehouse::http
