-- wrk script: POST /api/v1/features with a valid JSON feature (a PRP's fields).
-- Usage: AF_BENCH_KEY=<api key> wrk -s bench/post_features.lua http://127.0.0.1:PORT
-- The key needs features:create (the admin key of <data_dir>/admin.key works).
--
-- wrk's own "Non-2xx or 3xx responses" would count a 200 as a success; a
-- submission succeeds only with 201, so every status is counted here and the
-- 201s and the rest are printed separately at the end. Requests/sec and the
-- latency percentiles of wrk cover every response, so they are only the
-- submission figures when "non-201" is 0.
--
-- The body passes the work-plan validation (tech stack, criteria, enough
-- detail) but matches no recording of examples/replay/examples.jsonl, so with
-- the default replay provider each accepted feature fails in planning without
-- any network: the server persists and starts every feature, while the
-- pipeline work per feature stays small.

local key = os.getenv("AF_BENCH_KEY")
if key == nil or key == "" then
  io.stderr:write("post_features.lua: set AF_BENCH_KEY to an API key with features:create\n")
  os.exit(2)
end

wrk.method = "POST"
wrk.path = "/api/v1/features"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{
  "title": "bench: csvsum sums one column of a CSV file",
  "description": "Write a command-line tool csvsum that prints the sum of one numeric column of a CSV file, so that support staff can check exported reports without opening a spreadsheet.",
  "requirements": ["csvsum FILE --column NAME prints the sum of the column NAME",
                   "a missing column prints an error to stderr and exits 2"],
  "acceptance_criteria": ["for tests/sample.csv with a column b holding 1, 2 and 3, csvsum prints 6"],
  "tech_stack": "python3 + pytest",
  "validation_gates": ["python3 -m pytest -q"],
  "priority": "low",
  "project": "bench"
}]]

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local created = counts[201] or 0
  local other, detail = 0, {}
  for status, n in pairs(counts) do
    if status ~= 201 then
      other = other + n
      table.insert(detail, status .. ": " .. n)
    end
  end
  table.sort(detail)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format("201 Created: %d (%.1f/s)\n", created, created / seconds))
  io.write(string.format("non-201: %d%s\n", other,
                         #detail > 0 and " (" .. table.concat(detail, ", ") .. ")" or ""))
  io.write(string.format("socket errors: connect %d, read %d, write %d, timeout %d\n",
                         e.connect, e.read, e.write, e.timeout))
  io.write(string.format("latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                         latency:percentile(50) / 1000, latency:percentile(90) / 1000,
                         latency:percentile(99) / 1000, latency.max / 1000))
end
