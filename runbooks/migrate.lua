-- belt run migrate.lua <dc> [db] [-- key=value ...]
--
-- The standard migration up to the cutover point:
--   precheck -> setup -> wait until replicating (progress shown) -> sync-large-objects
--   -> create-indexes (and its ANALYZE) -> setup-back-replication -> report "ready for cutover".
-- With no db, every database of the dc is migrated at once.
--
-- Options (after --, as key=value): declared once in runbooks/_options.lua, with their defaults
-- and help; `belt run migrate.lua --help` lists them.
local dc, db, opts = ...
local lib = belt.require_lib()
local o = lib.options("migrate.lua", opts)
local secrets = { accept_logged_secrets = o.accept_logged_secrets }
local started = belt.now()

belt.log("precheck", dc, db or "(all dbs)")
local pre = belt.precheck(dc, db, secrets)
if pre.ok == false and not o.skip_precheck then
  lib.must(pre, "precheck")
end

belt.log("setup")
-- On the native engine belt copies the data itself inside setup (from an exported snapshot, in
-- parallel, table by table resumable: run the same command again after an interruption); its
-- progress is logged and shown by status.
local function positive(v) v = tonumber(v); return (v and v > 0) and v or nil end
local setup = lib.must(belt.setup(dc, db, {
  schema = o.schema, accept_logged_secrets = o.accept_logged_secrets,
  copy = (o.copy ~= "" and o.copy) or nil, copy_jobs = positive(o.copy_jobs) and math.tointeger(positive(o.copy_jobs)),
  copy_split_mb = positive(o.copy_split_mb),
  index_jobs = positive(o.index_jobs) and math.tointeger(positive(o.index_jobs)),
}), "setup")
for _, r in ipairs(lib.records(setup)) do
  local c = r.initial_copy
  if type(c) == "table" and c.state then
    belt.log(("  %s: initial copy %s: %s tables, %s rows, %.1f MB in %.1f s%s"):format(r.db, c.state, tostring(c.tables_total),
      tostring(c.rows), (c.bytes or 0) / 1048576, c.elapsed_s or 0,
      (c.handed_over and #c.handed_over > 0) and ("; " .. #c.handed_over .. " unfinished table(s) copied by the subscription") or ""))
  end
end

belt.log("waiting for the initial copy")
belt.wait_for(function()
  local s = belt.status(dc, db)
  local all = true
  for _, r in ipairs(lib.records(s)) do
    if r.forward == "down" then
      error(belt.error("replication_down", ("%s: forward replication is down: %s"):format(r.db, r.forward_error or "see the server logs")))
    end
    if r.forward ~= "replicating" then
      all = false
      belt.log(("  %s: %s, tables %s/%s, %s%s"):format(r.db, r.forward, tostring(r.tables_done), tostring(r.tables_total),
        tostring(r.progress) .. (r.copy_eta_s and r.copy_state == "copying" and (", copy ETA %.0f s"):format(r.copy_eta_s) or ""),
        r.forward_waiting and ("; " .. r.forward_waiting) or ""))
    end
  end
  return all
end, { timeout = o.replicate_timeout, interval = o.interval, desc = "forward replication to reach replicating" })

-- Tables with a generated column are copied by belt under a short write lock once pglogical's
-- initial copy is done (pglogical cannot copy them): setup, run again, does that.
local pending = {}
for _, r in ipairs(lib.records(setup)) do
  if r.generated_pending and #r.generated_pending > 0 then pending[#pending + 1] = r.db end
end
for _, name in ipairs(pending) do
  belt.log(("setup (again, for %s's tables with a generated column)"):format(name))
  lib.must(belt.setup(dc, name, { schema = false, accept_logged_secrets = o.accept_logged_secrets }), "setup")
end

-- Large objects: replication carries none; belt copies them all now, and the cutover's sync
-- copies only what changed since, inside the window.
belt.log("sync-large-objects")
lib.must(belt.sync_large_objects(dc, db), "sync-large-objects")

belt.log("create-indexes")
local indexed = lib.must(belt.create_indexes(dc, db, {
  index_jobs = positive(o.index_jobs) and math.tointeger(positive(o.index_jobs)),
}), "create-indexes")
-- create-indexes ends with ANALYZE when it can: do not pay for it twice.
local analyzed = true
for _, r in ipairs(lib.records(indexed)) do
  if not r.analyze_ran then analyzed = false end
end
if analyzed then
  belt.log("analyze: done by create-indexes")
else
  belt.log("analyze")
  lib.must(belt.analyze(dc, db), "analyze")
end
belt.log("setup-back-replication")
lib.must(belt.setup_back_replication(dc, db, secrets), "setup-back-replication")
belt.wait_for(function()
  for _, r in ipairs(lib.records(belt.status(dc, db))) do
    if r.back == "down" then
      error(belt.error("replication_down", ("%s: back replication is down: %s"):format(r.db, r.back_error or "see the server logs")))
    end
    -- "armed": an engine whose two directions cannot run together attaches back replication
    -- when the cutover drops forward.
    if r.back ~= "replicating" and r.back ~= "armed" then return false end
  end
  return true
end, { timeout = "5m", interval = "500ms", desc = "back replication to reach replicating" })

local s = belt.status(dc, db)
for _, r in ipairs(lib.records(s)) do
  print(("%s/%s: forward %s, back %s, lag %s bytes: ready for cutover"):format(
    dc, r.db, r.forward, r.back, tostring(r.lag_bytes)))
end
return { ok = true, command = "migrate", dc = dc, db = db, duration_s = belt.now() - started, status = s }
