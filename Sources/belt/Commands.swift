import ArgumentParser
import BeltRuntime

let fleetNote = "\n\nIf the db name is not given run on all dbs in the dc."
let bothNote = "\n\nRequires both src and dst to be not null in the config file."
let nullSrcNote = "\n\nCan be run with a null src in the config file."
let nullDstNote = "\n\nCan be run with a null dst in the config file."

struct Connections: RunbookCommand {
  static let operation = "connections"
  static let configuration = CommandConfiguration(
    abstract: "Print out a table showing active database connections for each database pair.",
    discussion: """
      Displays the connection count and list of connected usernames for both source and destination databases.

      Always excludes 'rdsadmin' and 'postgres' users from the count. Use --exclude-user to exclude additional specific usernames. Use --exclude-pattern to exclude usernames matching LIKE patterns (e.g. '%%repuser%%').
      """ + bothNote + fleetNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @OptionGroup var exclude: ExcludeOptions
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { exclude.opts }
}

/// `-e/--exclude-user` and `-p/--exclude-pattern`, shared by the login and session commands.
struct ExcludeOptions: ParsableArguments {
  @Option(name: [.customShort("e"), .long], help: "Additional usernames to exclude (can be repeated). Always excludes rdsadmin and postgres.")
  var excludeUser: [String] = []
  @Option(name: [.customShort("p"), .long], help: "LIKE patterns to exclude usernames (e.g. '%%repuser%%'). Can be repeated.")
  var excludePattern: [String] = []

  var opts: [(String, Value)] { [("exclude_users", .from(excludeUser)), ("exclude_patterns", .from(excludePattern))] }
}

struct DsnOptions: ParsableArguments {
  @Flag(inversion: .prefixedNo, help: "Use the owner credentials")
  var owner = false
  @Flag(inversion: .prefixedNo, help: "Use the pglogical credentials.")
  var pglogical = false
}

struct SrcDsn: RunbookCommand {
  static let operation = "src_dsn"
  static let configuration = CommandConfiguration(
    commandName: "src-dsn",
    abstract: "Print a dsn to stdout that you can use to connect to the source db.",
    discussion: "psql \"$(belt src-dsn scribble prod-use1-pg-1)\"\n\nPass --owner to log in as the owner or --pglogical to log in as pglogical.")
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String
  @OptionGroup var dsn: DsnOptions
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("owner", .bool(dsn.owner)), ("pglogical", .bool(dsn.pglogical))] }
}

struct DstDsn: RunbookCommand {
  static let operation = "dst_dsn"
  static let configuration = CommandConfiguration(
    commandName: "dst-dsn",
    abstract: "Print a dsn to stdout that you can use to connect to the destination db.",
    discussion: "psql \"$(belt dst-dsn scribble prod-use1-pg-1)\"\n\nPass --owner to log in as the owner or --pglogical to log in as pglogical.")
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String
  @OptionGroup var dsn: DsnOptions
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { [("owner", .bool(dsn.owner)), ("pglogical", .bool(dsn.pglogical))] }
}

struct CheckPkeys: RunbookCommand {
  static let operation = "check_pkeys"
  static let configuration = CommandConfiguration(
    commandName: "check-pkeys", abstract: "Print out lists of tables with and without primary keys")
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String
  var dcArg: String { dc }
  var dbArg: String? { db }
}

/// Declares a `DC [DB]` command with no options of its own.
struct Simple {
  static func config(_ name: String, _ abstract: String, _ discussion: String, _ note: String) -> CommandConfiguration {
    CommandConfiguration(commandName: name, abstract: abstract, discussion: discussion + note + fleetNote)
  }
}

struct CheckConnectivity: RunbookCommand {
  static let operation = "check_connectivity"
  static let configuration = Simple.config("check-connectivity",
    "Returns exit code 0 if belt can connect to all databases in a datacenter (if db is not specified), or to both src and dst of a database.",
    "This is done by checking network access to the database ports and logging in as the root and owner users.\n\nIf any connection times out, the command will exit 1. It will test ALL connections before returning exit code 1 or 0, and output which connections passed/failed.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct Precheck: RunbookCommand {
  static let operation = "precheck"
  static let configuration = Simple.config("precheck",
    "Report whether your source database meets the basic requirements for belt.",
    "Any red item in a row in the table indicates a requirement not satisfied by your db. This command can not check network connectivity between your source and destination!\n\nIf a dbname is given this will also show whether the configuration of the root and owner users seems ok and a summary of whether each table and sequence in the database can be replicated.", bothNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  var dcArg: String { dc }
  var dbArg: String? { db }
}

struct TerminateConnections: RunbookCommand {
  static let operation = "terminate_connections"
  static let configuration = Simple.config("terminate-connections",
    "Terminate application sessions on the source database.",
    "Ends every client session on the source database except the root, postgres, rdsadmin and pglogical users and the excluded users/patterns (config exclude_users/exclude_patterns plus -e/-p). Used by cutover.lua after revoke-logins when sessions do not drain.", nullDstNote)
  @OptionGroup var global: GlobalOptions
  @Argument var dc: String
  @Argument var db: String?
  @OptionGroup var exclude: ExcludeOptions
  var dcArg: String { dc }
  var dbArg: String? { db }
  var opts: [(String, Value)] { exclude.opts }
}
