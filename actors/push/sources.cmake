# Sources of push processing as pure functions (paths relative to actors/):
# resolution, push options, the /post_receive messages and the push events.
set(GATEHOUSE_PUSH_SOURCES
  push/push_events.cpp
  push/push_options.cpp
  push/post_receive_messages.cpp
  push/push_payload.cpp)
