import CSignals
import Foundation

/// Runs the PostgreSQL client programs (`pg_dump`, `psql`) as subprocesses.
///
/// Connection parameters travel in `PG*` environment variables of the child only; the
/// password travels in a private passfile (mode 0600 in a 0700 directory, deleted afterwards),
/// never on the command line, never in belt's own environment, never in an error message.
public enum PGTools {
  /// Everything needed to start one client program. Built by ``invocation(tool:arguments:server:role:connectTimeout:baseEnvironment:binDir:)``
  /// without side effects, so the argv/env construction can be checked in tests.
  public struct Invocation: Sendable {
    /// Absolute path of the program.
    public var executable: String
    /// Arguments (argv[1...]); never contain the password.
    public var arguments: [String]
    /// The child's complete environment (without PGPASSFILE, added at run time).
    public var environment: [String: String]
    /// The passfile line to write (`*:*:*:*:<escaped password>`), or nil when the
    /// password is passed in PGPASSWORD (only when it cannot be written in a passfile).
    public var passfileLine: String?
  }

  /// The result of a program that exited 0.
  public struct Output: Sendable {
    public var stdout: String
    /// Standard error (warnings).
    public var stderr: String
  }

  /// Environment variables that would change where or as whom the child connects; removed
  /// from the inherited environment before the pair's own values are set.
  static let connectionVariables: Set<String> = [
    "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGPASSFILE",
    "PGSERVICE", "PGSERVICEFILE", "PGOPTIONS", "PGCONNECT_TIMEOUT", "PGAPPNAME",
    "PGTARGETSESSIONATTRS",
  ]

  /// A directory holding `pg_dump`, with the major version that pg_dump reports.
  public struct ToolDirectory: Equatable, Sendable, CustomStringConvertible {
    /// The directory.
    public var path: String
    /// The major version of its `pg_dump` (`pg_dump --version`).
    public var major: Int

    public init(path: String, major: Int) {
      self.path = path
      self.major = major
    }

    /// `pg_dump 18 (/dir)`.
    public var description: String { "pg_dump \(major) (\(path))" }
  }

  /// Where belt looks for `pg_dump`, in order of preference among equal major versions:
  /// `$BELT_PG_BIN`, `<root>/<major>/bin` (newest first; root `/usr/lib/postgresql`), then every
  /// `PATH` directory. Only directories holding an executable `pg_dump`, each once (`/bin` and
  /// `/usr/bin` are one directory on a merged-/usr system).
  static func candidateDirectories(
    environment: [String: String], root: String = "/usr/lib/postgresql"
  ) -> [String] {
    let fm = FileManager.default
    var dirs: [String] = []
    if let b = environment["BELT_PG_BIN"], !b.isEmpty { dirs.append(b) }
    let majors = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted(
      by: >)
    dirs += majors.map { "\(root)/\($0)/bin" }
    dirs += (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
    var seen = Set<String>()
    return dirs.filter { d in
      fm.isExecutableFile(atPath: d + "/pg_dump") && seen.insert(canonicalPath(d)).inserted
    }
  }

  /// `path` with every symbolic link resolved (realpath(3)), or `path` itself when it cannot be.
  static func canonicalPath(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return path }
    defer { free(resolved) }
    return String(cString: resolved)
  }

  /// The major version in `pg_dump --version` output: `pg_dump (PostgreSQL) 18.6` → 18,
  /// `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` → 15, `... 9.6.24` → 9; nil when
  /// there is no version number.
  public static func parseMajor(_ versionOutput: String) -> Int? {
    guard
      let r = versionOutput.range(of: #"\) [0-9]+"#, options: .regularExpression)
        ?? versionOutput.range(of: #"[0-9]+"#, options: .regularExpression)
    else { return nil }
    return Int(versionOutput[r].filter(\.isNumber))
  }

  /// `pg_dump --version` majors already asked, by executable path (a belt process asks once).
  nonisolated(unsafe) private static var majorCache: [String: Int?] = [:]
  private static let majorCacheLock = NSLock()

  /// The major version of the `pg_dump` in `dir`, or nil when it does not say.
  static func dumpMajor(inDirectory dir: String) -> Int? {
    let exe = dir + "/pg_dump"
    majorCacheLock.lock()
    let known = majorCache[exe]
    majorCacheLock.unlock()
    if let known { return known }
    let major = (try? runSimple(exe, ["--version"])).flatMap(parseMajor)
    majorCacheLock.lock()
    majorCache[exe] = major
    majorCacheLock.unlock()
    return major
  }

  /// Every candidate directory (see ``candidateDirectories(environment:root:)``) with its
  /// pg_dump's major version; one whose pg_dump does not answer `--version` is left out.
  public static func toolDirectories(
    environment: [String: String] = ProcessInfo.processInfo.environment,
    root: String = "/usr/lib/postgresql"
  ) -> [ToolDirectory] {
    candidateDirectories(environment: environment, root: root).compactMap { dir in
      dumpMajor(inDirectory: dir).map { ToolDirectory(path: dir, major: $0) }
    }
  }

  /// The newest of `found` (the first of equal majors).
  static func newest(_ found: [ToolDirectory]) -> ToolDirectory? {
    found.enumerated().max { a, b in
      a.element.major < b.element.major
        || (a.element.major == b.element.major && a.offset > b.offset)
    }?
    .element
  }

  /// Picks the client programs for a pair: the newest pg_dump found, when it is at least as new
  /// as every server (a pg_dump dumps servers of its own major or older, and its output is what
  /// belt splits and loads into dst; belt loads through libpq, so psql's version never matters).
  /// Pure: the versions are given.
  /// - Parameters:
  ///   - found: the directories and their pg_dump majors, in order of preference.
  ///   - servers: each server's label (`src`, `dst`) and major version.
  /// - Throws: ``BeltError`` `precondition_failed`, one line naming the versions found and needed.
  public static func chooseDumpTool(
    _ found: [ToolDirectory], servers: [(label: String, major: Int)]
  ) throws -> ToolDirectory {
    let needed = servers.map(\.major).max() ?? 0
    if let best = newest(found), best.major >= needed { return best }
    let serverList = servers.map { "\($0.label) is PostgreSQL \($0.major)" }.joined(separator: ", ")
    let foundList =
      found.isEmpty
      ? "found none in $BELT_PG_BIN, /usr/lib/postgresql/*/bin or PATH"
      : "found " + found.map(\.description).joined(separator: ", ")
    throw BeltError(
      .preconditionFailed,
      "no pg_dump can dump both servers: \(serverList), so pg_dump \(needed) or newer is needed; \(foundList) "
        + "(install PostgreSQL \(needed)'s client programs, or set BELT_PG_BIN to their bin directory)"
    )
  }

  /// The client programs' directory for servers of these majors (see
  /// ``chooseDumpTool(_:servers:)``), looked up in `environment`'s `BELT_PG_BIN` and `PATH`.
  /// - Throws: ``BeltError`` `precondition_failed` when no pg_dump is new enough.
  public static func dumpTool(
    servers: [(label: String, major: Int)],
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> ToolDirectory {
    try chooseDumpTool(toolDirectories(environment: environment), servers: servers)
  }

  /// The directory holding `pg_dump` when no server version is known: the newest found
  /// (see ``toolDirectories(environment:root:)``), or nil (then PATH is searched).
  public static func binDirectory(
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) -> String? {
    newest(toolDirectories(environment: environment))?.path
  }

  /// The absolute path of `tool`, or a clear error.
  public static func locate(_ tool: String, binDir: String? = binDirectory()) throws -> String {
    if let binDir {
      let p = binDir + "/" + tool
      if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    if let p = findOnPath(tool, environment: ProcessInfo.processInfo.environment) { return p }
    throw BeltError(
      .ioError,
      "\(tool) was not found (set BELT_PG_BIN to the directory of the PostgreSQL client programs, e.g. /usr/lib/postgresql/15/bin)"
    )
  }

  /// The first executable `tool` in `PATH`.
  static func findOnPath(_ tool: String, environment: [String: String]) -> String? {
    for dir in (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
      let p = "\(dir)/\(tool)"
      if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
  }

  /// Escapes a passfile field (`\` and `:` are backslash-escaped).
  public static func passfileEscape(_ s: String) -> String {
    var out = ""
    for ch in s {
      if ch == "\\" || ch == ":" { out.append("\\") }
      out.append(ch)
    }
    return out
  }

  /// Builds the invocation of `tool` connecting to `server` as `role`. Pure: no files, no processes.
  public static func invocation(
    tool: String, arguments: [String], server: ServerConfig, role: Role, connectTimeout: Int = 10,
    baseEnvironment: [String: String] = ProcessInfo.processInfo.environment, binDir: String? = nil
  ) throws -> Invocation {
    let exe = try locate(tool, binDir: binDir ?? binDirectory(environment: baseEnvironment))
    let cred = server.credentials(role)
    var env = baseEnvironment.filter { !connectionVariables.contains($0.key) }
    if ServerConfig.isNumericAddress(server.ip) {
      env["PGHOSTADDR"] = server.ip
      if !server.host.isEmpty, !ServerConfig.isNumericAddress(server.host) {
        env["PGHOST"] = server.host
      }
    } else {
      env["PGHOST"] = server.ip
    }
    env["PGPORT"] = String(server.port)
    env["PGDATABASE"] = server.dbname
    env["PGUSER"] = cred.name
    env["PGCONNECT_TIMEOUT"] = String(connectTimeout)
    env["PGAPPNAME"] = "belt"
    var line: String? = "*:*:*:*:" + passfileEscape(cred.password)
    if cred.password.contains("\n") || cred.password.contains("\r") || cred.password.isEmpty {
      // A passfile line cannot hold a line break; the child's environment is still private to it.
      line = nil
      if !cred.password.isEmpty { env["PGPASSWORD"] = cred.password }
    }
    return Invocation(executable: exe, arguments: arguments, environment: env, passfileLine: line)
  }

  /// Runs an invocation, capturing stdout and stderr.
  /// - Parameter what: names the program and server in errors, e.g. "pg_dump of src (host:port/db)".
  /// - Throws: ``BeltError`` `io_error` when it cannot start or exits non-zero (stderr included,
  ///   with the password masked).
  public static func run(_ inv: Invocation, what: String, secret: String) throws -> Output {
    var env = inv.environment
    var tmpDir: String? = nil
    defer { if let tmpDir { try? FileManager.default.removeItem(atPath: tmpDir) } }
    if let line = inv.passfileLine {
      var template = Array((NSTemporaryDirectory() + "belt-pass-XXXXXX").utf8CString)
      let made: String? = template.withUnsafeMutableBufferPointer { buf in
        guard let base = buf.baseAddress, mkdtemp(base) != nil else { return nil }
        return String(cString: base)
      }
      guard let dir = made else {
        throw BeltError(.ioError, "\(what): cannot create a private temporary directory")
      }
      tmpDir = dir
      let file = dir + "/pgpass"
      let fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0o600)
      guard fd >= 0 else { throw BeltError(.ioError, "\(what): cannot create a private passfile") }
      let bytes = Array((line + "\n").utf8)
      let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      close(fd)
      guard written == bytes.count else {
        throw BeltError(.ioError, "\(what): cannot write a private passfile")
      }
      env["PGPASSFILE"] = file
    }
    var cmd = ExternalCommand(argv: [inv.executable] + inv.arguments)
    cmd.environment = env
    cmd.timeout = .infinity  // a schema dump of a large database takes what it takes; Ctrl-C stops it
    cmd.maxOutput = .max
    let r: ExternalCommand.Outcome
    do {
      r = try cmd.run { belt_interrupted() != 0 }
    } catch {
      throw BeltError(
        .ioError, "\(what): cannot start \(inv.executable): \(BeltError.wrap(error).message)")
    }
    if r.interrupted {
      throw BeltError(
        .interrupted, "interrupted by the user (Ctrl-C) during the \(what); it was stopped")
    }
    let stderr = mask(r.stderr, secret: secret)
    guard r.ok else {
      let how = r.status.map { "exit code \($0)" } ?? "signal \(r.signal ?? 0)"
      let lines = stderr.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty }
      let detail = lines.isEmpty ? "no error output" : lines.prefix(5).joined(separator: "; ")
      throw BeltError(.ioError, "\(what) failed (\(how)): \(detail)")
    }
    return Output(stdout: r.stdout, stderr: stderr)
  }

  /// Replaces every occurrence of `secret` (when at least 3 characters) with `****`.
  static func mask(_ s: String, secret: String) -> String {
    guard secret.count >= 3 else { return s }
    return s.replacingOccurrences(of: secret, with: "****")
  }

  /// The `-n` pattern matching exactly one schema name: quoted as an identifier, so `*`, `?`,
  /// `.` and upper case are literal.
  public static func exactSchemaPattern(_ schema: String) -> String {
    PGConnection.quoteIdent(schema)
  }

  /// The arguments of a schema-only dump of one schema.
  public static func schemaDumpArguments(schema: String) -> [String] {
    ["--schema-only", "--no-owner", "--strict-names", "--schema=" + exactSchemaPattern(schema)]
  }

  /// `pg_dump --schema-only --no-owner` of one schema of `server`, connecting as `role`, with
  /// the pg_dump in `tools` (see ``dumpTool(servers:environment:)``).
  /// - Throws: ``BeltError`` naming the side and server when pg_dump fails.
  public static func dumpSchema(
    server: ServerConfig, role: Role, schema: String, side: Side, tools: ToolDirectory,
    connectTimeout: Int = 10,
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> String {
    let inv = try invocation(
      tool: "pg_dump", arguments: schemaDumpArguments(schema: schema), server: server, role: role,
      connectTimeout: connectTimeout, baseEnvironment: environment, binDir: tools.path)
    let what =
      "pg_dump of \(side.rawValue) (\(server.ip):\(server.port)/\(server.dbname), schema \(schema))"
    return try run(inv, what: what, secret: server.credentials(role).password).stdout
  }

  /// Runs a program without a connection and returns its stdout.
  static func runSimple(_ exe: String, _ args: [String]) throws -> String {
    var cmd = ExternalCommand(argv: [exe] + args)
    cmd.timeout = 10
    let r = try cmd.run()
    guard r.ok else { throw BeltError(.ioError, "\(exe) failed") }
    return r.stdout
  }
}
