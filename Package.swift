// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
  .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
  name: "belt",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "belt", targets: ["belt"])
  ],
  dependencies: [
    // Pinned to 1.8.x: Sources/belt builds each command's options at run time and relies on how
    // ArgumentParser finds property wrappers (a Mirror of `Self()`), which is not its API.
    .package(url: "https://github.com/apple/swift-argument-parser", .upToNextMinor(from: "1.8.2")),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
  ],
  targets: [
    .systemLibrary(name: "CLua", pkgConfig: "lua5.4", providers: [.apt(["liblua5.4-dev"])]),
    .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
    .systemLibrary(name: "CLineEdit", pkgConfig: "libedit", providers: [.apt(["libedit-dev"])]),
    // Ctrl-C and the libpq cancel registry, for Postgres/, Operations/ and Commands/ without Lua.
    .target(name: "CSignals", dependencies: ["CLibPQ"]),
    // The commit for `belt --version`: `make dist` defines it (-Xcc -DBELT_BUILD_COMMIT=...).
    .target(name: "CBuildInfo"),
    .target(name: "CLuaShim", dependencies: ["CLua", "CSignals"]),
    .target(
      name: "BeltRuntime",
      dependencies: [
        "BeltRunbooks", "CBuildInfo", "CLua", "CLibPQ", "CLuaShim", "CSignals", "CLineEdit",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "OrderedCollections", package: "swift-collections"),
      ],
      swiftSettings: swiftSettings
    ),
    // runbooks/*.lua -> RunbookSources.swift at build time (nothing generated is committed).
    // runbooks/ is a target so that an added or removed runbook makes SwiftPM run the plugin.
    .target(name: "BeltRunbooks", path: "runbooks", exclude: ["belt.meta.lua"], plugins: ["EmbedRunbooks"]),
    .executableTarget(name: "GenRunbooks", swiftSettings: swiftSettings),
    .plugin(name: "EmbedRunbooks", capability: .buildTool(), dependencies: ["GenRunbooks"]),
    .executableTarget(
      name: "belt",
      dependencies: [
        "BeltRuntime",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "BeltLuaTests", dependencies: ["BeltRuntime", "BeltRunbooks", "CLua", "CSignals"],
      swiftSettings: swiftSettings),
    .testTarget(
      name: "BeltRuntimeTests", dependencies: ["BeltRuntime", "CLibPQ"], swiftSettings: swiftSettings),
    .testTarget(
      name: "IntegrationTests", dependencies: ["BeltRuntime", "CSignals"], swiftSettings: swiftSettings),
  ]
)
