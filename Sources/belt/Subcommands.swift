import ArgumentParser

/// Every subcommand, in the seed's order, then belt's own.
let allSubcommands: [any ParsableCommand.Type] = [
  Connections.self, SrcDsn.self, DstDsn.self, CheckPkeys.self, CheckConnectivity.self,
  Precheck.self, Run.self, Repl.self,
]
