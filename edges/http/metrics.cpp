#include "edges/http/metrics.hpp"

#include <cstdio>
#include <sstream>

namespace gatehouse::http {

void metrics::observe(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& s = series_[{route, status}];
  ++s.count;
  s.sum += seconds;
  for (std::size_t i = 0; i < buckets.size(); ++i)
    if (seconds <= buckets[i])
      ++s.le[i];
}

std::string metrics::render() const {
  std::ostringstream out;
  std::lock_guard<std::mutex> guard{mtx_};
  out << "# HELP gatehouse_http_requests_total HTTP requests answered.\n"
         "# TYPE gatehouse_http_requests_total counter\n";
  for (auto& [key, s] : series_)
    out << "gatehouse_http_requests_total{route=\"" << key.first
        << "\",status=\"" << key.second << "\"} " << s.count << '\n';
  out << "# HELP gatehouse_http_request_duration_seconds Time from request "
         "to answer.\n"
         "# TYPE gatehouse_http_request_duration_seconds histogram\n";
  char le[32];
  for (auto& [key, s] : series_) {
    auto labels = "route=\"" + key.first + "\",status=\""
      + std::to_string(key.second) + "\"";
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      std::snprintf(le, sizeof le, "%g", buckets[i]);
      out << "gatehouse_http_request_duration_seconds_bucket{" << labels
          << ",le=\"" << le << "\"} " << s.le[i] << '\n';
    }
    out << "gatehouse_http_request_duration_seconds_bucket{" << labels
        << ",le=\"+Inf\"} " << s.count << '\n'
        << "gatehouse_http_request_duration_seconds_sum{" << labels << "} "
        << s.sum << '\n'
        << "gatehouse_http_request_duration_seconds_count{" << labels << "} "
        << s.count << '\n';
  }
  return out.str();
}

} // namespace gatehouse::http
