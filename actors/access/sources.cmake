# Sources of the /allowed access decision (paths relative to actors/).
set(GATEHOUSE_ACCESS_SOURCES
  access/git_access.cpp
  access/ref_rules.cpp
  access/http_auth.cpp)
