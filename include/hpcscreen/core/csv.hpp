#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace hpcscreen {

// One CSV field, quoted per RFC 4180 when it holds a comma, quote or line break.
std::string csv_field(std::string_view s);

// A float printed so that it reads back to the same value ("%.9g").
std::string format_score(float v);

// Whether s is valid UTF-8 (ids and SMILES are bytes: a Latin-1 catalogue is not).
bool valid_utf8(std::string_view s);

// The length of the UTF-8 sequence that starts at s[i] (1 for ASCII), 0 where none does.
std::size_t utf8_sequence_at(std::string_view s, std::size_t i);

// s as UTF-8 text for a page or a message: valid sequences kept; a byte that begins none (a
// Latin-1 byte) or a control byte other than tab and newline (NUL) shown as \xNN.
std::string shown_text(std::string_view s);

}  // namespace hpcscreen
