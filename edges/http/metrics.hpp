#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace gatehouse::http {

/// Request counts and latency histograms by route and status, rendered in
/// the Prometheus text format.
class metrics {
public:
  /// Upper bounds of the latency buckets, in seconds.
  static constexpr std::array<double, 12> buckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0};

  /// Records one answered request.
  void observe(const std::string& route, int status, double seconds);

  /// The exposition text for every series recorded so far.
  std::string render() const;

private:
  struct series {
    std::uint64_t count = 0;
    double sum = 0;
    std::array<std::uint64_t, buckets.size()> le{};
  };
  mutable std::mutex mtx_;
  std::map<std::pair<std::string, int>, series> series_;
};

} // namespace gatehouse::http
