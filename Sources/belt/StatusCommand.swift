import ArgumentParser
import BeltRuntime
import Foundation

struct Status: RunbookCommand {
  static let operation = "status"
  static let configuration = Simple.config("status",
    "Print out a table of status information for one or all of the dbs in a datacenter.",
    """
    Contains the pglogical replication status for both directions of replication and replication lag data for forward replication. Possible replication statuses are as follows:

    unconfigured: No replication has been set up in this direction yet.

    initializing: Pglogical is performing an initial data dump to bring the follower up to speed. You can not begin replication in the opposite direction during this stage.

    replicating: Pglogical is replicating only net new writes in this direction.

    down: Pglogical has encountered an error and has stopped replicating entirely. Check the postgres logs on both dbs to determine the cause.
    """, bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Option(name: .long, help: "Refresh every SECONDS until interrupted (default 2 when given without a value).")
  var watch: Double?
  var dcArg: String { dc }
  var dbArg: String? { db }

  func run() throws {
    guard let every = watch else {
      let code = runRunbook(file: "status.lua", dc: dc, db: db, opts: .object([]), global: global, spec: OperationRegistry.find("status"), shippedOnly: true)
      if code != 0 { throw ExitCode(code) }
      return
    }
    while true {
      if !global.json { print("\u{1B}[H\u{1B}[2J", terminator: "") }
      _ = runRunbook(file: "status.lua", dc: dc, db: db, opts: .object([]), global: global, spec: OperationRegistry.find("status"), shippedOnly: true)
      Thread.sleep(forTimeInterval: max(0.5, every))
    }
  }
}

struct JournalCommand: RunbookCommand {
  static let operation = "journal"
  static let configuration = Simple.config("journal",
    "Show the journal of a flow (cutover.lua by default) for one or all of the dbs in a datacenter.",
    "Each step of cutover.lua and rollback.lua records its start and end in configs/<dc>/<db>/<flow>.journal.json. After a crash, run the same command again: it continues from the step shown here.", "")
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @Option(help: "The flow: cutover, rollback, or a custom runbook's name.") var flow: String = "cutover"
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("flow", .string(flow))] }
}

struct HelpLua: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "help-lua", abstract: "Print the Lua scripting API (every belt.* function).")
  @Flag(help: "Print LuaCATS definitions (runbooks/belt.meta.lua) instead.")
  var meta = false

  func run() throws {
    print(meta ? LuaDocs.meta() : LuaDocs.text())
  }
}
