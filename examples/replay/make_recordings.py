#!/usr/bin/env python3
"""Writes examples/replay/examples.jsonl: the recorded model answers for the example PRPs.

Each example is answered as a capable model would: the planner splits it into tasks, each coder
writes exactly the files of examples/solutions/<name>/ that its task owns, runs a check and calls
finish, and the reviewer approves citing the gate results. Entries match on the agent role, a
text unique to the conversation (the feature title, or the task title) and the turn number.

Re-run after changing a solution or a plan:  python3 examples/replay/make_recordings.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

EXAMPLES = {
    "python-slugify": {
        "title": "textkit: slugify() for URL-safe slugs",
        "tasks": [
            {"id": "t1", "title": "Implement textkit.slugify",
             "description": "Write textkit/slug.py with slugify(text, separator='-', max_length=None) "
                            "following every rule of the request, and textkit/__init__.py re-exporting it.",
             "files": ["textkit/slug.py", "textkit/__init__.py"], "dependencies": [],
             "check": "python3 -c \"from textkit import slugify; print(slugify('Hello, World!'))\""},
            {"id": "t2", "title": "Unit tests for slugify",
             "description": "Write tests/test_slug.py with one unittest test per rule, error cases included.",
             "files": ["tests/test_slug.py"], "dependencies": [],
             "check": "python3 -m py_compile tests/test_slug.py"},
        ],
        "review": ["All validation gates passed: `python3 -m unittest discover -s tests -v` (exit 0) and the "
                   "import check (exit 0).",
                   "textkit/slug.py covers NFKD folding, separator runs, trimming, max_length word "
                   "boundaries and the TypeError/ValueError cases; tests/test_slug.py asserts each "
                   "success criterion."],
    },
    "cpp-ring-buffer": {
        "title": "ringbuf: header-only C++17 ring buffer",
        "tasks": [
            {"id": "t1", "title": "Ring buffer header",
             "description": "Write include/ringbuf/ring_buffer.h: the header-only RingBuffer<T> of the request.",
             "files": ["include/ringbuf/ring_buffer.h"], "dependencies": [],
             "check": "g++ -std=c++17 -fsyntax-only -x c++ include/ringbuf/ring_buffer.h"},
            {"id": "t2", "title": "CMake project and CTest test",
             "description": "Write CMakeLists.txt (C++17, enable_testing) and tests/ring_buffer_test.cpp "
                            "covering every success criterion; register it with add_test.",
             "files": ["CMakeLists.txt", "tests/ring_buffer_test.cpp"], "dependencies": ["t1"],
             "check": "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2 && "
                      "ctest --test-dir build --output-on-failure"},
        ],
        "review": ["All validation gates passed: cmake configure, `cmake --build build -j2` and "
                   "`ctest --test-dir build --output-on-failure` (1/1 tests passed).",
                   "The header implements push/pop/overwrite-on-full and capacity checks as specified; "
                   "the CTest test checks each criterion with a CHECK macro that also works with NDEBUG."],
    },
    "shell-wordfreq": {
        "title": "wordfreq: word frequency CLI in bash",
        "tasks": [
            {"id": "t1", "title": "wordfreq script with tests",
             "description": "Write bin/wordfreq and tests/run.sh with tests/sample.txt as described.",
             "files": ["bin/wordfreq", "tests/run.sh", "tests/sample.txt"], "dependencies": [],
             "check": "bash tests/run.sh"},
        ],
        "review": ["All validation gates passed: `bash -n bin/wordfreq` (exit 0) and `bash tests/run.sh` "
                   "(all checks passed).",
                   "bin/wordfreq counts runs of letters and digits case-insensitively, sorts by count then byte order and honours "
                   "-n N with exit 2 on a bad N and exit 1 on an unreadable file; tests/run.sh checks each rule."],
    },
}


def read(name, path):
    with open(os.path.join(ROOT, "solutions", name, path), encoding="utf-8") as f:
        return f.read()


def usage(i, o):
    return {"input_tokens": i, "output_tokens": o}


def main():
    lines = []
    for name, ex in EXAMPLES.items():
        title = ex["title"]
        plan = [{k: t[k] for k in ("id", "title", "description", "dependencies", "files")} | {"role": "coder"}
                for t in ex["tasks"]]
        lines.append({"match": {"role": "planner", "contains": "# Feature: " + title, "turn": 0},
                      "response": {"text": "The request splits into %d task(s)." % len(plan),
                                   "tool_calls": [{"id": "plan-1", "name": "submit_plan",
                                                   "arguments": {"tasks": plan}}],
                                   "usage": usage(2400, 420)}})
        for t in ex["tasks"]:
            key = "# Your task: " + t["title"]
            writes = [{"id": "w%d" % i, "name": "write_file",
                       "arguments": {"path": p, "content": read(name, p)}}
                      for i, p in enumerate(t["files"], 1)]
            lines.append({"match": {"role": "coder", "contains": key, "turn": 0},
                          "response": {"text": "Writing " + ", ".join(t["files"]) + ".",
                                       "tool_calls": writes, "usage": usage(3100, 900)}})
            lines.append({"match": {"role": "coder", "contains": key, "turn": 1},
                          "response": {"text": "Checking the result.",
                                       "tool_calls": [{"id": "c1", "name": "run_command",
                                                       "arguments": {"command": t["check"]}}],
                                       "usage": usage(4200, 60)}})
            lines.append({"match": {"role": "coder", "contains": key, "turn": 2},
                          "response": {"text": "Done.",
                                       "tool_calls": [{"id": "f1", "name": "finish", "arguments": {
                                           "summary": "Wrote " + ", ".join(t["files"]) + "; `" + t["check"] +
                                                      "` ran in the sandbox."}}],
                                       "usage": usage(4400, 80)}})
        lines.append({"match": {"role": "reviewer", "contains": "# Feature: " + title, "turn": 0},
                      "response": {"text": "Reviewed the diff against the acceptance criteria.",
                                   "tool_calls": [{"id": "r1", "name": "submit_review",
                                                   "arguments": {"verdict": "approve", "comments": ex["review"]}}],
                                   "usage": usage(5200, 160)}})
    with open(os.path.join(HERE, "examples.jsonl"), "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    print("wrote %d recorded answers for %d examples" % (len(lines), len(EXAMPLES)))


if __name__ == "__main__":
    main()
