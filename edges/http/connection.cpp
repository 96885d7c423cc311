#include "edges/http/connection.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace gatehouse::http {

namespace {

constexpr std::size_t unlimited = static_cast<std::size_t>(-1);

// httplib refuses a longer request line (CRLF included) with 414; it is
// compiled into Debian's .so with the header's default, which we see here.
constexpr std::size_t max_request_line = CPPHTTPLIB_REQUEST_URI_MAX_LENGTH;

// Waits up to `timeout` until `fd` has one of `events`.
bool wait_for(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  auto* sa = reinterpret_cast<sockaddr*>(&addr);
  if ((peer ? ::getpeername(fd, sa, &len) : ::getsockname(fd, sa, &len)) != 0)
    return;
  std::array<char, NI_MAXHOST> host{};
  std::array<char, NI_MAXSERV> serv{};
  if (::getnameinfo(sa, len, host.data(), host.size(), serv.data(), serv.size(),
                    NI_NUMERICHOST | NI_NUMERICSERV)
      == 0) {
    ip = host.data();
    port = std::atoi(serv.data());
  }
}

} // namespace

// -- request heads ------------------------------------------------------------

head_verdict scan_head(std::string_view pending,
                       const connection_limits& limits) {
  auto end = pending.find("\r\n\r\n");
  auto head
    = end == std::string_view::npos ? pending : pending.substr(0, end + 2);
  auto first_line = head.find("\r\n");
  auto line_length
    = first_line == std::string_view::npos ? head.size() : first_line + 2;
  if (line_length > max_request_line)
    return head_verdict::too_long_uri;
  auto lines
    = static_cast<std::size_t>(std::count(head.begin(), head.end(), '\n'));
  if (lines > limits.max_header_fields + 1)
    return head_verdict::too_many_fields;
  if (end == std::string_view::npos)
    return pending.size() > limits.max_head_bytes ? head_verdict::too_large
                                                  : head_verdict::incomplete;
  return end + 4 > limits.max_head_bytes ? head_verdict::too_large
                                         : head_verdict::complete;
}

// -- connection ---------------------------------------------------------------

std::atomic<std::size_t> connection::open_{0};

connection::connection(int fd) : fd_(fd) {
  ++open_;
}

connection::~connection() {
  ::shutdown(fd_, SHUT_RDWR);
  ::close(fd_);
  --open_;
}

void connection::begin_request() {
  screened = false;
  body_expected = false;
  body_consumed = false;
  must_close = false;
  body_budget = unlimited;
  body_over_limit = false;
  body_read = 0;
  large_body = false;
}

bool connection::fill_nonblocking(std::size_t max_pending) {
  std::array<char, 16 * 1024> chunk;
  while (pending().size() < max_pending) {
    auto want = std::min(chunk.size(), max_pending - pending().size());
    auto n = ::recv(fd_, chunk.data(), want, MSG_DONTWAIT);
    if (n > 0) {
      buffer_.append(chunk.data(), static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return true;
    if (n < 0 && errno == EINTR)
      continue;
    return false; // EOF or error
  }
  return true;
}

long connection::fill_blocking(std::chrono::milliseconds timeout) {
  if (!wait_for(fd_, POLLIN, timeout))
    return -1;
  std::array<char, 16 * 1024> chunk;
  ssize_t n;
  do {
    n = ::recv(fd_, chunk.data(), chunk.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0)
    buffer_.append(chunk.data(), static_cast<std::size_t>(n));
  return static_cast<long>(n);
}

std::size_t connection::take(char* out, std::size_t size) {
  auto n = std::min(size, buffer_.size() - start_);
  std::memcpy(out, buffer_.data() + start_, n);
  start_ += n;
  if (start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  } else if (start_ > 64 * 1024) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  return n;
}

// -- httplib's stream
// -----------------------------------------------------------

connection_stream::connection_stream(connection& conn,
                                     const connection_limits& limits)
  : conn_(conn), limits_(limits) {
  address_of(conn.fd(), true, remote_ip_, remote_port_);
  address_of(conn.fd(), false, local_ip_, local_port_);
}

bool connection_stream::is_readable() const {
  return !conn_.pending().empty()
    || wait_for(conn_.fd(), POLLIN, limits_.io_timeout);
}

bool connection_stream::is_writable() const {
  return wait_for(conn_.fd(), POLLOUT, limits_.io_timeout);
}

ssize_t connection_stream::read(char* ptr, size_t size) {
  bool counting = conn_.body_budget != unlimited;
  if (counting) {
    // httplib asks only for what the framing says is still to come, so a
    // body past the budget shows as a read beyond it.
    if (conn_.body_read >= conn_.body_budget) {
      conn_.body_over_limit = true;
      return -1;
    }
    size = std::min(size, conn_.body_budget - conn_.body_read);
  }
  if (conn_.pending().empty()) {
    auto n = conn_.fill_blocking(limits_.io_timeout);
    if (n <= 0)
      return n;
  }
  auto n = conn_.take(ptr, size);
  if (counting)
    conn_.body_read += n;
  return static_cast<ssize_t>(n);
}

ssize_t connection_stream::write(const char* ptr, size_t size) {
  if (!wait_for(conn_.fd(), POLLOUT, limits_.io_timeout))
    return -1;
  ssize_t n;
  do {
    n = ::send(conn_.fd(), ptr, size, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

void connection_stream::get_remote_ip_and_port(std::string& ip,
                                               int& port) const {
  ip = remote_ip_;
  port = remote_port_;
}

void connection_stream::get_local_ip_and_port(std::string& ip,
                                              int& port) const {
  ip = local_ip_;
  port = local_port_;
}

socket_t connection_stream::socket() const {
  // httplib only compares this with FD_SETSIZE, to refuse sockets its
  // select() cannot watch; this stream polls, so a high descriptor is fine.
  return conn_.fd() < FD_SETSIZE ? conn_.fd() : INVALID_SOCKET;
}

bool write_all(int fd, std::string_view data,
               std::chrono::milliseconds timeout) {
  auto deadline = conn_clock::now() + timeout;
  while (!data.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - conn_clock::now());
    if (left.count() <= 0 || !wait_for(fd, POLLOUT, left))
      return false;
    auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// -- waiting room
// ---------------------------------------------------------------

waiting_room::waiting_room(connection_limits limits, ready_fn ready)
  : limits_(limits), ready_(std::move(ready)) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
}

waiting_room::~waiting_room() {
  stop();
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void waiting_room::start() {
  std::lock_guard<std::mutex> guard{mutex_};
  if (started_ || stopped_)
    return;
  started_ = true;
  thread_ = std::thread{[this] {
    loop();
  }};
}

void waiting_room::park(std::shared_ptr<connection> conn) {
  add(std::move(conn), mode::parked);
}

void waiting_room::linger(std::shared_ptr<connection> conn) {
  ::shutdown(conn->fd(), SHUT_WR);
  add(std::move(conn), mode::lingering);
}

void waiting_room::add(std::shared_ptr<connection> conn, mode how) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (stopped_)
    return; // dropping the last reference closes it
  auto now = conn_clock::now();
  bool head_started = how == mode::parked && !conn->pending().empty();
  auto wait = how == mode::lingering ? limits_.linger_timeout
    : head_started                   ? limits_.head_timeout
                                     : limits_.idle_timeout;
  int fd = conn->fd();
  waiting_[fd] = entry{std::move(conn), how, now + wait, head_started};
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = fd;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
}

void waiting_room::stop() {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    if (stopped_)
      return;
    stopped_ = true;
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable())
    thread_.join();
  std::unordered_map<int, entry> closing;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    closing.swap(waiting_);
  }
  // closing's destructor closes every waiting connection
}

void waiting_room::loop() {
  std::array<epoll_event, 256> events;
  // Deadlines are checked on this tick: a head timeout is honoured to
  // within it.
  constexpr int tick_ms = 50;
  auto next_expiry = conn_clock::now();
  for (;;) {
    int n = ::epoll_wait(epoll_fd_, events.data(),
                         static_cast<int>(events.size()), tick_ms);
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (stopped_)
        return;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == wake_fd_) {
        std::uint64_t count;
        [[maybe_unused]] auto r = ::read(wake_fd_, &count, sizeof(count));
        continue;
      }
      on_readable(events[i].data.fd);
    }
    auto now = conn_clock::now();
    if (now >= next_expiry) {
      expire(now);
      next_expiry = now + std::chrono::milliseconds(tick_ms);
    }
  }
}

void waiting_room::on_readable(int fd) {
  std::shared_ptr<connection> conn;
  mode how;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    auto it = waiting_.find(fd);
    if (it == waiting_.end())
      return;
    conn = it->second.conn;
    how = it->second.how;
  }
  auto forget = [&] {
    std::lock_guard<std::mutex> guard{mutex_};
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    waiting_.erase(fd);
  };
  if (how == mode::lingering) {
    // Discard a bounded amount per event, so one fast sender cannot keep
    // this thread from the others.
    std::array<char, 64 * 1024> sink;
    for (int i = 0; i < 16; ++i) {
      auto n = ::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT);
      if (n > 0)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
      forget(); // the peer closed: done
      return;
    }
    return;
  }
  bool open = conn->fill_nonblocking(limits_.max_head_bytes + 1);
  auto verdict = scan_head(conn->pending(), limits_);
  if (!open && verdict != head_verdict::complete) {
    forget();
    return;
  }
  if (verdict != head_verdict::incomplete) {
    hand_on(fd, verdict);
    return;
  }
  std::lock_guard<std::mutex> guard{mutex_};
  auto it = waiting_.find(fd);
  if (it != waiting_.end() && !it->second.head_started
      && !conn->pending().empty()) {
    it->second.head_started = true;
    it->second.deadline = conn_clock::now() + limits_.head_timeout;
  }
}

void waiting_room::hand_on(int fd, head_verdict verdict) {
  std::shared_ptr<connection> conn;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    auto it = waiting_.find(fd);
    if (it == waiting_.end())
      return;
    conn = std::move(it->second.conn);
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    waiting_.erase(it);
  }
  ready_(std::move(conn), verdict);
}

void waiting_room::expire(conn_clock::time_point now) {
  std::vector<std::shared_ptr<connection>> timed_out_heads;
  std::vector<std::shared_ptr<connection>> closing;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->second.deadline > now) {
        ++it;
        continue;
      }
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->first, nullptr);
      if (it->second.how == mode::parked && it->second.head_started)
        timed_out_heads.push_back(std::move(it->second.conn));
      else
        closing.push_back(std::move(it->second.conn)); // idle or lingered
      it = waiting_.erase(it);
    }
  }
  for (auto& conn : timed_out_heads)
    ready_(std::move(conn), head_verdict::timed_out);
}

} // namespace gatehouse::http
