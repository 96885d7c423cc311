#include "common/json_text.hpp"

#include <nlohmann/json.hpp>

namespace gatehouse::json_text {

void append_string(std::string& out, std::string_view text) {
  for (unsigned char ch : text)
    if (ch < 0x20 || ch >= 0x7f) {
      out += nlohmann::json(text).dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
      return;
    }
  out += '"';
  for (char ch : text) {
    if (ch == '"' || ch == '\\')
      out += '\\';
    out += ch;
  }
  out += '"';
}

void append_number(std::string& out, double number) {
  out += nlohmann::json(number).dump();
}

} // namespace gatehouse::json_text
