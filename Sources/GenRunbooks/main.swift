// Writes RunbookSources.swift: `enum RunbookSources { static let files: [String: String] }`,
// one entry per runbook, the file's text as a raw string literal. Run by the EmbedRunbooks
// build-tool plugin at build time, so the binary carries its runbooks (it works from any
// directory) and no generated Swift is committed.
//
// Usage: GenRunbooks OUTPUT.swift RUNBOOK.lua...
import Foundation

/// The number of `#` a raw string needs so that nothing in `text` closes it (`"""#`) or
/// starts an escape (`\#`): one more than the longest run of `#` after a `"` or a `\`.
func rawDelimiter(for text: String) -> String {
  var longest = 0
  var run = -1  // -1: not after a quote or backslash
  for c in text.unicodeScalars {
    if c == "\"" || c == "\\" {
      run = 0
    } else if c == "#", run >= 0 {
      run += 1
      longest = max(longest, run)
    } else {
      run = -1
    }
  }
  return String(repeating: "#", count: longest + 1)
}

let args = CommandLine.arguments.dropFirst()
guard let output = args.first else {
  FileHandle.standardError.write(Data("usage: GenRunbooks OUTPUT.swift RUNBOOK.lua...\n".utf8))
  exit(64)
}
var out = """
  // Generated at build time by GenRunbooks (EmbedRunbooks plugin) from runbooks/*.lua.
  /// The shipped runbooks, for BeltRuntime's `Runbooks`.
  package enum RunbookSources {
    /// File name -> Lua source.
    package static let files: [String: String] = [

  """
for path in args.dropFirst() {
  let name = URL(fileURLWithPath: path).lastPathComponent
  guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
    FileHandle.standardError.write(Data("GenRunbooks: \(path): cannot be read as UTF-8\n".utf8))
    exit(1)
  }
  guard !name.contains("\""), !name.contains("\\") else {
    FileHandle.standardError.write(
      Data("GenRunbooks: \(path): a runbook's file name must not hold a quote or backslash\n".utf8))
    exit(1)
  }
  let hashes = rawDelimiter(for: text)
  // A multi-line literal drops the line break before its closing delimiter: add one, so the
  // text comes back byte for byte.
  out += "    \"\(name)\": \(hashes)\"\"\"\n\(text)\n\"\"\"\(hashes),\n"
}
out += "  ]\n}\n"

// Rewrite only when the text changes, so an unchanged runbook set does not recompile BeltRuntime.
let existing = try? String(contentsOfFile: output, encoding: .utf8)
if existing != out {
  do {
    try out.write(toFile: output, atomically: true, encoding: .utf8)
  } catch {
    FileHandle.standardError.write(Data("GenRunbooks: \(output): \(error)\n".utf8))
    exit(1)
  }
}
