import CLineEdit
import CSignals
import Foundation

/// `belt repl`: a lua.c-style read-eval-print loop over a Session's Lua state.
extension Session {
  /// Evaluates one complete input. Expressions are tried first as `return <line>`.
  /// - Returns: printable text, or nil when the input is incomplete (needs more lines).
  public func evaluate(_ input: String) -> String? {
    let trimmed = input.trimmingCharacters(in: .whitespacesAndNewlines)
    if trimmed.isEmpty { return "" }
    if trimmed == ":help" {
      return """
        belt REPL: type Lua. Expressions print their value.
          belt.status(dc)            status of every db of the dc
          belt.dbs(dc)               the db names
          belt.config(dc, db)        a config (secrets redacted)
          belt.query(dc, db, "src", "select 1 as x")
          :help                      this text; Ctrl-D quits; Ctrl-C stops a running call
        Functions: \(lua.coreFunctionNames.joined(separator: ", "))
        """
    }
    for candidate in ["return " + input + ";", input] {
      do {
        let results = try lua.run(source: candidate, chunkName: "=stdin", args: [])
        if results.isEmpty { return "" }
        return results.map { Render.pretty($0) }.joined(separator: "\t")
      } catch let e as BeltError {
        // No traceback: the input did not compile (it never ran).
        if candidate.hasPrefix("return ") && e.traceback == nil { continue }  // not an expression
        if e.traceback == nil && e.message.hasSuffix("<eof>") { return nil }  // incomplete
        let text = e.code == .scriptError ? e.description : "\(e.description) [\(e.code)]"
        if ProcessInfo.processInfo.environment["BELT_REPL_TRACEBACK"] != nil, let tb = e.traceback {
          return text + "\n" + tb
        }
        return text
      } catch {
        return BeltError.wrap(error).description
      }
    }
    return ""
  }
}

extension LuaRuntime {
  /// Names of the belt functions, for :help and completion.
  var coreFunctionNames: [String] {
    (functions.map(\.name) + ["wait_for", "retry", "on_failure", "info", "warn"]).filter {
      !["write", "make_error", "is_error", "flags", "clear_interrupt", "runbook_source"].contains(
        $0)
    }.sorted()
  }
}

/// Tab completion for the REPL: `belt.` functions, the REPL's globals and Lua's base names.
/// libedit calls the entry function with state 0 for a new word, then 1, 2, ... until it
/// returns NULL; each match is a malloc'd string that libedit frees.
enum ReplCompletion {
  nonisolated(unsafe) static var words: [String] = []
  nonisolated(unsafe) static var matches: [String] = []
  nonisolated(unsafe) static var next = 0

  static let luaNames = [
    "dc", "print", "pairs", "ipairs", "tostring", "tonumber", "type", "pcall", "error", "assert",
    "select", "string.format", "table.concat", "table.insert", "table.sort", "os.time", "os.date",
  ]

  /// The candidates for `prefix`, sorted.
  static func candidates(_ prefix: String) -> [String] {
    words.filter { $0.hasPrefix(prefix) }
  }

  static let entry: @convention(c) (UnsafePointer<CChar>?, Int32) -> UnsafeMutablePointer<CChar>? =
    {
      text, state in
      if state == 0 {
        matches = candidates(text.map { String(cString: $0) } ?? "")
        next = 0
      }
      guard next < matches.count else { return nil }
      next += 1
      return strdup(matches[next - 1])
    }

  static func install(_ lua: LuaRuntime) {
    words = Array(Set(lua.coreFunctionNames.map { "belt." + $0 } + luaNames)).sorted()
    belt_rl_set_completion(entry)
  }
}

public enum ReplLoop {
  /// Runs until EOF.
  public static func run(session: Session, dc: String?) {
    if let dc {
      _ = try? session.lua.run(source: "dc = ...", chunkName: "=repl", args: [.string(dc)])
    }
    let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
    let historyFile = "\(home)/.belt_history"
    using_history()
    ReplCompletion.install(session.lua)
    _ = read_history(historyFile)
    print(
      "belt REPL — Lua 5.4 with the belt table\(dc.map { "; dc = \"\($0)\"" } ?? ""). :help for help, Ctrl-D to quit."
    )
    var buffer = ""
    while true {
      signal(SIGINT, SIG_IGN)  // Ctrl-C at the prompt does not end the REPL; Ctrl-D does
      let prompt = buffer.isEmpty ? "belt> " : "...>> "
      guard let cline = readline(prompt) else { print(""); break }
      let line = String(cString: cline)
      free(cline)
      buffer += buffer.isEmpty ? line : "\n" + line
      guard let out = session.evaluate(buffer) else { continue }
      if !buffer.trimmingCharacters(in: .whitespaces).isEmpty { _ = add_history(buffer) }
      buffer = ""
      belt_clear_interrupt()
      if !out.isEmpty { print(out) }
      FileHandle.standardOutput.synchronizeFile()
    }
    _ = write_history(historyFile)
  }
}
