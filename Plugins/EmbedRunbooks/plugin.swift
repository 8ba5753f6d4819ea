import PackagePlugin

/// Embeds the runbooks (*.lua in the folder of the target it is applied to, not the editor
/// definitions *.meta.lua) into that target as the generated RunbookSources.swift: the binary
/// carries its runbooks and works from any directory, and no generated Swift is committed.
/// The runbooks folder is a target of its own so that SwiftPM plans the build again (and calls
/// this plugin) when a runbook is added or removed; an edited runbook reruns GenRunbooks.
@main
struct EmbedRunbooks: BuildToolPlugin {
  func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
    guard let module = target.sourceModule else { return [] }
    let runbooks = module.sourceFiles(withSuffix: ".lua")
      .map(\.url)
      .filter { !$0.lastPathComponent.hasSuffix(".meta.lua") }
      .sorted { $0.lastPathComponent < $1.lastPathComponent }
    let output = context.pluginWorkDirectoryURL.appending(path: "RunbookSources.swift")
    return [
      .buildCommand(
        displayName: "Embedding \(runbooks.count) runbooks",
        executable: try context.tool(named: "GenRunbooks").url,
        arguments: [output.path] + runbooks.map(\.path),
        inputFiles: runbooks,
        outputFiles: [output])
    ]
  }
}
