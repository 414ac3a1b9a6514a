#pragma once
// Identifiers for stored records: "<prefix>-" followed by 20 lowercase
// characters. The first 10 encode the creation time (unix milliseconds, base32
// in an alphabet whose ASCII order is its numeric order), the last 10 are
// random (OpenSSL RAND_bytes), so ids sort by creation time as plain strings.

#include <cstdint>
#include <string>
#include <string_view>

namespace af {

// Length of the part after "<prefix>-".
inline constexpr size_t kIdBodyLength = 20;

// A new id such as NewId("f") == "f-01hq3v5k8m2x9c4r7t6w". A trailing '-' on
// `prefix` is accepted ("f-" gives the same shape). Within one process, ids
// are strictly increasing in string order even when created in the same
// millisecond (the random part is incremented instead of redrawn).
// Thread-safe. Aborts only if the CSPRNG fails, which means a broken system.
std::string NewId(std::string_view prefix);

// The same shape for a given time with a fresh random suffix and no
// monotonic guarantee: for tests and for importing records with known times.
std::string NewIdAt(std::string_view prefix, int64_t unix_ms);

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// An id of the same shape derived from `key` (its SHA-256): for a record that
// must be created once however often the step that creates it runs (a resumed
// step redoes its tool calls).
std::string StableId(std::string_view prefix, std::string_view key);

}  // namespace af
