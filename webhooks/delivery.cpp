#include "webhooks/delivery.hpp"

#include "webhooks/address.hpp"

#include "common/base64.hpp"
#include "common/percent_encoding.hpp"

#include <httplib.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace gatehouse::webhooks {

namespace {

// Gatehouse's namespace for name-based UUIDs (a fixed random UUID).
constexpr std::array<unsigned char, 16> uuid_namespace
  = {0x3f, 0x0e, 0x5b, 0x52, 0x6c, 0x1d, 0x4a, 0x8e,
     0x9d, 0x27, 0xb4, 0x1f, 0x0c, 0x8a, 0x6e, 0x13};

std::string without_line_breaks(std::string value) {
  value.erase(std::remove_if(value.begin(), value.end(),
                             [](char c) { return c == '\r' || c == '\n'; }),
              value.end());
  return value;
}

std::string percent_encode_unsafe(std::string_view text) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 0x0f];
    } else {
      out += ch;
    }
  }
  return out;
}

bool valid_host_char(char ch) {
  auto c = static_cast<unsigned char>(ch);
  return std::isalnum(c) || c == '.' || c == '-' || c == '_';
}

/// Stops the client when the attempt runs past its deadline: httplib's
/// timeouts apply per read, so a receiver that drips bytes slowly would
/// otherwise hold the consumer indefinitely.
class deadline_guard {
public:
  deadline_guard(httplib::ClientImpl& client, std::chrono::milliseconds limit)
    : thread_([this, &client, limit] {
        std::unique_lock<std::mutex> lock{mtx_};
        if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
          fired_ = true;
          lock.unlock();
          client.stop();
        }
      }) {}

  ~deadline_guard() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  bool fired() const {
    return fired_;
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool done_ = false;
  std::atomic<bool> fired_{false};
  std::thread thread_;
};

} // namespace

std::optional<event_kind> parse_event_kind(std::string_view text) {
  if (text == "push")
    return event_kind::push;
  if (text == "tag_push")
    return event_kind::tag_push;
  return std::nullopt;
}

const char* gitlab_event_name(event_kind kind) {
  return kind == event_kind::tag_push ? "Tag Push Hook" : "Push Hook";
}

std::string uuid_v5(const std::array<unsigned char, 16>& ns,
                    std::string_view name) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr);
  EVP_DigestUpdate(ctx, ns.data(), ns.size());
  EVP_DigestUpdate(ctx, name.data(), name.size());
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_MD_CTX_free(ctx);
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x50); // v5
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80); // RFC 4122
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out += '-';
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0x0f];
  }
  return out;
}

std::string name_based_uuid(std::string_view name) {
  return uuid_v5(uuid_namespace, name);
}

std::string webhook_uuid(std::int64_t hook_id) {
  return name_based_uuid("webhook:" + std::to_string(hook_id));
}

std::string idempotency_key(std::string_view event_id, std::int64_t hook_id) {
  std::string id{event_id};
  std::transform(id.begin(), id.end(), id.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return name_based_uuid("delivery:" + id + ":" + std::to_string(hook_id));
}

bool is_uuid(std::string_view text) {
  if (text.size() != 36)
    return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[i] != '-' : hex_digit_value(text[i]) < 0)
      return false;
  }
  return true;
}

header_list delivery_headers(const hook_target& hook, event_kind kind,
                             const std::string& event_id,
                             const instance_settings& settings) {
  header_list h{
    {"Content-Type", "application/json"},
    {"User-Agent", "GitLab/" + settings.gitlab_version},
    {"Idempotency-Key", idempotency_key(event_id, hook.id)},
    {"X-Gitlab-Event", gitlab_event_name(kind)},
    {"X-Gitlab-Webhook-UUID", webhook_uuid(hook.id)},
    {"X-Gitlab-Instance", settings.external_url},
    {"X-Gitlab-Event-UUID", event_id},
  };
  if (!hook.token.empty())
    h.emplace_back("X-Gitlab-Token", hook.token);
  for (auto& [name, value] : h)
    value = without_line_breaks(std::move(value));
  return h;
}

std::string target_url::host_header() const {
  std::string out
    = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != (https ? 443 : 80))
    out += ":" + std::to_string(port);
  return out;
}

std::optional<target_url> parse_target_url(const std::string& url,
                                           std::string& error) {
  target_url out;
  auto lower = url.substr(0, 8);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  std::size_t start = 0;
  if (lower.rfind("http://", 0) == 0) {
    start = 7;
  } else if (lower.rfind("https://", 0) == 0) {
    out.https = true;
    out.port = 443;
    start = 8;
  } else {
    error = "the URL is not http:// or https://";
    return std::nullopt;
  }
  auto end = url.find_first_of("/?#", start);
  if (end == std::string::npos)
    end = url.size();
  std::string authority = url.substr(start, end - start);
  if (auto at = authority.rfind('@'); at != std::string::npos) {
    auto userinfo = authority.substr(0, at);
    authority.erase(0, at + 1);
    auto colon = userinfo.find(':');
    auto password
      = colon == std::string::npos ? std::string{} : userinfo.substr(colon + 1);
    out.basic_auth
      = std::make_pair(percent_decode(userinfo.substr(0, colon), false),
                       percent_decode(password, false));
  }
  std::string port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string::npos) {
      error = "the URL has an unterminated IPv6 address";
      return std::nullopt;
    }
    out.host = authority.substr(1, close - 1);
    auto rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        error = "the URL has text after its IPv6 address";
        return std::nullopt;
      }
      port_text = rest.substr(1);
    }
    bool ok = !out.host.empty()
      && std::all_of(out.host.begin(), out.host.end(), [](char c) {
           return hex_digit_value(c) >= 0 || c == ':' || c == '.' || c == '%'
             || valid_host_char(c);
         });
    if (!ok) {
      error = "the URL has an invalid IPv6 address";
      return std::nullopt;
    }
  } else {
    auto colon = authority.find(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos)
      port_text = authority.substr(colon + 1);
    if (out.host.empty()
        || !std::all_of(out.host.begin(), out.host.end(), valid_host_char)) {
      error = "the URL has no valid host";
      return std::nullopt;
    }
  }
  if (!port_text.empty()) {
    if (port_text.size() > 5
        || !std::all_of(port_text.begin(), port_text.end(),
                        [](unsigned char c) { return std::isdigit(c); })
        || std::stoi(port_text) < 1 || std::stoi(port_text) > 65535) {
      error = "the URL has an invalid port";
      return std::nullopt;
    }
    out.port = std::stoi(port_text);
  }
  auto rest = url.substr(end);
  rest = rest.substr(0, rest.find('#'));
  if (rest.empty() || rest.front() != '/')
    rest.insert(rest.begin(), '/');
  out.path = percent_encode_unsafe(rest);
  return out;
}

attempt_result post_once(const target_url& url, const std::string& address,
                         const header_list& headers, const std::string& body,
                         std::chrono::milliseconds timeout) {
  std::unique_ptr<httplib::ClientImpl> client;
  if (url.https) {
    auto ssl = std::make_unique<httplib::SSLClient>(url.host, url.port);
    ssl->enable_server_certificate_verification(true);
    client = std::move(ssl);
  } else {
    client = std::make_unique<httplib::ClientImpl>(url.host, url.port);
  }
  // Connect to the checked address; the name is not resolved again. Host,
  // SNI and certificate verification still use the URL's host.
  client->set_hostname_addr_map({{url.host, address}});
  client->set_connection_timeout(timeout);
  client->set_read_timeout(timeout);
  client->set_write_timeout(timeout);
  client->set_keep_alive(false);
  client->set_follow_location(false);
  client->set_url_encode(false);
  client->set_decompress(false);
  client->set_tcp_nodelay(true);
  if (url.basic_auth)
    client->set_basic_auth(url.basic_auth->first, url.basic_auth->second);

  httplib::Request req;
  req.method = "POST";
  req.path = url.path;
  for (const auto& [name, value] : headers)
    req.headers.emplace(name, value);
  req.headers.emplace("Host", url.host_header());
  req.body = body;
  // The response body is not kept: a receiver cannot make us buffer it.
  req.content_receiver = [](const char*, size_t, uint64_t, uint64_t) {
    return true;
  };

  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  bool sent = false;
  bool timed_out = false;
  {
    deadline_guard guard{*client, timeout};
    sent = client->send(req, res, err);
    timed_out = guard.fired();
  }
  attempt_result out;
  if (sent) {
    out.status = res.status;
    if (!out.ok())
      out.error = "HTTP " + std::to_string(res.status);
    return out;
  }
  if (timed_out)
    out.error = "timed out after " + std::to_string(timeout.count()) + " ms";
  else
    out.error = httplib::to_string(err);
  out.connect_failed = err == httplib::Error::Connection;
  return out;
}

delivery_result deliver(
  const hook_target& hook, const header_list& headers, const std::string& body,
  bool allow_local, const delivery_policy& policy,
  const std::function<bool(std::chrono::milliseconds)>& pause,
  const std::function<void()>& before_attempt) {
  delivery_result out;
  std::string error;
  auto url = parse_target_url(hook.url, error);
  if (!url) {
    out.error = error;
    return out;
  }
  for (int attempt = 0; attempt <= policy.retries; ++attempt) {
    if (attempt > 0) {
      auto wait = std::min<std::chrono::milliseconds>(
        policy.retry_base * (1LL << std::min(attempt - 1, 20)),
        std::chrono::seconds(5));
      if (!pause(wait)) {
        out.abandoned = true;
        return out;
      }
    }
    // Resolved once per attempt and connected to by address only.
    auto resolved = resolve_and_check(url->host, allow_local);
    if (resolved.blocked) {
      // A refused target is final: no request leaves, no retry helps.
      out.error = resolved.error;
      out.status = 0;
      return out;
    }
    if (before_attempt)
      before_attempt();
    ++out.attempts;
    if (!resolved.error.empty()) {
      out.status = 0;
      out.error = resolved.error;
      continue;
    }
    attempt_result r;
    for (const auto& address : resolved.addresses) {
      r = post_once(*url, address, headers, body, policy.timeout);
      if (!r.connect_failed)
        break;
    }
    out.status = r.status;
    out.error = r.error;
    if (r.ok()) {
      out.delivered = true;
      out.error.clear();
      return out;
    }
  }
  return out;
}

} // namespace gatehouse::webhooks
