import CBuildInfo

/// What `belt --version` prints: the release and the commit belt was built from.
public enum BuildInfo {
  /// belt's release. `make dist` names the package after it (`belt_<version>_amd64.deb`).
  public static let version = "0.1.0"

  /// The commit belt was built from, injected by `make dist`; "unknown" for any other build.
  public static let commit = String(cString: belt_build_commit())

  /// `0.1.0 (commit 1a2b3c4d5e6f)`.
  public static var versionLine: String { "\(version) (commit \(commit))" }
}
