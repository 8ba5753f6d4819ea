import Foundation

/// The pgbouncer watchdog (issue 24): a pgbouncer that cutover.lua paused is never left paused
/// when belt dies (SIGKILL, a closed laptop lid, a dropped SSH session).
///
/// Right before its PAUSE, cutover.lua starts one detached process per database: the same belt
/// binary, hidden subcommand ``subcommand``, in a session of its own (`setsid`), with nothing
/// secret in its arguments (dc, db, a token, the deadline, the config directory; it reads the
/// config files as belt does). It watches the pair's cutover journal and, once the deadline
/// (the PAUSE + pause_timeout + ``margin``) has passed while the run is still in progress, takes
/// the run's flow lock. While belt runs it holds that lock (and bounds its own pause), so the
/// watchdog acts only once belt is gone: then `_pgbouncer-watchdog.lua` decides, from the
/// journal and pgbouncer, to finish the switch at dst or to give traffic back to src.
///
/// It exits when the run ends (done or compensated), when pgbouncer-resume is done, when a
/// later run started another watchdog for the pair (the token in ``file(_:dc:db:)`` changed),
/// or ``giveUp`` seconds after the deadline.
public enum PgBouncerWatchdog {
  /// The hidden subcommand the watchdog process runs.
  public static let subcommand = "_pgbouncer-watchdog"
  /// The shipped runbook it runs at the deadline.
  public static let runbook = "_pgbouncer-watchdog.lua"
  /// Seconds past pause_timeout before the watchdog looks (belt's own compensation has gone
  /// first when belt is alive).
  static let margin = 2.0
  /// Seconds past the deadline after which a watchdog that could not act gives up.
  public static let giveUp = 600.0

  /// The file naming the pair's current watchdog: token, pid, deadline.
  public static func file(_ store: ConfigStore, dc: String, db: String) -> String {
    "\(store.root)/configs/\(dc)/\(db)/cutover.watchdog.json"
  }

  /// Starts the pair's watchdog (superseding an earlier one), acting `after` seconds plus
  /// ``margin`` from now; returns its record.
  static func start(_ ctx: PairContext, after seconds: Double) throws -> Value {
    let store = ctx.env.store
    let path = file(store, dc: ctx.dc, db: ctx.db)
    let token = UUID().uuidString.lowercased()
    let deadline = Date().addingTimeInterval(seconds + margin)
    let epoch = (deadline.timeIntervalSince1970 * 1000).rounded() / 1000
    var doc: Value = .object([
      ("token", .string(token)), ("deadline_epoch", .double(epoch)),
      ("deadline_at", .string(Journal.iso(deadline))), ("pid", .null),
    ])
    // Written before the spawn: the new watchdog finds its token, an older one finds it gone.
    try AtomicFile.write(doc.json(indent: 2) + "\n", to: path, mode: 0o600)
    var argv = [
      try executable(), subcommand, ctx.dc, ctx.db, "--token", token, "--deadline",
      String(format: "%.3f", epoch), "--config-dir",
      URL(fileURLWithPath: store.root).standardizedFileURL.path,
    ]
    if let audit = ctx.env.audit.override { argv += ["--audit-log", audit] }
    var cmd = ExternalCommand(argv: argv)
    // It is belt going on: the same environment (BELT_*, a resolver's variables).
    cmd.inheritsEnvironment = true
    let pid = try cmd.detach(log: "\(store.root)/configs/\(ctx.dc)/\(ctx.db)/cutover.watchdog.log")
    doc = doc.setting("pid", .int(Int(pid)))
    try AtomicFile.write(doc.json(indent: 2) + "\n", to: path, mode: 0o600)
    return .object([
      ("pid", .int(Int(pid))), ("deadline_at", .string(Journal.iso(deadline))),
      ("deadline_epoch", .double(epoch)),
      (
        "message",
        .string("watchdog pid \(pid) acts after \(Journal.iso(deadline)) if belt is gone")
      ),
    ])
  }

  /// This very binary.
  static func executable() throws -> String {
    let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
    guard let path, FileManager.default.isExecutableFile(atPath: path) else {
      throw BeltError(.ioError, "cannot find belt's own executable (/proc/self/exe)")
    }
    return path
  }

  /// What a watchdog should do now.
  public enum Verdict: Equatable {
    /// Keep watching.
    case watch
    /// Exit: the reason.
    case exit(String)
  }

  /// Reads the watchdog file and the cutover journal of the pair.
  public static func verdict(_ store: ConfigStore, dc: String, db: String, token: String)
    -> Verdict
  {
    let mine =
      (try? Journal.read(file(store, dc: dc, db: db)))?.flatMap { $0["token"]?.stringValue }
    guard mine == token else {
      return .exit("superseded: cutover.watchdog.json is gone or names a later run's watchdog")
    }
    let path = Journal.path(store, dc: dc, db: db, flow: "cutover")
    guard let doc = try? Journal.read(path) else { return .exit("no cutover journal") }
    guard doc["state"] == "in_progress" else {
      return .exit("the cutover run ended (\(doc["state"]?.stringValue ?? "?"))")
    }
    if Journal.steps(doc).contains(where: {
      $0["name"] == "pgbouncer-resume" && $0["status"] == "done"
    }) {
      return .exit("pgbouncer was resumed")
    }
    return .watch
  }
}
