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

  /// Resolves a runbook: an existing file path, else a shipped runbook by name. With
  /// `shippedOnly` (every built-in command) only the runbook compiled into belt: a file of the
  /// same name in the working directory would otherwise run with every password in the configs.
  /// - Returns: (source, chunk name shown in errors).
  public static func resolve(_ file: String, shippedOnly: Bool = false) throws -> (String, String) {
    if !shippedOnly, FileManager.default.fileExists(atPath: file) {
      guard let data = FileManager.default.contents(atPath: file), let s = String(data: data, encoding: .utf8) else {
        throw BeltError(.ioError, "\(file): cannot be read")
      }
      return (s, "@" + file)
    }
    let name = (file as NSString).lastPathComponent
    if !file.contains("/"), let s = Runbooks.source(named: name) {
      return (s, "@runbooks/" + (name.hasSuffix(".lua") ? name : name + ".lua"))
    }
    throw BeltError(.notFound, "runbook \(file) not found (not a file, and not a shipped runbook: \(Runbooks.names.joined(separator: ", ")))")
  }

  /// Runs a runbook with `...` = dc, db, opts; compensation hooks run if it fails.
  /// - Returns: the runbook's first result.
  /// - Throws: ``BeltError``: the error the script raised, with its code, traceback and (for
  ///   an operator's script) position, named with dc and db unless it names its own; the
  ///   traceback is also logged at debug level.
  public func run(file: String, dc: String, db: String?, opts: Value, shippedOnly: Bool = false) throws -> Value {
    let (source, chunk) = try Session.resolve(file, shippedOnly: shippedOnly)
    do {
      let wrapper = try lua.run(
        source: "local src, chunk = ...; local f, err = load(src, chunk, 't'); if not f then error(belt.error('script_error', err), 0) end; return belt._run_with_hooks(f, select(3, ...))",
        chunkName: "=belt", args: [.string(source), .string(chunk), .string(dc), .from(db), opts])
      return wrapper.first ?? .null
    } catch var e as BeltError {
      if let tb = e.traceback { lua.env.logger.debug("\(tb)") }
      if e.code == .scriptError { e.message = e.message.replacingOccurrences(of: "\n", with: " ") }
      throw e.located(dc: dc, db: db)
    }
  }
}
