#pragma once
// Small ASCII string helpers shared by every layer. "Whitespace" is what
// std::isspace says in the C locale (space, \t, \n, \v, \f, \r); "lower case"
// folds ASCII letters only, so UTF-8 bytes pass through unchanged.
//
// Trim and TrimRight return a view into their argument: keep the argument
// alive while the view is used (std::string(Trim(x)) for an owned copy).

#include <string>
#include <string_view>

namespace af {

// `s` without leading and trailing whitespace.
std::string_view Trim(std::string_view s);
// `s` without trailing whitespace (e.g. the newline ending a command's output).
std::string_view TrimRight(std::string_view s);
// `s` with ASCII letters in lower case.
std::string Lower(std::string_view s);
// Whether `s` begins with `prefix`.
bool StartsWith(std::string_view s, std::string_view prefix);
// `s` for a URL path segment or query value: every byte but A-Z a-z 0-9 - _ . ~
// as %XX.
std::string PercentEncode(std::string_view s);
// `text` with the password of every URL in it (scheme://user:password@host)
// shown as "***": the one rule for connection URLs in logs, messages, events,
// `config show` and bundles.
std::string MaskUrlPasswords(std::string_view text);
// `text` safe to print on a terminal: control characters but newline and tab
// (ESC, BEL, DEL, and the C1 controls U+0080..U+009F) shown as \xHH or
// \u00HH, so text from a server or a model cannot move the cursor, retitle
// the window or clear the screen.
std::string EscapeControls(std::string_view text);
// `s` as one POSIX shell word: as is when it holds only characters no shell
// treats specially, else in single quotes.
std::string ShellQuote(std::string_view s);
// The longest prefix of `text` of at most `max` bytes that does not end inside
// a UTF-8 character (a view into `text`).
std::string_view Utf8Prefix(std::string_view text, size_t max);
// Length of the well-formed UTF-8 sequence at s[i] (1 to 4 bytes), 0 when the
// bytes there are not one (a stray continuation byte, a cut sequence, an
// overlong or surrogate form, a value past U+10FFFF).
size_t Utf8SequenceLength(std::string_view s, size_t i);
// `s` with every byte that is not part of a well-formed UTF-8 sequence
// replaced by U+FFFD: text from outside (a server's reply, a file) that JSON
// and PostgreSQL would refuse whole.
std::string ReplaceInvalidUtf8(std::string_view s);

}  // namespace af
