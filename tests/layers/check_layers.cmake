# Proves the layers hold (cmake/GatehouseLayers.cmake): from each library's
# include root, the preprocessor finds the headers its layer may use and
# none of the others. Run by ctest with -DCXX, -DLAYERS (build/layers) and
# -DWORK (a scratch folder).

# target | headers it must see | headers it must not see
set(rules
  "gatehouse_messages|messages/calls.hpp|actors/access/access_control.hpp,storage/pg_session.hpp,edges/error_status.hpp,common/ids.hpp"
  "gatehouse_actors|messages/calls.hpp,common/ids.hpp|storage/pg_session.hpp,storage/git_actor.hpp,edges/error_status.hpp,edges/http/server.hpp,edges/nats/internal_edge.hpp"
  "gatehouse_storage|messages/interfaces.hpp,common/ids.hpp|actors/access/access_control.hpp,edges/http/server.hpp,edges/nats/outbox_relay.hpp"
  "gatehouse_edge_http|messages/calls.hpp,edges/error_status.hpp|actors/access/access_control.hpp,storage/pg_session.hpp,edges/nats/internal_edge.hpp"
  "gatehouse_edge_nats|messages/outbox.hpp,edges/error_status.hpp|actors/access/access_control.hpp,storage/outbox_store.hpp,storage/request_store.hpp,edges/http/server.hpp"
)

file(MAKE_DIRECTORY "${WORK}")
set(failures "")
foreach(rule IN LISTS rules)
  string(REPLACE "|" ";" parts "${rule}")
  list(GET parts 0 target)
  list(GET parts 1 visible)
  list(GET parts 2 hidden)
  string(REPLACE "," ";" visible "${visible}")
  string(REPLACE "," ";" hidden "${hidden}")
  set(probe "${WORK}/${target}.cpp")
  set(text "")
  foreach(h IN LISTS visible)
    string(APPEND text "#if !__has_include(\"${h}\")\n#error ${target} cannot see ${h}\n#endif\n")
  endforeach()
  foreach(h IN LISTS hidden)
    string(APPEND text "#if __has_include(\"${h}\")\n#error ${target} can see ${h}\n#endif\n")
  endforeach()
  file(WRITE "${probe}" "${text}")
  execute_process(
    COMMAND "${CXX}" -std=c++17 -E -I "${LAYERS}/${target}" "${probe}"
    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(APPEND failures "${err}")
  endif()
endforeach()
if(failures)
  message(FATAL_ERROR "layering broken:\n${failures}")
endif()
message(STATUS "every layer sees exactly what it may")
