import Foundation

/// Atomic file replacement: temp file in the same directory, fsync, rename, fsync of the
/// directory. A crash at any point leaves either the old file or the new one, never a mix.
public enum AtomicFile {
  /// Test hook: return true to simulate a crash between writing the temp file and renaming it.
  nonisolated(unsafe) static var faultBeforeRename: (() -> Bool)?

  /// Writes `contents` to `file`. The mode is `mode` if given, else the existing file's mode,
  /// else 0600.
  /// - Throws: ``BeltError`` `io_error` naming the file; the old file is unchanged.
  public static func write(_ contents: String, to file: String, mode: mode_t? = nil) throws {
    let dir = (file as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var st = stat()
    let keep: mode_t? = stat(file, &st) == 0 ? st.st_mode & 0o7777 : nil
    let m = mode ?? keep ?? 0o600
    let name = (file as NSString).lastPathComponent
    let tmp = "\(dir)/.\(name).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, m)
    guard fd >= 0 else {
      throw BeltError(.ioError, "\(file): cannot create a temporary file in \(dir)")
    }
    var ok = true
    Array(contents.utf8).withUnsafeBytes { buf in
      var off = 0
      while off < buf.count {
        let w = Foundation.write(fd, buf.baseAddress.map { $0 + off }, buf.count - off)
        if w <= 0 {
          ok = false
          break
        }
        off += w
      }
    }
    if fchmod(fd, m) != 0 || fsync(fd) != 0 { ok = false }
    close(fd)
    if let inject = faultBeforeRename, inject() { ok = false }
    guard ok, rename(tmp, file) == 0 else {
      unlink(tmp)
      throw BeltError(.ioError, "\(file): could not be written; the old file is unchanged")
    }
    let dfd = open(dir, O_RDONLY)
    if dfd >= 0 {
      _ = fsync(dfd)
      close(dfd)
    }
  }
}
