#include "actors/system_status.hpp"

#include "messages/errors.hpp"

#include <caf/all.hpp>

namespace gatehouse {

namespace {

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

void probe(system_status_actor::stateful_pointer<system_status_state> self) {
  auto& st = self->state;
  if (st.probing)
    return;
  st.probing = true;
  self->request(st.store, st.settings.probe_timeout, atom::probe::value)
    .then(
      [self](store_probe& result) {
        auto& st = self->state;
        st.probing = false;
        st.postgres_up = true;
        st.postgres_error.clear();
        st.postgres_last_ok_ms = now_ms();
        st.gitlab_version = std::move(result.gitlab_version);
      },
      [self](caf::error& err) {
        auto& st = self->state;
        st.probing = false;
        st.postgres_up = false;
        st.postgres_error = render(err);
      });
}

} // namespace

system_status_actor::behavior_type system_status(
  system_status_actor::stateful_pointer<system_status_state> self,
  system_status_settings settings, store_actor store) {
  self->state.settings = std::move(settings);
  self->state.store = std::move(store);
  self->send(self, atom::tick::value);
  return {
    [=](check_query) -> check_view {
      auto& st = self->state;
      return {st.gitlab_version, st.settings.revision, st.postgres_up};
    },
    [=](geo_query) -> geo_view {
      return geo_view{false};
    },
    [=](atom::readiness) -> readiness_view {
      auto& st = self->state;
      return {st.postgres_up, st.postgres_error, st.nats_state,
              st.postgres_last_ok_ms};
    },
    [=](atom::nats_state, std::string& state) {
      self->state.nats_state = std::move(state);
    },
    [=](atom::tick) {
      probe(self);
      self->delayed_send(self, self->state.settings.probe_interval,
                         atom::tick::value);
    },
  };
}

} // namespace gatehouse
