// tar.gz archives (backups, debug bundles): round trips, interoperability with
// GNU tar both ways, and archives from anywhere that try to write outside.
#include "af/core/archive.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "support/test_util.h"

namespace af {
namespace {

namespace fs = std::filesystem;
using testing::RunCommand;
using testing::TempDir;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

unsigned ModeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// A tree with what a workspace holds: nested files, a long path, an
// executable, binary data, a link and an empty directory.
const std::string kLongDir = std::string(60, 'd') + "/" + std::string(60, 'e');

void MakeTree(const TempDir& t) {
  t.Write("src/a.txt", "alpha\n");
  t.Write("src/" + kLongDir + "/deep.txt", "deep\n");
  fs::path exe = t.Write("src/run.sh", "#!/bin/sh\necho hi\n");
  fs::permissions(exe, fs::perms(0755));
  std::string binary(70000, '\0');
  for (size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i * 7);
  t.Write("src/blob.bin", binary);
  fs::create_symlink("a.txt", t.path() / "src/link");
  fs::create_directories(t.path() / "src/empty");
}

TEST(Archive, RoundTripKeepsContentsModesLinksAndLongNames) {
  TempDir t;
  MakeTree(t);
  fs::path out = t.path() / "x.tar.gz";
  auto w = TarGzWriter::Create(out);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE((*w)->AddPath("tree", t.path() / "src").ok());
  ASSERT_TRUE((*w)->AddData("meta/info.json", "{\"a\":1}").ok());
  EXPECT_FALSE(fs::exists(out)) << "only Finish puts the archive under its name";
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_EQ(ModeOf(out), 0600u);

  fs::path dest = t.path() / "dest";
  Status s = ExtractTarGz(out, dest);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Slurp(dest / "tree/a.txt"), "alpha\n");
  EXPECT_EQ(Slurp(dest / "tree" / kLongDir / "deep.txt"), "deep\n");
  EXPECT_EQ(Slurp(dest / "tree/blob.bin"), Slurp(t.path() / "src/blob.bin"));
  EXPECT_EQ(ModeOf(dest / "tree/run.sh"), 0755u);
  EXPECT_TRUE(fs::is_symlink(dest / "tree/link"));
  EXPECT_EQ(fs::read_symlink(dest / "tree/link"), "a.txt");
  EXPECT_TRUE(fs::is_directory(dest / "tree/empty"));
  EXPECT_EQ(Slurp(dest / "meta/info.json"), "{\"a\":1}");

  auto one = ReadTarGzFile(out, "meta/info.json");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, "{\"a\":1}");
  EXPECT_FALSE(ReadTarGzFile(out, "nope").ok());
}

TEST(Archive, GnuTarReadsOursAndWeReadGnuTars) {
  TempDir t;
  MakeTree(t);
  fs::path ours = t.path() / "ours.tar.gz";
  auto w = TarGzWriter::Create(ours);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->AddPath("tree", t.path() / "src").ok());
  ASSERT_TRUE((*w)->Finish().ok());
  fs::create_directories(t.path() / "by-tar");
  auto r = RunCommand({"/bin/tar", "-xzf", ours.string(), "-C", (t.path() / "by-tar").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Slurp(t.path() / "by-tar/tree" / kLongDir / "deep.txt"), "deep\n");
  EXPECT_EQ(fs::read_symlink(t.path() / "by-tar/tree/link"), "a.txt");

  // GNU tar's own format (long names as 'L' entries).
  fs::path theirs = t.path() / "theirs.tar.gz";
  r = RunCommand({"/bin/tar", "-czf", theirs.string(), "-C", t.path().string(), "src"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(ExtractTarGz(theirs, t.path() / "by-us").ok());
  EXPECT_EQ(Slurp(t.path() / "by-us/src" / kLongDir / "deep.txt"), "deep\n");
  EXPECT_EQ(ModeOf(t.path() / "by-us/src/run.sh"), 0755u);
}

TEST(Archive, SkipLeavesEntriesOut) {
  TempDir t;
  MakeTree(t);
  fs::path out = t.path() / "x.tar.gz";
  auto w = TarGzWriter::Create(out);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->AddPath("tree", t.path() / "src",
                            [](const std::string& rel) {
                              return rel == "blob.bin" || rel == std::string(60, 'd');
                            })
                  .ok());
  ASSERT_TRUE((*w)->Finish().ok());
  auto entries = ListTarGz(out);
  ASSERT_TRUE(entries.ok());
  bool blob = false, a = false, below_skipped_dir = false;
  for (const auto& e : *entries) {
    blob |= e.name == "tree/blob.bin";
    a |= e.name == "tree/a.txt";
    below_skipped_dir |= e.name.rfind("tree/" + std::string(60, 'd'), 0) == 0;
  }
  EXPECT_FALSE(blob);
  EXPECT_FALSE(below_skipped_dir) << "a skipped directory leaves out everything under it";
  EXPECT_TRUE(a);
}

TEST(Archive, UnfinishedWriterLeavesNothing) {
  TempDir t;
  fs::path out = t.path() / "x.tar.gz";
  {
    auto w = TarGzWriter::Create(out);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddData("a", "b").ok());
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".partial"));
}

// Archives built by Python's tarfile, as an attacker would.
fs::path Hostile(const TempDir& t, const std::string& name, const std::string& python_body) {
  fs::path out = t.path() / name;
  std::string script =
      "import tarfile, io, sys\n"
      "tf = tarfile.open(sys.argv[1], 'w:gz')\n"
      "def add(n, data=b'x', kind=tarfile.REGTYPE, link=''):\n"
      "    i = tarfile.TarInfo(n); i.type = kind; i.linkname = link\n"
      "    i.size = len(data) if kind == tarfile.REGTYPE else 0\n"
      "    tf.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)\n" +
      python_body + "tf.close()\n";
  auto r = RunCommand({"/usr/bin/python3", "-c", script, out.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return out;
}

TEST(Archive, RefusesEntriesThatLeaveTheDestination) {
  TempDir t;
  fs::path outside = t.path() / "outside";
  fs::create_directories(outside);
  struct Case {
    std::string name, body;
  } cases[] = {
      {"dotdot.tgz", "add('ok.txt')\nadd('../outside/evil')\n"},
      {"absolute.tgz", "add('" + (outside / "evil").string() + "')\n"},
      {"via-link.tgz",
       "add('l', kind=tarfile.SYMTYPE, link='" + outside.string() + "')\nadd('l/evil')\n"},
      // A link alone, written through later (a restored data directory's
      // `logs` pointing elsewhere): absolute, or climbing out with ..
      {"link-absolute.tgz", "add('logs', kind=tarfile.SYMTYPE, link='" + outside.string() + "')\n"},
      {"link-climbing.tgz", "add('a/logs', kind=tarfile.SYMTYPE, link='../../outside')\n"},
  };
  for (const auto& c : cases) {
    fs::path archive = Hostile(t, c.name, c.body);
    fs::path dest = t.path() / ("dest-" + c.name);
    Status s = ExtractTarGz(archive, dest);
    EXPECT_FALSE(s.ok()) << c.name;
    EXPECT_EQ(s.message().rfind("unsafe ", 0), 0u) << s.ToString();
    EXPECT_NE(s.message().find(" in archive: "), std::string::npos) << s.ToString();
    EXPECT_FALSE(fs::exists(outside / "evil")) << c.name;
    EXPECT_FALSE(fs::is_symlink(dest / "logs") || fs::is_symlink(dest / "a/logs")) << c.name;
    EXPECT_FALSE(fs::exists(t.path() / "evil")) << c.name;
  }
}

TEST(Archive, DamagedOrTruncatedArchivesAreRefused) {
  TempDir t;
  MakeTree(t);
  fs::path out = t.path() / "x.tar.gz";
  auto w = TarGzWriter::Create(out);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->AddPath("tree", t.path() / "src").ok());
  ASSERT_TRUE((*w)->Finish().ok());
  std::string bytes = Slurp(out);

  t.Write("cut.tar.gz", bytes.substr(0, bytes.size() / 2));
  Status s = ExtractTarGz(t.path() / "cut.tar.gz", t.path() / "d1");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("damaged or not a tar.gz archive"), std::string::npos) << s.ToString();

  // Cut within its last bytes (the gzip trailer and the tar padding), which
  // the entries do not need: refused too, as ListTarGz sees it.
  for (size_t cut : {1, 4, 8, 12, 20}) {
    t.Write("tail.tar.gz", bytes.substr(0, bytes.size() - cut));
    s = ExtractTarGz(t.path() / "tail.tar.gz", t.path() / ("tail" + std::to_string(cut)));
    EXPECT_FALSE(s.ok()) << "cut " << cut;
    EXPECT_NE(s.message().find("damaged or not a tar.gz archive"), std::string::npos)
        << s.ToString();
    EXPECT_FALSE(ListTarGz(t.path() / "tail.tar.gz").ok()) << "cut " << cut;
  }
  EXPECT_TRUE(ListTarGz(out).ok());

  t.Write("junk.tar.gz", std::string(2000, 'j'));
  s = ExtractTarGz(t.path() / "junk.tar.gz", t.path() / "d2");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("damaged or not a tar.gz archive"), std::string::npos) << s.ToString();

  EXPECT_EQ(ExtractTarGz(t.path() / "missing.tar.gz", t.path() / "d3").code(), Code::kNotFound);
}

}  // namespace
}  // namespace af
