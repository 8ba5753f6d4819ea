/// The journal of a flow, readable and writable from runbooks (design.md §8): a runbook
/// records each step's start and end and what a resume needs, and reads it back to continue
/// from where an earlier run stopped. The work is in Journal.swift.
public enum JournalOps {
  public static let all: [OperationSpec] = [journal, journalBegin, journalEnd, journalClose]

  static let flowOption = OptionSpec(
    "flow", .string, "The flow: cutover, rollback, or a custom runbook's name.", default: "cutover")

  static let stepOption = OptionSpec("step", .string, "The step's name.", required: true, cli: nil)

  /// The flow named by `opts.flow` (default `cutover`) and its journal file.
  static func file(_ ctx: PairContext) throws -> (flow: String, path: String) {
    let flow = ctx.options.string("flow") ?? "cutover"
    try Journal.checkFlow(flow)
    return (flow, Journal.path(ctx.env.store, dc: ctx.dc, db: ctx.db, flow: flow))
  }

  /// journal (`lock = true`: also take the flow's lock for the pair, held until the process
  /// ends; refused while another belt process holds it): record `flow`, `state` (none, in_progress, done, compensated, rolled_back),
  /// `run`, `started_at`, `finished_at`, `note`, `data`, `steps` [{name, status, started_at,
  /// last_started_at, ended_at, duration_s, attempts, error, data}], `step_status` {name =
  /// status}, `current_step`, `current_step_status`, `current_step_since`, `file`.
  static let journal = OperationSpec(
    name: "journal",
    summary:
      "Show the journal of a flow (cutover.lua by default) for one or all of the dbs in a datacenter.",
    details: """
      Each step of cutover.lua and rollback.lua records its start and end in configs/<dc>/<db>/<flow>.journal.json. After a crash, run the same command again: it continues from the step shown here.
      """,
    sides: .none,
    options: [
      flowOption,
      OptionSpec(
        "lock", .bool,
        "Also take the flow's lock for the pair, held until the process ends (a runbook about to act).",
        cli: nil),
    ],
    columns: [
      ("database", "db"), ("flow", "flow"), ("run", "run"), ("state", "state"),
      ("step", "current_step"),
      ("step status", "current_step_status"), ("since", "current_step_since"),
      ("started", "started_at"),
      ("finished", "finished_at"),
    ]
  ) { ctx in
    let (flow, path) = try file(ctx)
    if ctx.options.bool("lock") {
      // A runbook about to act takes the flow's lock first, so that a second belt on the same
      // pair is refused before it changes anything (or runs compensation).
      try FlowLock.acquire(path + ".lock", what: "the \(flow) of \(ctx.dc)/\(ctx.db)")
    }
    return Journal.record(try Journal.read(path), path: path, flow: flow)
  }

  /// journal_begin: records that a step starts (again), merging `data` into the step's data
  /// and `run_data` into the run's; starts a new run when none is in progress.
  static let journalBegin = OperationSpec(
    name: "journal_begin",
    summary: "Records in the flow's journal that a step starts, with what a resume needs (data).",
    sides: .none,
    options: [
      flowOption, stepOption,
      OptionSpec("data", .table, "Merged into the step's data.", cli: nil),
      OptionSpec("run_data", .table, "Merged into the run's data.", cli: nil),
    ],
    isCommand: false
  ) { ctx in
    let (flow, path) = try file(ctx)
    let doc = try Journal.begin(
      path, dc: ctx.dc, db: ctx.db, flow: flow, step: ctx.options.string("step") ?? "",
      data: ctx.options.values["data"],
      runData: ctx.options.values["run_data"])
    return Journal.record(doc, path: path, flow: flow)
  }

  /// journal_end: records the end of a step (status done or failed, with an error text).
  static let journalEnd = OperationSpec(
    name: "journal_end",
    summary: "Records in the flow's journal that a step ended (status done or failed).",
    sides: .none,
    options: [
      flowOption, stepOption,
      OptionSpec(
        "status", .string, "done or failed.", default: "done", choices: ["done", "failed"], cli: nil
      ),
      OptionSpec("data", .table, "Merged into the step's data.", cli: nil),
      OptionSpec("error", .string, "Why the step failed.", cli: nil),
    ],
    isCommand: false
  ) { ctx in
    let (flow, path) = try file(ctx)
    let doc = try Journal.end(
      path, step: ctx.options.string("step") ?? "", status: ctx.options.string("status") ?? "done",
      data: ctx.options.values["data"],
      error: ctx.options.string("error"))
    return Journal.record(doc, path: path, flow: flow)
  }

  /// journal_close: ends the run in progress (state done, compensated or rolled_back), merging
  /// `run_data` into the run's data.
  static let journalClose = OperationSpec(
    name: "journal_close",
    summary:
      "Ends the flow's run in progress: done, compensated or rolled_back (the next begin starts a new run).",
    sides: .none,
    options: [
      flowOption,
      OptionSpec(
        "state", .string, "done, compensated or rolled_back.", default: "done",
        choices: ["done", "compensated", "rolled_back"], cli: nil),
      OptionSpec("note", .string, "A line for the operator.", cli: nil),
      OptionSpec("run_data", .table, "Merged into the run's data.", cli: nil),
    ],
    isCommand: false
  ) { ctx in
    let (flow, path) = try file(ctx)
    let doc = try Journal.close(
      path, state: ctx.options.string("state") ?? "done", note: ctx.options.string("note"),
      runData: ctx.options.values["run_data"])
    return Journal.record(doc, path: path, flow: flow)
  }
}
