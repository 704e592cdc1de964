import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Puts a finished `temporary` directory at `target`: renamed into place, or, when `target` exists,
/// swapped with it and the old one removed, so a reader never sees a half-written directory.
/// `failure(path, reason)` makes the caller's error.
func moveDirectoryIntoPlace(_ temporary: URL, at target: URL, failure: (String, String) -> Error) throws {
    let manager = FileManager.default
    if manager.fileExists(atPath: target.path) {
        let old = target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).old-\(getpid())")
        do {
            try manager.moveItem(at: target, to: old)
            try manager.moveItem(at: temporary, to: target)
        } catch {
            throw failure(target.path, "cannot replace it (\(error.localizedDescription))")
        }
        try? manager.removeItem(at: old)
    } else {
        guard rename(temporary.path, target.path) == 0 else {
            throw failure(target.path, String(cString: strerror(errno)))
        }
    }
}
