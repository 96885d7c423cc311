# Sources of push processing as pure functions (paths relative to actors/):
# the /post_receive messages and the push events.
set(GATEHOUSE_PUSH_SOURCES
  push/push_events.cpp)
