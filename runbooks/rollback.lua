-- belt run rollback.lua <dc> [db] [-- key=value ...]
--
-- The playbook's rollback after a cutover, when the application must go back to src
-- (pgbelt leaves this to the operator):
--   revoke logins on dst (stop writes there) -> wait for dst sessions to drain (then terminate
--   them) -> wait until back replication (pg2_pg1) has brought every write on dst to src ->
--   copy sequences and PK-less tables from dst back to src (sequences never move backwards;
--   PK-less tables on src are replaced by dst's rows in one transaction each) ->
--   teardown-back-replication -> restore logins on src.
-- Needs back replication (setup-back-replication) to have been running since the cutover.
--
-- Options (after --):
--   drain_timeout=1m      how long to wait for dst sessions to end before terminating them
--   settle=250ms          how long "no sessions" must hold before the drain counts as done
--   catchup_timeout=5m    how long to wait for back replication to catch up
--   teardown_back=true    drop the back subscription at the end
--   fence=nologin         how logins on dst are revoked (nologin, connect or auto; see cutover.lua)
--   lock_out_shared=false revoke LOGIN on dst even from roles that other databases there use
local dc, db, opts = ...
local lib = belt.require_lib()
local o = lib.options("rollback.lua", opts, {
  drain_timeout = "1m", settle = "250ms", catchup_timeout = "5m", teardown_back = true, fence = "nologin",
  lock_out_shared = false,
})
local t0 = belt.now()
local dbs = db and { db } or belt.dbs(dc)

-- Every database must have back replication running, or writes on dst would be lost.
for _, r in ipairs(lib.records(belt.status(dc, db))) do
  if r.back ~= "replicating" then
    error(belt.error("precondition_failed", ("%s: back replication is %s; rolling back now would lose the writes made on dst"):format(r.db, tostring(r.back))))
  end
end

belt.log("revoking logins on dst")
lib.must(belt.revoke_logins(dc, db, { reverse = true, fence = o.fence, lock_out_shared = o.lock_out_shared }), "revoke-logins on dst")

belt.log("waiting for dst sessions to end")
lib.drain(dc, db, "dst", { timeout = o.drain_timeout, settle = o.settle })

belt.log("waiting for back replication to catch up")
for _, name in ipairs(dbs) do
  -- The insert position, not pg_current_wal_lsn(): with synchronous_commit = off, commits
  -- already acknowledged can lie beyond what has been written out.
  local target = belt.query(dc, name, "dst", "SELECT pg_current_wal_insert_lsn()::text AS lsn")[1].lsn
  belt.wait_for(function()
    local rows = belt.query(dc, name, "dst",
      "SELECT coalesce(bool_and(confirmed_flush_lsn >= $1::pg_lsn), false)::text AS done FROM pg_replication_slots WHERE slot_name LIKE '%pg2_pg1%'",
      { target })
    return rows[1] and rows[1].done == "true"
  end, { timeout = o.catchup_timeout, interval = "500ms", desc = name .. ": src to apply dst's writes up to " .. target })
end

belt.log("copying sequences and PK-less tables from dst back to src")
lib.must(belt.sync_sequences(dc, db, { reverse = true }), "sync-sequences dst -> src")
lib.must(belt.sync_tables(dc, db, { reverse = true, replace = true }), "sync-tables dst -> src")
if o.teardown_back then
  lib.must(belt.teardown_back_replication(dc, db), "teardown-back-replication")
end
lib.must(belt.restore_logins(dc, db), "restore-logins on src")
for _, name in ipairs(dbs) do
  print(("%s/%s: rolled back to src in %s; dst logins stay revoked (saved as revoked_logins_dst)"):format(dc, name, lib.secs(belt.now() - t0)))
end
return { ok = true, command = "rollback", dc = dc, db = db, duration_s = belt.now() - t0 }
