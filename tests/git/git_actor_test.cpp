#include "storage/git_actor.hpp"

#include "messages/errors.hpp"
#include "tests/git/git_fixture.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

using namespace gatehouse;
using namespace std::chrono_literals;

TEST_CASE("the git actor answers git questions", "[git][actor]") {
  test::git_scratch s;
  const auto commits = s.two_commits_pushed();
  const auto& c1 = commits.first;
  const auto& c2 = commits.second;

  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  storage::git_settings settings;
  settings.per_call_timeout = 10s;
  auto git = sys.spawn<caf::detached>(storage::git, settings);
  caf::scoped_actor self{sys};

  auto ask = [&](const access::git_questions& q) {
    access::git_facts out;
    self->request(git, 20s, atom::inspect::value, q)
      .receive([&](access::git_facts& facts) { out = std::move(facts); },
               [&](caf::error& e) { FAIL(render(e)); });
    return out;
  };

  access::git_questions q;
  q.location = s.bare_location();
  q.ancestry = {{c1, c2}, {c2, c1}};
  q.branches_containing = {c2};
  q.ask_empty = true;
  auto facts = ask(q);
  CHECK(facts.unavailable_reason.empty());
  CHECK(facts.is_ancestor.at({c1, c2}) == true);
  CHECK(facts.is_ancestor.at({c2, c1}) == false);
  CHECK(facts.branches_containing.at(c2) == std::vector<std::string>{"main"});
  CHECK(facts.repository_empty == false);

  q.location.reset();
  facts = ask(q);
  CHECK(facts.unavailable_reason == "the repository storage has no local path");
  CHECK(facts.is_ancestor.empty());

  self->send_exit(git, caf::exit_reason::user_shutdown);
}
