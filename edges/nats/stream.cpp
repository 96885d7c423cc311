#include "edges/nats/stream.hpp"

#include "edges/nats/handles.hpp"

namespace gatehouse::nats {

natsStatus ensure_events_stream(jsCtx* js, const events_stream_config& c,
                                bool update_existing, jsErrCode& jerr) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = c.name.c_str();
  const char* subjects[] = {c.subjects.c_str()};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = c.replicas;
  cfg.Duplicates
    = std::chrono::duration_cast<std::chrono::nanoseconds>(c.duplicate_window)
        .count();
  stream_info_ptr info;
  jerr = static_cast<jsErrCode>(0);
  natsStatus s = create(info, js_AddStream, js, &cfg, nullptr, &jerr);
  if (s != NATS_OK && jerr == JSStreamNameExistErr) {
    if (!update_existing)
      s = NATS_OK; // created meanwhile by its owner, `gatehouse serve`
    else
      s = create(info, js_UpdateStream, js, &cfg, nullptr, &jerr);
  }
  return s;
}

} // namespace gatehouse::nats
