// The pages domain actor with a typed mock of the pages store: the
// validation texts it owns, what it asks the store, and that a failing or
// silent store becomes an error within the lookup's deadline (contract
// other-callers §1.3, §3.1).

#include "actors/pages/pages_domain.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

using namespace gatehouse;
using namespace std::chrono_literals;

namespace {

enum class mode { answer, fail, silent };

struct store_script {
  std::atomic<mode> how{mode::answer};
  std::atomic<int> settings_reads{0};
  std::mutex mtx;
  std::vector<pages::rows_query> queries;
  /// Promises a silent store keeps, never delivered.
  std::vector<caf::typed_response_promise<pages::settings_row>> pending;
};

pages_store_actor::behavior_type mock_store(pages_store_actor::pointer self,
                                            store_script* s) {
  return {
    [=](pages::settings_query) -> caf::result<pages::settings_row> {
      ++s->settings_reads;
      if (s->how == mode::fail)
        return caf::make_error(errc::unavailable, "connection refused");
      if (s->how == mode::silent) {
        auto rp = self->make_response_promise<pages::settings_row>();
        std::lock_guard<std::mutex> guard{s->mtx};
        s->pending.push_back(rp);
        return rp;
      }
      pages::settings_row row;
      row.pages_host = "pages.example.com";
      return row;
    },
    [=](pages::rows_query& q) -> caf::result<pages::rows> {
      std::lock_guard<std::mutex> guard{s->mtx};
      s->queries.push_back(q);
      pages::rows r;
      pages::domain_row d;
      d.id = 1;
      d.project_id = 5;
      d.domain = "docs.example.org";
      r.domain = d;
      pages::project_row p;
      p.id = 5;
      p.namespace_id = 1;
      p.full_path = "g/p";
      p.visibility = "private";
      p.access_level = "enabled";
      pages::deployment_row dep;
      dep.id = 9;
      dep.root_directory = "public";
      p.deployments = {dep};
      r.domain_projects = {p};
      pages::namespace_row n;
      n.id = 1;
      n.path = n.full_path = "g";
      r.namespaces = {n};
      return r;
    },
  };
}

struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  store_script script;
  pages_store_actor store = sys.spawn(mock_store, &script);
  pages_actor pages;

  fixture() {
    pages_settings s;
    s.store_timeout = 300ms;
    pages = sys.spawn(pages_domain, s, std::vector<pages_store_actor>{store});
  }

  ~fixture() {
    self->send_exit(pages, caf::exit_reason::user_shutdown);
    self->send_exit(store, caf::exit_reason::user_shutdown);
  }

  caf::expected<pages::virtual_domain> lookup(std::optional<std::string> host,
                                              bool invalid = false) {
    caf::expected<pages::virtual_domain> out{caf::error{}};
    self->request(pages, 5s, pages::domain_query{std::move(host), invalid})
      .receive([&](pages::virtual_domain& d) { out = std::move(d); },
               [&](caf::error& e) { out = std::move(e); });
    return out;
  }
};

} // namespace

TEST_CASE("§1.3 a missing or invalid host is Grape's parameter error") {
  fixture f;
  auto missing = f.lookup(std::nullopt);
  REQUIRE_FALSE(missing);
  CHECK(classify(missing.error()) == errc::invalid_params);
  CHECK(error_detail(missing.error()) == "host is missing");
  auto invalid = f.lookup("x", true);
  REQUIRE_FALSE(invalid);
  CHECK(error_detail(invalid.error()) == "host is invalid");
  CHECK(f.script.settings_reads == 0);
}

TEST_CASE("§3.1 blank and over-long hosts find nothing without a read") {
  fixture f;
  auto blank = f.lookup(std::string{});
  REQUIRE(blank);
  CHECK_FALSE(blank->found);
  auto long_host = f.lookup(std::string(256, 'a'));
  REQUIRE(long_host);
  CHECK_FALSE(long_host->found);
  CHECK(f.script.settings_reads == 0);
}

TEST_CASE("§3.1 a lookup reads the settings, then the host's rows") {
  fixture f;
  auto d = f.lookup("Docs.Example.ORG");
  REQUIRE(d);
  CHECK(d->found);
  REQUIRE(d->lookup_paths.size() == 1);
  CHECK(d->lookup_paths[0].source.global_id
        == "gid://gitlab/PagesDeployment/9");
  std::lock_guard<std::mutex> guard{f.script.mtx};
  REQUIRE(f.script.queries.size() == 1);
  CHECK(f.script.queries[0].custom_domain == "docs.example.org");
  CHECK_FALSE(f.script.queries[0].unique_domain);
}

TEST_CASE("§3.1 a failing store is 503, a silent one times out in time") {
  fixture f;
  f.script.how = mode::fail;
  auto failed = f.lookup("docs.example.org");
  REQUIRE_FALSE(failed);
  CHECK(classify(failed.error()) == errc::unavailable);

  f.script.how = mode::silent;
  auto started = std::chrono::steady_clock::now();
  auto silent = f.lookup("docs.example.org");
  auto took = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(silent);
  CHECK((classify(silent.error()) == errc::unavailable
         || classify(silent.error()) == errc::timeout));
  CHECK(took < 3s);
}
