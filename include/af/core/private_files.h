#pragma once
// The data directory holds API key hashes, the whole history of every
// feature and the logs: only the user running the server may read it. New
// directories are made 0700 and new files 0600, whatever the umask; existing
// ones are left as they are (the user may have chosen otherwise).

#include <filesystem>
#include <system_error>

namespace af {

// Like std::filesystem::create_directories, but every directory it creates
// gets mode 0700. Returns the error of the first directory that could not be
// made (empty on success, also when `dir` already exists).
std::error_code CreatePrivateDirectories(const std::filesystem::path& dir);

// Creates `file` empty with mode 0600 when it does not exist yet (so whatever
// opens it next inherits a private file); an existing file is not touched.
std::error_code CreatePrivateFile(const std::filesystem::path& file);

}  // namespace af
