/// The commands that send a secret to a server (setup: the DSNs and the role's password hash;
/// setup-back-replication: the back subscription's DSN) run those statements kept out of the
/// server's log (``QuietLogging``). Where a side's root session cannot do that, precheck says so
/// and these commands refuse before changing anything, unless the operator accepts it.
enum LoggedSecrets {
  /// The option of precheck, setup, setup-back-replication (and migrate.lua).
  static let option = OptionSpec(
    "accept_logged_secrets", .bool,
    "Go on even though the root user cannot keep the pglogical user's password out of the server's log (not a superuser)."
  )

  /// One line per side of `sides` whose root session cannot keep the secrets out of its log.
  static func exposures(_ ctx: PairContext, _ sides: [Side]) throws -> [String] {
    try sides.compactMap { try QuietLogging.exposure(ctx.connect($0, .root), side: $0.rawValue) }
  }

  /// Refuses (before anything changes) when a side would log a secret, unless accepted.
  /// - Returns: the accepted lines, for the command's record.
  static func check(_ ctx: PairContext, _ sides: [Side]) throws -> [String] {
    let lines = try exposures(ctx, sides)
    if !lines.isEmpty, !ctx.options.bool("accept_logged_secrets") {
      throw ctx.refuse(lines.joined(separator: "; "))
    }
    return lines
  }

  /// Runs a command's body after ``check(_:_:)``; an accepted exposure is in its record as
  /// `logged_secrets`.
  static func guarded(_ ctx: PairContext, _ sides: [Side], _ body: () throws -> Value) throws
    -> Value
  {
    let accepted = try check(ctx, sides)
    let result = try body()
    return accepted.isEmpty ? result : result.setting("logged_secrets", .from(accepted))
  }
}
