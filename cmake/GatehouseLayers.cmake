# The architecture, enforced by the compiler rather than by review: each
# library sees only the source folders its layer may include. Its include
# root is a folder of symbolic links to exactly those folders, so that, say,
# `#include "storage/…"` in an edge fails to compile. Includes name the
# module ("messages/errors.hpp"), as everywhere in the tree.
#
#   gatehouse_layer(<target> <folder or file below the source root>...)
function(gatehouse_layer target)
  set(root "${CMAKE_BINARY_DIR}/layers/${target}")
  foreach(path IN LISTS ARGN)
    if(NOT EXISTS "${GATEHOUSE_ROOT}/${path}")
      message(FATAL_ERROR "gatehouse_layer(${target}): no ${path}")
    endif()
    set(link "${root}/${path}")
    get_filename_component(parent "${link}" DIRECTORY)
    file(MAKE_DIRECTORY "${parent}")
    if(NOT EXISTS "${link}")
      file(CREATE_LINK "${GATEHOUSE_ROOT}/${path}" "${link}" SYMBOLIC)
    endif()
  endforeach()
  target_include_directories(${target} PRIVATE "${root}")
endfunction()
