#include "af/agents/prp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/test_util.h"

namespace af {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const std::filesystem::path kExamples = std::filesystem::path(AF_SOURCE_DIR) / "examples" / "prp";

std::vector<std::string> V(std::initializer_list<const char*> items) {
  return {items.begin(), items.end()};
}

// A request that passes every check; tests remove one thing at a time.
FeatureRequest GoodRequest() {
  FeatureRequest r;
  r.title = "Add a slug helper";
  r.description =
      "Create a slugify function for page titles so that links stay stable across renderers.";
  r.requirements = V({"slugify(text) returns lower-case ASCII", "runs collapse to one dash"});
  r.acceptance_criteria = V({"slugify('Hello, World!') == 'hello-world'"});
  r.tech_stack = "python3 + unittest";
  r.validation_gates = V({"python3 -m unittest"});
  return r;
}

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// ------------------------------------------------------------------ JSON

TEST(PrpJson, AllFields) {
  json j = {{"title", "T"},
            {"description", "D"},
            {"requirements", {"r1", "  r2  ", "   "}},
            {"acceptance_criteria", {"c1"}},
            {"tech_stack", "python3"},
            {"validation_gates", {"python3 -m unittest"}},
            {"context", "see README.md"},
            {"priority", "High"},
            {"project", "my-app_1.2"},
            {"challenge_vague_requirements", false}};
  auto r = FeatureRequestFromJson(j);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->title, "T");
  EXPECT_EQ(r->description, "D");
  EXPECT_EQ(r->requirements, V({"r1", "r2"}));  // trimmed, blank dropped
  EXPECT_EQ(r->acceptance_criteria, V({"c1"}));
  EXPECT_EQ(r->tech_stack, "python3");
  EXPECT_EQ(r->validation_gates, V({"python3 -m unittest"}));
  EXPECT_EQ(r->context, "see README.md");
  EXPECT_EQ(r->priority, "high");
  EXPECT_EQ(r->project, "my-app_1.2");
  ASSERT_TRUE(r->challenge_vague_requirements.has_value());
  EXPECT_FALSE(*r->challenge_vague_requirements);

  // Round trip through ToJson.
  auto again = FeatureRequestFromJson(r->ToJson());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *r);
}

// What lists and terminals show: one line, bounded, valid UTF-8; the request
// keeps the whole text.
TEST(PrpJson, DisplayTitleIsOneBoundedLine) {
  FeatureRequest r;
  r.title = "  Add\tslugify()\n\x1b[2J to\r\n textkit  ";
  EXPECT_EQ(r.DisplayTitle(), "Add slugify() [2J to textkit");
  r.title = "";
  r.description = "Only a description\nover two lines";
  EXPECT_EQ(r.DisplayTitle(), "Only a description over two lines");
  // 100 two-byte letters and one more: cut before kMaxTitleBytes, never inside a letter.
  r.title = "";
  for (int i = 0; i < 101; ++i) r.title += "\xc3\xa9";
  const std::string shown = r.DisplayTitle();
  EXPECT_LE(shown.size(), kMaxTitleBytes);
  ASSERT_GE(shown.size(), 3u);
  EXPECT_EQ(shown.substr(shown.size() - 3), "...");
  EXPECT_EQ(shown.size() % 2, 1u) << shown;  // whole letters, then "..."
  r.title = std::string(kMaxTitleBytes, 'x');
  EXPECT_EQ(r.DisplayTitle(), r.title);  // at the limit: kept whole
  r.title += "y";
  EXPECT_EQ(r.DisplayTitle(), std::string(kMaxTitleBytes - 3, 'x') + "...");
}

TEST(PrpJson, DefaultsAndNulls) {
  auto r = FeatureRequestFromJson(json{{"title", "T"}, {"context", nullptr}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->priority, "medium");
  EXPECT_EQ(r->project, "default");
  EXPECT_FALSE(r->challenge_vague_requirements.has_value());
  EXPECT_FALSE(r->ToJson().contains("challenge_vague_requirements"));
  EXPECT_TRUE(FeatureRequestFromJson(json::object()).ok());
}

TEST(PrpJson, SuccessCriteriaAlias) {
  auto r = FeatureRequestFromJson(json{{"success_criteria", {"a", "b"}}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acceptance_criteria, V({"a", "b"}));
  EXPECT_EQ(r->ToJson()["acceptance_criteria"], json({"a", "b"}));

  auto both =
      FeatureRequestFromJson(json{{"success_criteria", {"a"}}, {"acceptance_criteria", {"b"}}});
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(both.status().message(), HasSubstr("success_criteria"));
}

TEST(PrpJson, WrongTypesNameFieldAndType) {
  struct Case {
    json body;
    std::string expected;
  };
  std::vector<Case> cases = {
      {{{"requirements", "one string"}}, "requirements must be an array of strings"},
      {{{"requirements", {"ok", 3}}},
       "requirements must be an array of strings (item 1 is a number)"},
      {{{"acceptance_criteria", {{"k", 1}}}}, "acceptance_criteria must be an array of strings"},
      {{{"success_criteria", 7}}, "success_criteria must be an array of strings"},
      {{{"validation_gates", true}}, "validation_gates must be an array of strings"},
      {{{"title", 5}}, "title must be a string"},
      {{{"description", json::array()}}, "description must be a string"},
      {{{"tech_stack", {{"a", 1}}}}, "tech_stack must be a string"},
      {{{"context", 1.5}}, "context must be a string"},
      {{{"priority", 1}}, "priority must be a string"},
      {{{"project", false}}, "project must be a string"},
      {{{"challenge_vague_requirements", "false"}},
       "challenge_vague_requirements must be a boolean"},
  };
  for (const auto& c : cases) {
    auto r = FeatureRequestFromJson(c.body);
    ASSERT_FALSE(r.ok()) << c.body.dump();
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.expected)) << c.body.dump();
  }
  auto not_object = FeatureRequestFromJson(json::array({1}));
  ASSERT_FALSE(not_object.ok());
  EXPECT_THAT(not_object.status().message(), HasSubstr("must be a JSON object"));
}

TEST(PrpJson, UnknownFieldsListedWithSuggestion) {
  auto r = FeatureRequestFromJson(json{{"titel", "x"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "unknown field 'titel' (did you mean 'title'?)");

  auto many = FeatureRequestFromJson(json{{"titel", "x"}, {"colour", 1}, {"tech-stack", "c"}});
  ASSERT_FALSE(many.ok());
  const std::string& m = many.status().message();
  EXPECT_THAT(m, HasSubstr("unknown field 'titel' (did you mean 'title'?)"));
  EXPECT_THAT(m, HasSubstr("unknown field 'tech-stack' (did you mean 'tech_stack'?)"));
  EXPECT_THAT(m, HasSubstr("unknown field 'colour'"));
  EXPECT_THAT(m, ::testing::Not(HasSubstr("'colour' (did you mean")));
}

TEST(PrpJson, BadPriorityAndProject) {
  auto p = FeatureRequestFromJson(json{{"priority", "urgent"}});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("priority must be one of low|medium|high|critical"));
  EXPECT_THAT(p.status().message(), HasSubstr("urgent"));

  for (const char* bad : {"", "../etc", "-x", ".hidden", "a b", "a/b", "ü"}) {
    auto r = FeatureRequestFromJson(json{{"project", bad}});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("project must match")) << bad;
  }
  EXPECT_FALSE(FeatureRequestFromJson(json{{"project", std::string(65, 'a')}}).ok());
  EXPECT_TRUE(FeatureRequestFromJson(json{{"project", std::string(64, 'a')}}).ok());
  for (const char* p2 : {"low", "medium", "high", "critical", "CRITICAL"}) {
    EXPECT_TRUE(FeatureRequestFromJson(json{{"priority", p2}}).ok()) << p2;
  }
}

// -------------------------------------------------------------- Markdown

FeatureRequest ParseOk(std::string_view md) {
  auto r = ParseMarkdownPrp(md, "test.md");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : FeatureRequest{};
}

TEST(PrpMarkdown, PythonExample) {
  auto r = LoadPrpFile(kExamples / "python-slugify.md");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->title, "textkit: slugify() for URL-safe slugs");
  EXPECT_EQ(r->project, "textkit");
  EXPECT_EQ(r->priority, "medium");
  EXPECT_EQ(r->tech_stack, "Python 3 standard library (re, unicodedata) + unittest");
  EXPECT_EQ(r->requirements.size(), 10u);
  EXPECT_EQ(r->acceptance_criteria.size(), 6u);
  EXPECT_EQ(r->acceptance_criteria[0], "`slugify(\"Hello, World!\")` returns `\"hello-world\"`.");
  EXPECT_EQ(r->validation_gates,
            V({"python3 -m unittest discover -s tests -v",
               "python3 -c \"from textkit import slugify; assert slugify('Hello, World!') == "
               "'hello-world'\""}));
  EXPECT_EQ(r->description.rfind("Create a small Python package", 0), 0u);  // Goal first
  EXPECT_THAT(r->description, HasSubstr("Why:\nBlog posts"));
  EXPECT_THAT(r->description, HasSubstr("A pure-Python module"));
  EXPECT_THAT(r->context, HasSubstr("unicodedata.normalize"));
  EXPECT_THAT(r->context, HasSubstr("textkit/slug.py"));
}

TEST(PrpMarkdown, CppExample) {
  auto r = LoadPrpFile(kExamples / "cpp-ring-buffer.md");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->title, "ringbuf: header-only C++17 ring buffer");
  EXPECT_EQ(r->project, "ringbuf");
  EXPECT_EQ(r->priority, "high");
  EXPECT_EQ(r->tech_stack, "C++17, CMake 3.16+, CTest (no external libraries)");
  EXPECT_EQ(r->requirements.size(), 10u);
  EXPECT_EQ(r->acceptance_criteria.size(), 5u);
  EXPECT_EQ(r->validation_gates,
            V({"cmake -S . -B build -DCMAKE_BUILD_TYPE=Release", "cmake --build build -j2",
               "ctest --test-dir build --output-on-failure"}));
}

TEST(PrpMarkdown, ShellExample) {
  auto r = LoadPrpFile(kExamples / "shell-wordfreq.md");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->title, "wordfreq: word frequency CLI in bash");
  EXPECT_EQ(r->project, "wordfreq");
  EXPECT_EQ(r->priority, "low");
  EXPECT_EQ(r->tech_stack, "bash 5 + coreutils (tr, sort, uniq, awk)");
  EXPECT_EQ(r->requirements.size(), 10u);
  EXPECT_EQ(r->acceptance_criteria.size(), 5u);
  EXPECT_EQ(r->validation_gates, V({"bash -n bin/wordfreq", "bash tests/run.sh"}));
}

// Saved by an editor that starts UTF-8 files with a byte order mark: the same
// request as without it.
TEST(PrpMarkdown, AByteOrderMarkIsSkipped) {
  auto plain = LoadPrpFile(kExamples / "shell-wordfreq.md");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  std::ifstream in(kExamples / "shell-wordfreq.md", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto marked = ParseMarkdownPrp("\xEF\xBB\xBF" + text, "bom.md");
  ASSERT_TRUE(marked.ok()) << marked.status().ToString();
  EXPECT_EQ(marked->title, "wordfreq: word frequency CLI in bash");
  EXPECT_EQ(*marked, *plain);
}

TEST(PrpMarkdown, EveryExampleValidatesClean) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kExamples)) {
    if (entry.path().extension() != ".md") continue;
    ++n;
    auto r = LoadPrpFile(entry.path());
    ASSERT_TRUE(r.ok()) << entry.path() << ": " << r.status().ToString();
    auto issues = ValidateWorkPlan(*r, true);
    EXPECT_TRUE(issues.empty()) << FormatValidationReport(*r, issues);
    EXPECT_FALSE(r->validation_gates.empty()) << entry.path();
    EXPECT_NE(r->project, "default") << entry.path();
  }
  EXPECT_GE(n, 3);
}

TEST(PrpMarkdown, OddCaseHeadingsNumberedAndCheckboxBullets) {
  auto r = ParseOk(
      "# My Feature\n"
      "## GOAL\nBuild it.\n"
      "##   success criteria:  \n"
      "1. first\n"
      "2) second\n"
      "- [ ] third\n"
      "* [x] fourth\n"
      "+ fifth\n"
      "  continued\n"
      "-not a bullet\n"
      "## what ##\n"
      "- req one\n"
      "  - nested req\n"
      "## Tech STACK\npython3\n");
  EXPECT_EQ(r.title, "My Feature");
  EXPECT_EQ(r.acceptance_criteria, V({"first", "second", "third", "fourth", "fifth continued"}));
  EXPECT_EQ(r.requirements, V({"req one", "nested req"}));
  EXPECT_EQ(r.tech_stack, "python3");
  EXPECT_THAT(r.description, HasSubstr("Build it."));
}

TEST(PrpMarkdown, MultipleBashBlocksAndIgnoredFences) {
  auto r = ParseOk(
      "# T\n"
      "## Validation Loop\n"
      "Run these:\n"
      "```bash\n"
      "# a comment\n"
      "\n"
      "make test\n"
      "$ ./check.sh --all\n"
      "```\n"
      "```python\n"
      "print('not a gate')\n"
      "```\n"
      "~~~sh\n"
      "cmake --build build \\\n"
      "  --target all\n"
      "~~~\n"
      "```\n"
      "untagged fence\n"
      "```\n"
      "```shell\n"
      "echo three\n"
      "```\n"
      "## Context\n"
      "```bash\n"
      "not-a-gate-outside-validation\n"
      "```\n");
  EXPECT_EQ(r.validation_gates,
            V({"make test", "./check.sh --all", "cmake --build build --target all", "echo three"}));
}

TEST(PrpMarkdown, HeadingsInsideFencesAreContent) {
  auto r = ParseOk(
      "## Goal\nShip it.\n"
      "## All Needed Context\n"
      "```markdown\n"
      "# Not the title\n"
      "## Not a section\n"
      "Priority: critical\n"
      "```\n");
  EXPECT_EQ(r.title, "Ship it.");  // no H1: first line of Goal
  EXPECT_EQ(r.priority, "medium");
  EXPECT_THAT(r.context, HasSubstr("## Not a section"));
  EXPECT_THAT(r.context, HasSubstr("# Not the title"));
}

TEST(PrpMarkdown, TitleSectionFallbackAndMetadata) {
  auto r = ParseOk(
      "**Priority:** critical\n"
      "## Title\n  From the section  \n"
      "## Goal\nGoal text\n"
      "## Project\nweb-app\n");
  EXPECT_EQ(r.title, "From the section");
  EXPECT_EQ(r.priority, "critical");
  EXPECT_EQ(r.project, "web-app");
  EXPECT_EQ(r.description, "Goal text");

  auto bad = ParseMarkdownPrp("# T\nPriority: urgent\n", "x.md");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("x.md: line 2: priority must be one of"));
  auto bad_project = ParseMarkdownPrp("# T\n## Project\n../up\n", "x.md");
  ASSERT_FALSE(bad_project.ok());
  EXPECT_THAT(bad_project.status().message(), HasSubstr("project must match"));
  // A sentence after "Project:" is prose, not metadata.
  auto prose = ParseOk("# T\nProject: this is a sentence\n");
  EXPECT_EQ(prose.project, "default");
  EXPECT_THAT(prose.description, HasSubstr("Project: this is a sentence"));
}

TEST(PrpMarkdown, UnknownSectionKeptInContext) {
  auto r = ParseOk(
      "# T\n"
      "## All Needed Context\nsee docs/api.md\n"
      "## Risks And Gotchas\nThe API rate-limits at 10 rps.\n"
      "## Implementation Blueprint\n- step one\nPseudo code here.\n");
  EXPECT_THAT(r.context, HasSubstr("see docs/api.md"));
  EXPECT_THAT(r.context, HasSubstr("## Risks And Gotchas\nThe API rate-limits at 10 rps."));
  EXPECT_THAT(r.context, HasSubstr("## Implementation Blueprint\nPseudo code here."));
  EXPECT_EQ(r.requirements, V({"step one"}));
}

TEST(PrpMarkdown, WhyWhatAndPreambleOrderInDescription) {
  auto r = ParseOk(
      "# T\r\nIntro text.\r\n"
      "## What\r\nWhat prose.\r\n- item\r\n"
      "## Why\r\nBecause.\r\n"
      "## Goal\r\nThe goal.\r\n");
  EXPECT_EQ(r.description, "The goal.\n\nWhy:\nBecause.\n\nWhat prose.\n\nIntro text.");
  EXPECT_EQ(r.requirements, V({"item"}));
}

TEST(PrpMarkdown, CriteriaParagraphsWithoutBullets) {
  auto r =
      ParseOk("# T\n## Success Criteria\nAll tests pass\nwith no warnings.\n\nDocs updated.\n");
  EXPECT_EQ(r.acceptance_criteria, V({"All tests pass with no warnings.", "Docs updated."}));
}

TEST(PrpMarkdown, LongTechStackKeepsFirstLine) {
  std::string md = "# T\n## Tech Stack\n- python3\n- " + std::string(300, 'x') + "\n";
  EXPECT_EQ(ParseOk(md).tech_stack, "python3");
  EXPECT_EQ(ParseOk("# T\n## Tech Stack\n- python3\n- unittest\n").tech_stack, "python3; unittest");
}

TEST(PrpMarkdown, EmptyAndDegenerateInputParse) {
  for (std::string_view md : {std::string_view(""), std::string_view("\n\n"),
                              std::string_view("```\nunclosed fence\n## Goal\n"),
                              std::string_view("##\n#\n- \n1.\n```bash\n\\\n")}) {
    auto r = ParseMarkdownPrp(md, "x.md");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  auto empty = ParseOk("");
  EXPECT_TRUE(empty.title.empty());
  EXPECT_TRUE(empty.description.empty());
  EXPECT_TRUE(Has(ValidateWorkPlan(empty, true), "Missing prompt/requirements"));
}

TEST(PrpMarkdown, RejectsInvalidUtf8AndOversize) {
  auto bad = ParseMarkdownPrp("# T\n\xff\xfe\n", "x.md");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("not valid UTF-8"));
  EXPECT_FALSE(ParseMarkdownPrp("\xed\xa0\x80", "x.md").ok());  // surrogate
  EXPECT_TRUE(ParseMarkdownPrp("# Crème brûlée ✓\n", "x.md").ok());
  std::string big(kMaxPrpBytes + 1, 'a');
  auto over = ParseMarkdownPrp(big, "x.md");
  ASSERT_FALSE(over.ok());
  EXPECT_THAT(over.status().message(), HasSubstr("1 MiB"));
}

// ------------------------------------------------------------ validation

TEST(PrpValidation, GoodRequestPasses) {
  EXPECT_TRUE(ValidateWorkPlan(GoodRequest(), true).empty());
}

TEST(PrpValidation, EachIssueExactlyWorded) {
  FeatureRequest empty;
  auto issues = ValidateWorkPlan(empty, true);
  EXPECT_EQ(issues, V({"Missing prompt/requirements", "Tech stack not specified",
                       "Success criteria not provided", "Prompt lacks detail"}));

  auto r = GoodRequest();
  r.tech_stack = "  ";
  EXPECT_EQ(ValidateWorkPlan(r, true), V({"Tech stack not specified"}));

  r = GoodRequest();
  r.acceptance_criteria.clear();
  EXPECT_EQ(ValidateWorkPlan(r, true), V({"Success criteria not provided"}));

  r = GoodRequest();
  r.title.clear();
  EXPECT_TRUE(ValidateWorkPlan(r, true).empty());  // description alone is a prompt
  r.description.clear();
  EXPECT_TRUE(Has(ValidateWorkPlan(r, true), "Missing prompt/requirements"));
}

TEST(PrpValidation, LacksDetailByWordCount) {
  FeatureRequest r = GoodRequest();
  r.title = "Slugs";
  r.description = "Add slugify.";
  r.requirements = V({"ascii"});
  r.acceptance_criteria = V({"tests pass"});
  // 5 words although every aspect is covered.
  EXPECT_EQ(ValidateWorkPlan(r, true), V({"Prompt lacks detail"}));
}

TEST(PrpValidation, LacksDetailByAspects) {
  // Long enough, but only "what" is covered: no why, how, constraints, scope.
  FeatureRequest r;
  r.title = "Page title helper";
  r.description =
      "Create a function that converts page titles into lower case url slugs with dashes";
  auto issues = ValidateWorkPlan(r, true);
  EXPECT_TRUE(Has(issues, "Prompt lacks detail"));

  // what + why ("so that") + constraints ("must"): three aspects, enough.
  r.description += " so that links stay stable; it must fold accents";
  issues = ValidateWorkPlan(r, true);
  EXPECT_FALSE(Has(issues, "Prompt lacks detail"));
  EXPECT_EQ(issues, V({"Tech stack not specified", "Success criteria not provided"}));
}

TEST(PrpValidation, VagueWordsWholeWordOnceInOrder) {
  auto r = GoodRequest();
  r.description += " Just do it. Simple! Make it simple and EASY, quickly, whatever, somehow";
  r.requirements.push_back("a quick fix, just like that");
  EXPECT_EQ(
      ValidateWorkPlan(r, true),
      V({"Vague requirement: 'simple'", "Vague requirement: 'quick'",
         "Vague requirement: 'quickly'", "Vague requirement: 'just'", "Vague requirement: 'easy'",
         "Vague requirement: 'whatever'", "Vague requirement: 'somehow'"}));

  r = GoodRequest();
  r.description += " justify the simplest easyjson quicksort unjust somehowever";
  EXPECT_TRUE(ValidateWorkPlan(r, true).empty());

  r = GoodRequest();
  r.acceptance_criteria.push_back("Simple to read");
  EXPECT_EQ(ValidateWorkPlan(r, true), V({"Vague requirement: 'simple'"}));

  r = GoodRequest();
  r.title = "just-in-time cache";
  EXPECT_EQ(ValidateWorkPlan(r, true), V({"Vague requirement: 'just'"}));
}

TEST(PrpValidation, BypassFromFlagAndRequest) {
  FeatureRequest r;  // fails every check
  r.description = "make it simple";
  EXPECT_FALSE(ValidateWorkPlan(r, true).empty());
  EXPECT_TRUE(ValidateWorkPlan(r, false).empty());
  r.challenge_vague_requirements = false;  // request overrides the flag
  EXPECT_TRUE(ValidateWorkPlan(r, true).empty());
  r.challenge_vague_requirements = true;
  EXPECT_TRUE(Has(ValidateWorkPlan(r, false), "Vague requirement: 'simple'"));

  // Never an empty request: nothing to build.
  FeatureRequest empty;
  empty.challenge_vague_requirements = false;
  EXPECT_EQ(ValidateWorkPlan(empty, false), V({"Missing prompt/requirements"}));
  Status refused = WorkPlanChallenged(ValidateWorkPlan(empty, false));
  EXPECT_THAT(refused.hint(), HasSubstr("say what to build"));
  EXPECT_THAT(refused.hint(), ::testing::Not(HasSubstr("bypass")));
  empty.requirements = V({"a slugify() helper"});  // terse, not empty
  EXPECT_TRUE(ValidateWorkPlan(empty, false).empty());
}

TEST(PrpValidation, Report) {
  auto ok = FormatValidationReport(GoodRequest(), {});
  EXPECT_THAT(ok, HasSubstr("PRP: Add a slug helper"));
  EXPECT_THAT(ok, HasSubstr("requirements: 2"));
  EXPECT_THAT(ok, HasSubstr("gates:        1"));
  EXPECT_THAT(ok, HasSubstr("Work plan OK\n"));
  EXPECT_THAT(ok, ::testing::Not(HasSubstr("challenged")));

  FeatureRequest empty;
  auto bad = FormatValidationReport(empty, ValidateWorkPlan(empty, true));
  EXPECT_THAT(bad, HasSubstr("PRP: (untitled)"));
  EXPECT_THAT(bad, HasSubstr("tech stack:   (not specified)"));
  EXPECT_THAT(bad, HasSubstr("Work plan challenged:\n  - Missing prompt/requirements\n"));
  // Nothing to build: the bypass would not help, so it is not offered.
  EXPECT_THAT(bad, ::testing::Not(HasSubstr("Bypass:")));

  FeatureRequest terse;
  terse.title = "Slugs";
  auto vague = FormatValidationReport(terse, ValidateWorkPlan(terse, true));
  EXPECT_THAT(vague, HasSubstr("\"challenge_vague_requirements\": false"));
  EXPECT_THAT(vague, HasSubstr("validation.challenge_vague_requirements = false"));
  EXPECT_THAT(vague, HasSubstr("AF_VALIDATION_CHALLENGE_VAGUE_REQUIREMENTS=false"));

  // A vague word is shown where it is, so it can be found in a long request.
  FeatureRequest words = GoodRequest();
  words.title = "A simple slug helper";
  words.acceptance_criteria.push_back("it is just fast");
  auto placed = FormatValidationReport(words, ValidateWorkPlan(words, true));
  EXPECT_THAT(placed, HasSubstr("  - Vague requirement: 'simple' in the title\n"));
  EXPECT_THAT(placed, HasSubstr("  - Vague requirement: 'just' in success criterion " +
                                std::to_string(words.acceptance_criteria.size()) + "\n"));
}

// ------------------------------------------------------------ LoadPrpFile

TEST(PrpLoad, Errors) {
  testing::TempDir dir;
  auto missing = LoadPrpFile(dir.path() / "nope.md");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.md"));

  auto is_dir = LoadPrpFile(dir.path());
  ASSERT_FALSE(is_dir.ok());
  EXPECT_EQ(is_dir.status().code(), Code::kInvalidArgument);

  auto bad_json = LoadPrpFile(dir.Write("bad.JSON", "{\n  \"title\": \"x\",\n  oops\n}\n"));
  ASSERT_FALSE(bad_json.ok());
  EXPECT_EQ(bad_json.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad_json.status().message(), HasSubstr("malformed JSON at line 3, column 3"));

  // A number beyond a double is malformed input, not a crash (found by fuzz.http).
  auto huge = LoadPrpFile(dir.Write("huge.json", R"({"title": 1e400})"));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(huge.status().message(), HasSubstr("huge.json: malformed JSON"));

  auto bad_field = LoadPrpFile(dir.Write("f.json", R"({"titel": "x"})"));
  ASSERT_FALSE(bad_field.ok());
  EXPECT_THAT(bad_field.status().message(), HasSubstr("f.json: unknown field 'titel'"));

  auto big = LoadPrpFile(dir.Write("big.md", std::string(kMaxPrpBytes + 1, 'a')));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(big.status().message(), HasSubstr("1 MiB"));
}

TEST(PrpLoad, JsonAndMarkdownByExtension) {
  testing::TempDir dir;
  auto j = LoadPrpFile(dir.Write("req.json", R"({"title": "From JSON", "priority": "low"})"));
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ(j->title, "From JSON");
  EXPECT_EQ(j->priority, "low");
  auto md = LoadPrpFile(dir.Write("req.txt", "# From Markdown\n"));
  ASSERT_TRUE(md.ok());
  EXPECT_EQ(md->title, "From Markdown");
}

}  // namespace
}  // namespace af

namespace af {
namespace {

// The refusal is written in one place and read back in one place: what the
// API reports as issues is exactly what the check found.
TEST(WorkPlanChallengedTest, IssuesRoundTripThroughTheStatus) {
  std::vector<std::string> issues = {"Tech stack not specified", "Vague requirement: 'just'"};
  Status s = WorkPlanChallenged(issues);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("Work plan challenged:", 0), 0u);
  ASSERT_TRUE(ChallengedIssues(s).has_value());
  EXPECT_EQ(*ChallengedIssues(s), issues);
  EXPECT_FALSE(ChallengedIssues(InvalidArgument("bad json")).has_value());
  EXPECT_FALSE(ChallengedIssues(Internal("Work plan challenged:\n  - x")).has_value());
}

}  // namespace
}  // namespace af
