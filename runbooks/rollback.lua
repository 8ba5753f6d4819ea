-- belt run rollback.lua <dc> [db] [-- key=value ...]
--
-- The playbook's rollback after a cutover, when the application must go back to src
-- (pgbelt leaves this to the operator):
--   revoke logins on dst (stop writes there) -> wait for dst sessions to drain (then terminate
--   them) -> wait until back replication has brought every write on dst to src ->
--   copy sequences, large objects (what differs) and PK-less tables from dst back to src
--   (sequences never move backwards; PK-less tables on src are replaced by dst's rows in one
--   transaction each) ->
--   teardown-back-replication -> restore logins on src.
-- Needs back replication (setup-back-replication) to have been running since the cutover.
--
-- After a cutover that did not finish (belt was killed or interrupted in it), dst was never
-- opened to writes: the rollback then only gives the logins back on src (its data is all
-- there) and copies nothing back (dst's PK-less tables may be half loaded).
-- Each step is journaled (configs/<dc>/<db>/rollback.journal.json): if belt dies, run the same
-- command again; each database continues from its own step.
--
-- Options (after --, as key=value): declared once in runbooks/_options.lua, with their defaults
-- and help; `belt run rollback.lua --help` lists them.
local dc, db, opts = ...
local lib = belt.require_lib()
local o = lib.options("rollback.lua", opts)
local t0 = belt.now()
local dbs = db and { db } or belt.dbs(dc)
local command = belt.flags.command or ("belt run rollback.lua " .. dc .. (db and (" " .. db) or ""))
-- Both locks: no cutover and no other rollback may run on these databases meanwhile.
local cut = lib.flow(dc, dbs, "cutover", nil, true)
local seen = lib.flow(dc, dbs, "rollback", nil, true)

-- full: the cutover finished (or was done without a journal), so dst may have taken writes.
-- partial: the cutover stopped part-way; src has everything.
local full, partial = {}, {}
for _, name in ipairs(dbs) do
  local rj, cj = seen.j[name], cut.j[name]
  if rj.state == "done" then
    print(("%s/%s: already rolled back at %s; nothing to do"):format(dc, name, tostring(rj.finished_at)))
  elseif rj.state == "in_progress" then
    if (rj.data or {}).mode == "partial" then partial[#partial + 1] = name else full[#full + 1] = name end
  elseif cj.state == "in_progress" or cj.state == "compensated" then
    partial[#partial + 1] = name
  else
    full[#full + 1] = name
  end
end

if #partial > 0 then
  local pf = lib.flow(dc, partial, "rollback", { command = command, mode = "partial" })
  for _, name in ipairs(partial) do
    belt.log(("%s: the cutover stopped in %s before dst was opened; restoring logins on src"):format(
      name, tostring(cut.j[name].current_step)))
  end
  pf.step("restore-logins", function(todo) return belt.restore_logins(dc, todo) end)
  cut.close(partial, "rolled_back", "rollback.lua restored the logins on src")
  pf.close(partial, "done")
  for _, r in ipairs(lib.records(belt.status(dc, partial))) do
    local hint = r.forward == "unconfigured" and
      "; forward replication was dropped: run belt reset and migrate.lua before cutting over again" or
      "; forward replication is " .. tostring(r.forward) .. ": the cutover can be run again"
    print(("%s/%s: rolled back to src in %s (the cutover had not finished; nothing was copied back)%s"):format(
      dc, tostring(r.db), lib.secs(belt.now() - t0), hint))
  end
end

if #full > 0 then
  local f = lib.flow(dc, full, "rollback", { command = command, mode = "full" })
  -- Every database must have back replication running, or writes on dst would be lost.
  local check = f.pending("teardown-back", full)
  if #check > 0 then
    for _, r in ipairs(lib.records(belt.status(dc, check))) do
      if r.back ~= "replicating" then
        error(belt.error("precondition_failed", ("%s: back replication is %s; rolling back now would lose the writes made on dst"):format(r.db, tostring(r.back))))
      end
    end
  end

  f.step("revoke-logins-dst", function(todo)
    return belt.revoke_logins(dc, todo, { reverse = true, fence = o.fence, lock_out_shared = o.lock_out_shared })
  end)
  f.step("drain-dst", function(todo)
    lib.drain(dc, todo, "dst", { timeout = o.drain_timeout, settle = o.settle })
  end)
  f.step("catch-up", function(todo)
    for _, name in ipairs(todo) do
      -- The insert position, not pg_current_wal_lsn(): with synchronous_commit = off, commits
      -- already acknowledged can lie beyond what has been written out.
      local target = belt.query(dc, name, "dst", "SELECT pg_current_wal_insert_lsn()::text AS lsn")[1].lsn
      -- The back subscription's slot on dst, whichever engine made it.
      local slot = lib.records(belt.status(dc, name))[1].back_slot
      if not slot then
        error(belt.error("precondition_failed", name .. ": back replication has no slot on dst; rolling back now would lose the writes made on dst"))
      end
      belt.wait_for(function()
        local rows = belt.query(dc, name, "dst",
          "SELECT coalesce(bool_and(confirmed_flush_lsn >= $1::pg_lsn), false)::text AS done FROM pg_replication_slots WHERE slot_name = $2",
          { target, slot })
        return rows[1] and rows[1].done == "true"
      end, { timeout = o.catchup_timeout, interval = "500ms", desc = name .. ": src to apply dst's writes up to " .. target })
    end
  end)
  f.step("copy-back", function(todo)
    lib.must(belt.sync_sequences(dc, todo, { reverse = true }), "sync-sequences dst -> src")
    lib.must(belt.sync_large_objects(dc, todo, { reverse = true }), "sync-large-objects dst -> src")
    return belt.sync_tables(dc, todo, { reverse = true, replace = true })
  end)
  if o.teardown_back then
    f.step("teardown-back", function(todo) return belt.teardown_back_replication(dc, todo) end)
  end
  f.step("restore-logins", function(todo) return belt.restore_logins(dc, todo) end)
  cut.close(full, "rolled_back", "rollback.lua brought dst's writes back to src")
  f.close(full, "done")
  for _, name in ipairs(full) do
    print(("%s/%s: rolled back to src in %s; dst logins stay revoked (saved as revoked_logins_dst)"):format(dc, name, lib.secs(belt.now() - t0)))
  end
end
return { ok = true, command = "rollback", dc = dc, db = db, duration_s = belt.now() - t0, partial = partial, full = full }
