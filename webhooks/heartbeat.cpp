#include "webhooks/heartbeat.hpp"

#include "common/log.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace gatehouse::webhooks {

heartbeat::heartbeat(std::string path) : path_(std::move(path)) {
  if (!path_.empty())
    ::unlink(path_.c_str());
}

heartbeat::~heartbeat() {
  if (!path_.empty())
    ::unlink(path_.c_str());
}

void heartbeat::beat() {
  if (path_.empty())
    return;
  auto now = std::chrono::steady_clock::now();
  if (last_ != std::chrono::steady_clock::time_point{}
      && now - last_ < std::chrono::seconds(1))
    return;
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                  0644);
  bool ok = fd >= 0 && ::futimens(fd, nullptr) == 0;
  int err = errno;
  if (fd >= 0)
    ::close(fd);
  if (!ok) {
    if (!failing_)
      log::warn("webhooks: heartbeat file not written",
                {{"path", path_}, {"error", std::strerror(err)}});
    failing_ = true;
    return;
  }
  if (failing_)
    log::info("webhooks: heartbeat file written again", {{"path", path_}});
  failing_ = false;
  last_ = now;
}

} // namespace gatehouse::webhooks
