import Foundation
import Logging

/// Runs runbooks for the CLI: one Lua state per run (design.md §3).
public final class Session {
  public let lua: LuaRuntime

  public init(env: Environment, output: OutputSink, flags: [String: Value]) throws {
    lua = try LuaRuntime(env: env, output: output, flags: flags)
    if isatty(0) == 1 && isatty(2) == 1 {
      lua.confirmer = { msg in
        FileHandle.standardError.write(Data("\(msg) [y/N] ".utf8))
        guard let line = readLine() else { return false }
        return ["y", "yes"].contains(line.trimmingCharacters(in: .whitespaces).lowercased())
      }
    }
  }

  deinit { lua.close() }

  /// Where a runbook may come from.
  public enum Source: Sendable {
    /// Only the runbook compiled into belt: every built-in command, and `belt run --shipped`.
    /// A file of the same name in the working directory would otherwise run with every
    /// password in the configs.
    case shipped
    /// `belt run FILE`: a path, or a bare name of a file here or of a shipped runbook. A bare
    /// name that is both is refused: neither may silently stand in for the other.
    case fileOrShipped
  }

  /// Resolves a runbook.
  /// - Returns: (source, chunk name shown in errors).
  /// - Throws: ``BeltError`` `not_found`, or `bad_argument` for a bare name that is both a file
  ///   here and a shipped runbook.
  public static func resolve(_ file: String, from source: Source = .shipped) throws -> (
    String, String
  ) {
    let name = (file as NSString).lastPathComponent
    let shipped = file.contains("/") ? nil : Runbooks.source(named: name)
    let chunk = "@runbooks/" + (name.hasSuffix(".lua") ? name : name + ".lua")
    var isDirectory: ObjCBool = false
    let isFile =
      FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory)
      && !isDirectory.boolValue
    if source == .shipped || !isFile {
      guard let shipped else {
        let names = Runbooks.names.joined(separator: ", ")
        throw BeltError(
          .notFound,
          source == .shipped
            ? "\(file) is not a shipped runbook (those are: \(names))"
            : file.contains("/")
              ? "runbook \(file) not found: no such file"
              : "runbook \(file) not found: no such file here, and no shipped runbook of that name (those are: \(names))"
        )
      }
      return (shipped, chunk)
    }
    if shipped != nil {
      throw BeltError(
        .badArgument,
        "\(file) is both a file in the working directory and a shipped runbook: run ./\(file) for the file, or --shipped \(file) for belt's"
      )
    }
    guard let data = FileManager.default.contents(atPath: file),
      let s = String(data: data, encoding: .utf8)
    else {
      throw BeltError(.ioError, "\(file): cannot be read")
    }
    return (s, "@" + file)
  }

  /// The options a shipped flow runbook declares (runbooks/_options.lua) as help text: key,
  /// default and what it does, one line each. Nil for a runbook that declares none, and for an
  /// operator's file (even one named like a shipped runbook). Nothing of the runbook runs.
  /// - Throws: ``BeltError`` `not_found` for an unknown runbook (as ``resolve(_:from:)``).
  public func optionsHelp(_ file: String, from origin: Source = .shipped) throws -> String? {
    let (_, chunk) = try Session.resolve(file, from: origin)
    guard chunk.hasPrefix("@runbooks/") else { return nil }
    let name = String(chunk.dropFirst("@runbooks/".count))
    return try lua.run(
      source: "return belt.require_lib().options_help(...)", chunkName: "=belt",
      args: [.string(name)]
    ).first?.stringValue
  }

  /// ``optionsHelp(_:from:)`` of every shipped runbook that declares options, one after another.
  public func allOptionsHelp() throws -> String {
    let names =
      try lua.run(source: "return belt.require_lib().flows()", chunkName: "=belt", args: [])
      .first?.arrayValue?.compactMap(\.stringValue) ?? []
    return try names.compactMap { try optionsHelp($0) }.joined(separator: "\n")
  }

  /// Runs a runbook with `...` = dc, db, opts; compensation hooks run if it fails.
  /// - Returns: the runbook's first result.
  /// - Throws: ``BeltError``: the error the script raised, with its code, traceback and (for
  ///   an operator's script) position, named with dc and db unless it names its own; the
  ///   traceback is also logged at debug level.
  public func run(
    file: String, dc: String, db: String?, opts: Value, from origin: Source = .shipped
  ) throws -> Value {
    let (source, chunk) = try Session.resolve(file, from: origin)
    do {
      let wrapper = try lua.run(
        source:
          "local src, chunk = ...; local f, err = load(src, chunk, 't'); if not f then error(belt.error('script_error', err), 0) end; return belt._run_with_hooks(f, select(3, ...))",
        chunkName: "=belt", args: [.string(source), .string(chunk), .string(dc), .from(db), opts])
      return wrapper.first ?? .null
    } catch var e as BeltError {
      if let tb = e.traceback { lua.env.logger.debug("\(tb)") }
      if e.code == .scriptError { e.message = e.message.replacingOccurrences(of: "\n", with: " ") }
      throw e.located(dc: dc, db: db)
    }
  }
}
