-- The pgbouncer watchdog's action (belt _pgbouncer-watchdog, started by cutover.lua with
-- switch=pgbouncer before its PAUSE; see README "pgbouncer watchdog"). It runs once the pause has
-- outlasted pause_timeout plus a margin while the cutover run is still in progress, and acts only
-- when it can take the run's flow lock, i.e. when belt is gone (a live belt bounds its own pause).
--
-- What it does, from the journal and pgbouncer:
--   not paused, or the run ended, or pgbouncer-resume done -> nothing (someone else finished it)
--   pgbouncer-point-to-dst begun and not failed (so diff-sequences was done: dst holds all of
--   src's data), src still fenced
--     -> finish the switch: point pgbouncer at dst if it is not there yet (the line rewritten but
--        not RELOADed, or not written at all), RESUME, and record both steps done "by the
--        watchdog"; a rerun of cutover.lua then finishes (refresh-matviews, diff-schemas).
--   anything earlier -> what cutover.lua's compensation does: pgbouncer back at src (its line
--     rewritten and RELOADed, so a later RELOAD cannot switch it by surprise), logins restored on
--     src, RESUME, and the run closed as compensated ("compensated by the watchdog"); a rerun then
--     starts a new cutover (or, if forward replication was already torn down, says to start over
--     with belt reset and belt run migrate.lua).
-- Returns { waiting = true } while belt holds the lock.
local dc, db = ...
local lib = belt.require_lib()
local ok, flow = pcall(lib.flow, dc, { db }, "cutover", nil, true)
if not ok then
  return { ok = true, waiting = true, message = tostring(flow) }
end
local j = flow.j[db]
local function nothing(why) return { ok = true, acted = "nothing", message = why } end
if j.state ~= "in_progress" then return nothing("the cutover run ended (" .. tostring(j.state) .. ")") end
local st = j.step_status or {}
if st["pgbouncer-resume"] == "done" then return nothing("pgbouncer-resume is done") end
local shown = lib.must(belt.pgbouncer_show(dc, db), "pgbouncer-show")
if not shown.paused then
  return nothing(("pgbouncer is not paused (points at %s); the run stays in progress: rerun %s"):format(
    tostring(shown.points_to), tostring((j.data or {}).command or "the cutover")))
end
local stopped = tostring(j.current_step)
local at = os.date("!%Y-%m-%dT%H:%M:%SZ")
local function jstep(step, status, data, run_data)
  if status == "started" then
    lib.must(belt.journal_begin(dc, db, { flow = "cutover", step = step, data = data, run_data = run_data }), "journal")
  else
    lib.must(belt.journal_end(dc, db, { flow = "cutover", step = step, data = data }), "journal")
  end
end

-- The switch had begun: belt started the repoint (not one that failed, whose compensation was
-- under way), after diff-sequences, and src's fence still stands.
local fence = belt.config(dc, db).login_fence
local fenced = not (type(fence) == "table" and fence.restored == true)
local repoint = st["pgbouncer-point-to-dst"]
if (repoint == "started" or repoint == "done") and st["diff-sequences"] == "done" and fenced then
  local note = ("resumed at dst by the watchdog at %s: belt stopped in %s and the pause outlasted pause_timeout"):format(at, stopped)
  local fok, ferr = pcall(function()
    if st["pgbouncer-point-to-dst"] ~= "done" then
      if shown.points_to ~= "dst" then lib.must(belt.pgbouncer_point_to(dc, db, { side = "dst" }), "pgbouncer-point-to-dst") end
      jstep("pgbouncer-point-to-dst", "done", { by = "watchdog" })
    end
    jstep("pgbouncer-resume", "started", { by = "watchdog" }, { watchdog = note })
    lib.must(belt.pgbouncer_resume(dc, db), "pgbouncer-resume")
    jstep("pgbouncer-resume", "done", { by = "watchdog" })
  end)
  if fok then
    belt.warn(note)
    return { ok = true, acted = "resumed_at_dst", message = note .. "; run the cutover again to finish it (diff-schemas)" }
  end
  belt.warn("could not finish the switch at dst (" .. tostring(ferr) .. "); going back to src")
end

-- Compensation, as cutover.lua's compensate() does it.
local note = ("compensated by the watchdog at %s: belt stopped in %s and the pause outlasted pause_timeout; "
  .. "pgbouncer pointed back at src, logins restored on src, resumed"):format(at, stopped)
local pok, perr = pcall(function() lib.must(belt.pgbouncer_point_to(dc, db, { side = "src" }), "pgbouncer-point-to-src") end)
if not pok then belt.warn("could not point pgbouncer back at src: " .. tostring(perr)) end
local rok, rerr = pcall(belt.restore_logins, dc, db)
if not rok then belt.warn("restore-logins failed: " .. tostring(rerr)) end
lib.must(belt.pgbouncer_resume(dc, db), "pgbouncer-resume")
flow.close({ db }, "compensated", note)
belt.warn(note)
return { ok = true, acted = "compensated", message = note }
