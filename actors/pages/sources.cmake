# Sources of GitLab Pages' domain (paths relative to actors/).
set(GATEHOUSE_PAGES_SOURCES
  pages/rules.cpp
  pages/pages_domain.cpp)
