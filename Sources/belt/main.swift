import ArgumentParser
import BeltRuntime
import Foundation

struct Belt: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "belt",
    abstract: "A tool to help manage postgres data migrations.",
    version: BuildInfo.versionLine,
    subcommands: subcommands)

  /// The operations' commands, then the three that are not operations.
  static let subcommands = operationCommands() + [Run.self, Repl.self, HelpLua.self, Watchdog.self]

  @Flag(help: "Install completion for the current shell.")
  var installCompletion = false
  @Flag(help: "Show completion for the current shell, to copy it or customize the installation.")
  var showCompletion = false

  func run() throws {
    let shell = CompletionShell.autodetected() ?? .bash
    let script = Belt.completionScript(for: shell)
    if showCompletion {
      print(script)
      return
    }
    if installCompletion {
      try installCompletionScript(script, shell: shell)
      return
    }
    print(Belt.helpMessage())
  }
}

func installCompletionScript(_ script: String, shell: CompletionShell) throws {
  let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
  let dir = "\(home)/.local/share/belt"
  try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  let file = "\(dir)/completion.\(shell.rawValue)"
  try script.write(toFile: file, atomically: true, encoding: .utf8)
  let rc =
    shell == .zsh
    ? "\(home)/.zshrc" : shell == .fish ? "\(home)/.config/fish/config.fish" : "\(home)/.bashrc"
  let line = "source \(file)"
  let existing = (try? String(contentsOfFile: rc, encoding: .utf8)) ?? ""
  if !existing.contains(line) {
    let text = existing + (existing.isEmpty || existing.hasSuffix("\n") ? "" : "\n") + line + "\n"
    try text.write(toFile: rc, atomically: true, encoding: .utf8)
  }
  print(
    "\(shell.rawValue) completion installed in \(file) (sourced from \(rc)). Restart your shell to use it."
  )
}

// Bad input gets one line on stderr and exit 64 (design.md §7): the error and where to look,
// without ArgumentParser's usage block.
if let help = Run.helpWithRunbookOptions(Array(CommandLine.arguments.dropFirst())) {
  print(help, terminator: "")
  exit(0)
}
do {
  var command = try Belt.parseAsRoot()
  try command.run()
} catch {
  let code = Belt.exitCode(for: error)
  if code == .success || error is ExitCode { Belt.exit(withError: error) }
  let words = CommandLine.arguments.dropFirst()
  let sub = words.first { w in Belt.subcommands.contains { $0._commandName == w } }
  let message = Belt.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
  eprint("belt: \(message) (see 'belt \(sub.map { $0 + " " } ?? "")--help')")
  Belt.exit(withError: ExitCode(code.rawValue))
}
