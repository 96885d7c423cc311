#include "common/secrets.hpp"

#include "common/base64.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace gatehouse {

namespace {

constexpr std::size_t secret_length = 32;
// Far above any real secret; stops a misconfigured path such as /dev/zero.
constexpr std::size_t max_file_size = 64 * 1024;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw secret_error(path + ": " + what);
}

[[noreturn]] void fail_errno(const std::string& path, const char* doing,
                             int err) {
  fail(path, std::string{doing} + ": " + std::strerror(err));
}

// Closes a file descriptor on every path out of a function.
struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f'
    || c == '\r';
}

std::string trim(const std::string& text) {
  std::size_t begin = 0;
  auto end = text.size();
  while (begin < end && is_ascii_space(text[begin]))
    ++begin;
  while (end > begin && is_ascii_space(text[end - 1]))
    --end;
  return text.substr(begin, end - begin);
}

} // namespace

loaded_secret load_secret(jwt::caller who, const std::string& path) {
  fd_guard file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0)
    fail_errno(path, "cannot read", errno);
  // fstat on the open descriptor checks the file actually read.
  struct stat st {};
  if (::fstat(file.fd, &st) != 0)
    fail_errno(path, "cannot read", errno);
  std::string text;
  char buf[4096];
  for (;;) {
    auto n = ::read(file.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      fail_errno(path, "cannot read", errno);
    }
    if (n == 0)
      break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max_file_size)
      fail(path,
           "cannot read: larger than " + std::to_string(max_file_size)
             + " bytes");
  }

  loaded_secret result;
  if ((st.st_mode & 077) != 0)
    result.warning = path + " is readable by other users; chmod 600 it";

  if (who == jwt::caller::shell) {
    result.key = trim(text);
    if (result.key.empty())
      fail(path, "shell secret is empty");
    return result;
  }

  // Rails chomps one line ending, then decodes strictly.
  if (text.size() >= 2 && text.compare(text.size() - 2, 2, "\r\n") == 0)
    text.resize(text.size() - 2);
  else if (!text.empty() && text.back() == '\n')
    text.pop_back();
  auto decoded = base64_decode(text);
  if (!decoded)
    fail(path, "must be base64 of exactly 32 bytes (not valid base64)");
  if (decoded->size() != secret_length)
    fail(path,
         "must be base64 of exactly 32 bytes (got "
           + std::to_string(decoded->size()) + " bytes)");
  result.key = std::move(*decoded);
  return result;
}

bool create_secret_file(jwt::caller who, const std::string& path) {
  fd_guard file{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                       S_IRUSR | S_IWUSR)};
  if (file.fd < 0) {
    if (errno == EEXIST)
      return false;
    fail_errno(path, "cannot create", errno);
  }
  // Rails writes SecureRandom.hex(16) for Shell and strict base64 of 32
  // random bytes for the others, both without a newline.
  auto content = who == jwt::caller::shell
    ? hex_encode(random_bytes(secret_length / 2))
    : base64_encode(random_bytes(secret_length));
  auto undo = [&](const char* doing, int err) {
    ::unlink(path.c_str());
    fail_errno(path, doing, err);
  };
  // The umask may have cleared bits of 0600; set the mode exactly.
  if (::fchmod(file.fd, S_IRUSR | S_IWUSR) != 0)
    undo("cannot create", errno);
  std::size_t done = 0;
  while (done < content.size()) {
    auto n = ::write(file.fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      undo("cannot write", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(file.fd) != 0)
    undo("cannot write", errno);
  auto fd = file.fd;
  file.fd = -1;
  if (::close(fd) != 0)
    undo("cannot write", errno);
  return true;
}

} // namespace gatehouse
