// The BeltRunbooks target: this folder, so that SwiftPM plans the build again, and so runs the
// EmbedRunbooks plugin again, when a runbook is added or removed (it watches the folders of
// targets). The plugin adds RunbookSources.swift, generated from the *.lua files here at build
// time; BeltRuntime's `Runbooks` reads it. SwiftPM drops a target without a Swift file, hence
// this one.
