// Forced into every C++ translation unit of the TSan build (CMakeLists.txt).
//
// protobuf 3.21's map_field.h gives MapFieldBase two extra members when
// __SANITIZE_THREAD__ is defined. Debian's libprotobuf.so is built without
// TSan, so instrumented code and the library disagree on the layout of every
// map field: reflection over one (the NATS codec's NUL check walks
// UsageMetricsRequest.counters) segfaulted inside
// MapFieldBase::SyncRepeatedFieldWithMap. Reading the header once with the
// macro hidden gives every translation unit the library's layout; the
// include guard keeps later includes from reading it again.
#pragma once
#include <cstddef> // c++config.h first, so libstdc++ still sees TSan
#pragma push_macro("__SANITIZE_THREAD__")
#undef __SANITIZE_THREAD__
#include <google/protobuf/map_field.h>
#pragma pop_macro("__SANITIZE_THREAD__")
