#pragma once

// JSON text written straight into a string, byte for byte as nlohmann's
// dump() writes it, for the hot paths where building a document first cost
// more than the work itself (answers, access-log lines).

#include <string>
#include <string_view>

namespace gatehouse::json_text {

/// Appends `text` as a JSON string, as dump() with invalid UTF-8 replaced
/// writes it: printable ASCII as is but for '"' and '\\', everything else
/// through nlohmann itself.
void append_string(std::string& out, std::string_view text);

/// Appends `number` as dump() writes a JSON floating-point number.
void append_number(std::string& out, double number);

} // namespace gatehouse::json_text
