#include "af/core/private_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace af {

std::error_code CreatePrivateDirectories(const std::filesystem::path& dir) {
  std::error_code ec;
  if (dir.empty() || std::filesystem::is_directory(dir, ec)) return {};
  // The missing ancestors, outermost first.
  std::vector<std::filesystem::path> missing;
  for (auto p = dir; !p.empty() && !std::filesystem::exists(p, ec); p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST) {
      return std::error_code(errno, std::generic_category());
    }
    ::chmod(it->c_str(), 0700);  // mkdir's mode is masked by the umask
  }
  return {};
}

std::error_code CreatePrivateFile(const std::filesystem::path& file) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return {};
    return std::error_code(errno, std::generic_category());
  }
  ::fchmod(fd, 0600);
  ::close(fd);
  return {};
}

}  // namespace af
