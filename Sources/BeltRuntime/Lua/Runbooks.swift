import BeltRunbooks
import Foundation

/// The shipped runbooks, embedded at build time (the EmbedRunbooks plugin, from runbooks/*.lua).
public enum Runbooks {
  /// The names of every shipped runbook (without the prelude).
  public static var names: [String] {
    RunbookSources.files.keys.filter { !$0.hasPrefix("_") }.sorted()
  }

  /// The source of a shipped runbook by file name (`status.lua`) or bare name (`status`).
  public static func source(named name: String) -> String? {
    RunbookSources.files[name] ?? RunbookSources.files[name + ".lua"]
  }
}
