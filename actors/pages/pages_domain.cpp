#include "actors/pages/pages_domain.hpp"

#include "actors/pages/rules.hpp"

#include "common/ascii.hpp"
#include "common/log.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <memory>

namespace gatehouse {

namespace {

using self_pointer = pages_actor::stateful_pointer<pages_state>;
using clock_type = std::chrono::steady_clock;

// A failed store read: 503 for Pages, which retries and keeps its cache.
caf::error store_failure(const caf::error& err) {
  log::warn("pages store request failed", {{"error", render(err)}});
  return caf::make_error(classify(err));
}

// What is left of the lookup's budget; at least 1 ms, so that a request
// past its deadline still fails through CAF's timeout, not a zero wait.
std::chrono::milliseconds left_until(clock_type::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    deadline - clock_type::now());
  return std::max(left, std::chrono::milliseconds{1});
}

caf::result<pages::virtual_domain> on_lookup(self_pointer self,
                                             pages::domain_query& q) {
  if (q.host_invalid)
    return caf::make_error(errc::invalid_params, "host is invalid");
  if (!q.host)
    return caf::make_error(errc::invalid_params, "host is missing");
  // Checked before any read: a blank or over-long host finds nothing.
  if (q.host->empty() || q.host->size() > pages::max_host_length)
    return pages::virtual_domain{};
  auto host = ascii_lower(std::move(*q.host));
  auto deadline = clock_type::now() + self->state.settings.store_timeout;
  auto rp = self->make_response_promise<pages::virtual_domain>();
  auto& st = self->state;
  auto store = st.stores[st.next_store++ % st.stores.size()];
  self
    ->request(store, left_until(deadline),
              pages::settings_query{})
    .then(
      [self, rp, host, deadline, store](pages::settings_row& settings) mutable {
        auto keys = pages::keys_for(host, settings);
        if (!keys) {
          rp.deliver(pages::virtual_domain{});
          return;
        }
        self->request(store, left_until(deadline), *keys)
          .then(
            [rp, host, settings](pages::rows& found) mutable {
              rp.deliver(pages::resolve(host, settings, found));
            },
            [rp](caf::error& err) mutable { rp.deliver(store_failure(err)); });
      },
      [rp](caf::error& err) mutable { rp.deliver(store_failure(err)); });
  return rp;
}

} // namespace

pages_actor::behavior_type pages_domain(self_pointer self,
                                        pages_settings settings,
                                        std::vector<pages_store_actor> stores) {
  self->state.settings = settings;
  self->state.stores = std::move(stores);
  return {
    [self](pages::domain_query& q) { return on_lookup(self, q); },
    [](pages::status_query) { return pages::status_answer{}; },
  };
}

} // namespace gatehouse
