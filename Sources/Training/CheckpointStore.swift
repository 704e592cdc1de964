import Crypto
import Data
import Foundation
import Kernels

/// A checkpoint that cannot be written, read or trusted; names the file and what to do.
public struct CheckpointError: Error, LocalizedError, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    /// One line: names quoted from a damaged manifest may hold line breaks, which are shown escaped.
    public var description: String { "\(path): \(message)".escapingLineBreaks }
    public var errorDescription: String? { description }
}

/// One committed checkpoint directory, `<run>/checkpoints/step-00000120`.
public struct Checkpoint: Equatable, Sendable {
    public var step: Int
    /// Absolute or run-relative path of the directory.
    public var path: String
    public var name: String { (path as NSString).lastPathComponent }
}

/// The verified contents of a checkpoint's `trainer_state.json`.
public struct CheckpointManifest: Equatable, Sendable {
    public struct File: Equatable, Sendable {
        public var name: String
        public var size: Int
        /// Lowercase hex SHA-256 of the file's bytes.
        public var sha256: String
    }
    public var step: Int
    /// Every other file of the checkpoint, sorted by name.
    public var files: [File]
    /// What the trainer stored (step, consumed samples, RNG positions, ...), see `decodeState`.
    public var state: JSONValue
    /// The `trainer_state.json` this was read from, for messages.
    public var path = ""

    /// The trainer's state decoded into its own type; a state of other keys or types (a manifest of
    /// another version) is a `CheckpointError` naming the manifest.
    public func decodeState<State: Decodable>(_ type: State.Type) throws -> State {
        do {
            return try JSONDecoder().decode(State.self, from: Data(state.compactText().utf8))
        } catch let error as DecodingError {
            throw CheckpointError(path: path, message: "its trainer state is unreadable (\(error.summary)); the "
                + "checkpoint was written by another SwiftBERT version, resume from a checkpoint of this one")
        }
    }
}

/// The file mechanics of checkpoints: atomic commit, verification, listing, retention.
///
/// Commit protocol, so that a crash or a full disk at any point leaves either the new checkpoint
/// complete or no trace of it (and the previous checkpoints untouched):
/// 1. the caller writes its files into `<run>/checkpoints/.tmp-step-<N>-<pid>/`;
/// 2. every file is fsynced and hashed (SHA-256, streamed);
/// 3. `trainer_state.json`, listing each file's size and hash plus the trainer's state, is written last
///    and fsynced, then the directory itself;
/// 4. the directory is renamed to `step-<N>` (zero-padded) and the parent fsynced;
/// 5. the `latest` pointer is replaced atomically (`latest.tmp`, fsync, rename).
///
/// A directory whose manifest is missing or does not match its files does not exist for resume:
/// `newestVerified()` skips it and reports why.
public final class CheckpointStore {
    /// `<run>/checkpoints`.
    public let directory: String
    /// Checkpoints kept by `prune()`: the newest `keepLast`, plus every step that is a multiple of
    /// `keepEvery` (0: none). Applied after each successful commit.
    public var keepLast: Int
    public var keepEvery: Int

    public static let manifestName = "trainer_state.json"
    public static let latestName = "latest"
    static let formatName = "swiftbert-checkpoint"
    static let formatVersion = 1

    /// Opens (creating if needed) `<runDirectory>/checkpoints`.
    /// A checkpoint `prune()` keeps whatever the policy says: the best one by the validation metric.
    public var protectedStep: Int?

    /// `best` in the run directory: a symbolic link to the best checkpoint.
    public var bestPath: String { (directory as NSString).deletingLastPathComponent + "/best" }

    /// Points `best` at the checkpoint of `step` (a relative symbolic link, replaced atomically).
    public func pointBest(to step: Int) throws {
        let temporary = bestPath + ".tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: temporary)
        guard symlink("checkpoints/" + CheckpointStore.directoryName(step: step), temporary) == 0 else {
            throw CheckpointStore.posixError(temporary, "cannot create the link to the best checkpoint")
        }
        try CheckpointStore.renameItem(temporary, to: bestPath)
    }

    public init(runDirectory: String, keepLast: Int = 3, keepEvery: Int = 0) throws {
        precondition(keepLast >= 1, "the newest checkpoint is always kept")
        directory = runDirectory + "/checkpoints"
        self.keepLast = keepLast
        self.keepEvery = keepEvery
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(path: directory, message: "cannot create the checkpoint directory "
                + "(\(error.localizedDescription)); check the run directory and its permissions")
        }
    }

    /// `step-00000120`: eight digits keep names sorted up to 10^8 steps; longer steps still parse.
    public static func directoryName(step: Int) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    // MARK: - Commit

    /// Writes checkpoint `step`: `write` receives the temporary directory to put the files in (flat, no
    /// subdirectories; the name `trainer_state.json` is reserved), `state` goes into the manifest.
    /// On any failure the temporary directory is removed, earlier checkpoints are untouched and the
    /// error names the path. After the commit, `prune()` applies the retention policy.
    @discardableResult
    public func commit<State: Encodable>(step: Int, state: State, write: (_ directory: String) throws -> Void) throws
        -> Checkpoint {
        precondition(step >= 0, "checkpoint steps are not negative")
        let stateJSON: JSONValue
        do {
            // Sorted keys: the same state gives the same manifest bytes in every process.
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            stateJSON = try JSONValue.parse(String(decoding: encoder.encode(state), as: UTF8.self))
        } catch {
            throw CheckpointError(path: directory, message: "cannot encode the trainer state: \(error)")
        }
        let name = CheckpointStore.directoryName(step: step)
        let temporary = directory + "/.tmp-\(name)-\(getpid())"
        let final = directory + "/" + name
        try? FileManager.default.removeItem(atPath: temporary)
        do {
            try CheckpointStore.makeDirectory(temporary)
            do {
                try write(temporary)
            } catch {
                // Errors of other modules name their file in their description; keep it whole.
                let reason = (error as? LocalizedError)?.errorDescription ?? "\(error)"
                throw CheckpointError(path: temporary, message: "writing checkpoint step \(step) failed: \(reason)")
            }
            let names = try CheckpointStore.entries(of: temporary)
            for fileName in names {
                let path = temporary + "/" + fileName
                guard fileName != CheckpointStore.manifestName else {
                    throw CheckpointError(path: path, message: "\(CheckpointStore.manifestName) is written by the store")
                }
                guard CheckpointStore.isRegularFile(path) else {
                    throw CheckpointError(path: path, message: "checkpoints hold plain files only")
                }
            }
            let files = try CheckpointStore.seal(names.map { temporary + "/" + $0 })
            let manifest = CheckpointManifest(step: step, files: files, state: stateJSON)
            try CheckpointStore.writeFile(Data(CheckpointStore.manifestJSON(manifest).prettyText().utf8),
                                          to: temporary + "/" + CheckpointStore.manifestName)
            try CheckpointStore.fsyncDirectory(temporary)

            // Re-committing a step (a run resumed before it): move the old one aside first, since
            // rename(2) does not replace a non-empty directory.
            var replaced: String?
            if FileManager.default.fileExists(atPath: final) {
                replaced = directory + "/.tmp-replaced-\(name)-\(getpid())"
                try CheckpointStore.renameItem(final, to: replaced!)
            }
            try CheckpointStore.renameItem(temporary, to: final)
            try CheckpointStore.fsyncDirectory(directory)
            if let replaced { try? FileManager.default.removeItem(atPath: replaced) }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            if let error = error as? CheckpointError { throw error }
            throw CheckpointError(path: temporary, message: (error as? LocalizedError)?.errorDescription ?? "\(error)")
        }

        // The checkpoint is committed; the pointer and retention are conveniences on top of it.
        let pointer = directory + "/" + CheckpointStore.latestName
        do {
            try CheckpointStore.writeFile(Data((name + "\n").utf8), to: pointer + ".tmp")
            try CheckpointStore.renameItem(pointer + ".tmp", to: pointer)
            try CheckpointStore.fsyncDirectory(directory)
        } catch {
            throw CheckpointError(path: pointer, message: "checkpoint \(name) is committed but the latest pointer "
                + "was not updated (\(error)); resume still finds the checkpoint")
        }
        do {
            try prune()
        } catch let error as CheckpointError {
            throw CheckpointError(path: error.path, message: "checkpoint \(name) is committed, but retention failed: "
                + error.message)
        }
        return Checkpoint(step: step, path: final)
    }

    // MARK: - Reading

    /// Committed checkpoint directories, newest (highest step) first, verified or not.
    public func list() -> [Checkpoint] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name -> Checkpoint? in
            guard name.hasPrefix("step-"), let step = Int(name.dropFirst(5)), step >= 0,
                  CheckpointStore.isDirectory(directory + "/" + name) else { return nil }
            return Checkpoint(step: step, path: directory + "/" + name)
        }.sorted { $0.step > $1.step }
    }

    /// The checkpoint the `latest` pointer names, if the pointer and the directory exist.
    public func latest() -> Checkpoint? {
        guard let text = try? String(contentsOfFile: directory + "/" + CheckpointStore.latestName, encoding: .utf8)
        else { return nil }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return list().first { $0.name == name }
    }

    /// The newest checkpoint that verifies, and the newer ones that did not, with the reason.
    public func newestVerified() -> (checkpoint: Checkpoint?, manifest: CheckpointManifest?,
                                     rejected: [(checkpoint: Checkpoint, error: Error)]) {
        var rejected: [(checkpoint: Checkpoint, error: Error)] = []
        for checkpoint in list() {
            do {
                let manifest = try CheckpointStore.verify(checkpoint.path)
                return (checkpoint, manifest, rejected)
            } catch {
                rejected.append((checkpoint, error))
            }
        }
        return (nil, nil, rejected)
    }

    /// Checks a checkpoint directory against its manifest: every listed file present, of the listed
    /// size and SHA-256. Throws for the first file that is not, naming it.
    @discardableResult
    public static func verify(_ path: String) throws -> CheckpointManifest {
        let manifestPath = path + "/" + manifestName
        guard let data = FileManager.default.contents(atPath: manifestPath) else {
            throw CheckpointError(path: manifestPath, message: "missing: the checkpoint was not completely written; "
                + "delete it or resume from an older one")
        }
        let manifest = try parseManifest(data, path: manifestPath)
        for file in manifest.files {
            let filePath = path + "/" + file.name
            guard FileManager.default.fileExists(atPath: filePath) else {
                throw CheckpointError(path: filePath, message: "listed in \(manifestName) but missing; the checkpoint is "
                    + "damaged, resume from an older one")
            }
            let (size, digest) = try sha256(ofFile: filePath, fsync: false)
            if size != file.size {
                throw CheckpointError(path: filePath, message: "\(size) bytes, \(manifestName) says \(file.size) "
                    + "(truncated or changed); the checkpoint is damaged, resume from an older one")
            }
            if digest != file.sha256 {
                throw CheckpointError(path: filePath, message: "SHA-256 \(digest) does not match \(file.sha256) in "
                    + "\(manifestName); the checkpoint is damaged, resume from an older one")
            }
        }
        return manifest
    }

    // MARK: - Maintenance

    /// Removes `.tmp-*` leftovers of commits or deletions interrupted by a crash; call once at start,
    /// before any commit. Returns the removed paths.
    @discardableResult
    public func removeStaleTemporaries() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var removed: [String] = []
        for name in names.sorted() where name.hasPrefix(".tmp-") || name == CheckpointStore.latestName + ".tmp" {
            let path = directory + "/" + name
            if (try? FileManager.default.removeItem(atPath: path)) != nil { removed.append(path) }
        }
        return removed
    }

    /// Deletes checkpoints outside the retention policy (see `keepLast`, `keepEvery`). The newest
    /// checkpoint is never deleted, so nothing is deleted until a newer one is committed. A deleted
    /// directory is first renamed to `.tmp-delete-*`, so a crash mid-deletion never leaves a
    /// half-deleted `step-*` directory. Returns the deleted checkpoints.
    @discardableResult
    public func prune() throws -> [Checkpoint] {
        let all = list()
        var deleted: [Checkpoint] = []
        for (index, checkpoint) in all.enumerated() {
            let kept = index < keepLast || (keepEvery > 0 && checkpoint.step % keepEvery == 0)
                || checkpoint.step == protectedStep
            if kept { continue }
            let doomed = directory + "/.tmp-delete-\(checkpoint.name)-\(getpid())"
            try CheckpointStore.renameItem(checkpoint.path, to: doomed)
            do {
                try FileManager.default.removeItem(atPath: doomed)
            } catch {
                throw CheckpointError(path: doomed, message: "cannot delete an old checkpoint: \(error.localizedDescription)")
            }
            deleted.append(checkpoint)
        }
        if !deleted.isEmpty { try CheckpointStore.fsyncDirectory(directory) }
        return deleted
    }

    // MARK: - File helpers

    /// Writes `data` to `path` (created or truncated) and fsyncs it. Errors (ENOSPC, EACCES, ...)
    /// name the path.
    public static func writeFile(_ data: Data, to path: String) throws {
        try data.withUnsafeBytes { try writeFile(bytes: $0, to: path) }
    }

    /// Writes raw bytes to `path` (created or truncated) and fsyncs it.
    public static func writeFile(bytes: UnsafeRawBufferPointer, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw posixError(path, "cannot create") }
        defer { closeDescriptor(fd) }
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, min(bytes.count - offset, 8 << 20))
            if written < 0 {
                if errno == EINTR { continue }
                throw posixError(path, "write failed")
            }
            offset += written
        }
        guard fsync(fd) == 0 else { throw posixError(path, "fsync failed") }
    }

    /// Size and SHA-256 (lowercase hex) of a file, read in 4 MiB chunks so files of any size hash in
    /// constant memory; with `fsync`, the file is also flushed to disk.
    public static func sha256(ofFile path: String, fsync flush: Bool) throws -> (size: Int, sha256: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError(path, "cannot open") }
        defer { closeDescriptor(fd) }
        if flush, fsync(fd) != 0 { throw posixError(path, "fsync failed") }
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        var size = 0
        while true {
            let count = read(fd, buffer.baseAddress!, chunk)
            if count < 0 {
                if errno == EINTR { continue }
                throw posixError(path, "read failed")
            }
            if count == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<count]))
            size += count
        }
        return (size, hasher.finalize().map { String(format: "%02x", $0) }.joined())
    }

    /// Flushes the files to disk and hashes them. The flush (waiting for the disk) and the hashing
    /// (reading the still-cached bytes, CPU bound) run on two threads at once: a commit then takes
    /// about the longer of the two instead of their sum.
    static func seal(_ paths: [String]) throws -> [CheckpointManifest.File] {
        final class Results: @unchecked Sendable {
            var files: [CheckpointManifest.File] = []
            var errors: [Error] = []
        }
        let flushed = Results(), hashed = Results()
        DispatchQueue.concurrentPerform(iterations: 2) { part in
            for path in paths {
                do {
                    if part == 0 {
                        try fsyncFile(path)
                    } else {
                        let (size, digest) = try sha256(ofFile: path, fsync: false)
                        hashed.files.append(.init(name: (path as NSString).lastPathComponent, size: size, sha256: digest))
                    }
                } catch {
                    (part == 0 ? flushed : hashed).errors.append(error)
                    return
                }
            }
        }
        if let error = flushed.errors.first ?? hashed.errors.first { throw error }
        return hashed.files
    }

    static func fsyncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError(path, "cannot open") }
        defer { closeDescriptor(fd) }
        guard fsync(fd) == 0 else { throw posixError(path, "fsync failed") }
    }

    static func posixError(_ path: String, _ what: String) -> CheckpointError {
        let code = errno
        var hint = ""
        if code == ENOSPC || code == EDQUOT { hint = "; free disk space or lower checkpoint.keep_last" }
        if code == EACCES || code == EPERM || code == EROFS { hint = "; check the permissions of the run directory" }
        return CheckpointError(path: path, message: "\(what): \(String(cString: strerror(code)))\(hint)")
    }

    static func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 else { throw posixError(path, "cannot create directory") }
    }

    static func renameItem(_ from: String, to: String) throws {
        guard rename(from, to) == 0 else { throw posixError(from, "cannot rename to \(to)") }
    }

    /// Makes a directory's entries (new names, renames) durable.
    static func fsyncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError(path, "cannot open directory") }
        defer { closeDescriptor(fd) }
        guard fsync(fd) == 0 else { throw posixError(path, "fsync of the directory failed") }
    }

    static func entries(of path: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw CheckpointError(path: path, message: "cannot list: \(error.localizedDescription)")
        }
    }

    static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    // MARK: - Manifest format

    /// The manifest JSON. `manifest_sha256` covers the canonical text of every other member, so a
    /// damaged manifest (a changed trainer state, a changed file hash) is caught like a damaged file.
    static func manifestJSON(_ manifest: CheckpointManifest) -> JSONValue {
        let members: [(key: String, value: JSONValue)] = [
            ("format", .string(formatName)),
            ("version", .integer(formatVersion)),
            ("step", .integer(manifest.step)),
            ("files", .object(manifest.files.map { file in
                (file.name, .object([("size", .integer(file.size)), ("sha256", .string(file.sha256))]))
            })),
            ("state", manifest.state),
        ]
        return .object(members + [("manifest_sha256", .string(canonicalDigest(members)))])
    }

    static func canonicalDigest(_ members: [(key: String, value: JSONValue)]) -> String {
        let text = JSONValue.object(members).compactText(sortedKeys: true)
        return SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func parseManifest(_ data: Data, path: String) throws -> CheckpointManifest {
        func bad(_ what: String) -> CheckpointError {
            CheckpointError(path: path, message: "\(what); the checkpoint is damaged, resume from an older one")
        }
        let root: JSONValue
        do {
            root = try JSONValue.parse(String(decoding: data, as: UTF8.self))
        } catch {
            throw bad("not valid JSON (\(error))")
        }
        guard root["format"] == .string(formatName), case let .object(members) = root else {
            throw bad("not a SwiftBERT checkpoint manifest")
        }
        guard case let .string(recorded)? = root["manifest_sha256"],
              recorded == canonicalDigest(members.filter { $0.key != "manifest_sha256" }) else {
            throw bad("its manifest_sha256 does not match its contents")
        }
        guard case let .number(version)? = root["version"], Int(version) == formatVersion else {
            throw CheckpointError(path: path, message: "manifest version \(root["version"]?.compactText() ?? "?") is not "
                + "\(formatVersion); this checkpoint was written by another SwiftBERT version")
        }
        guard case let .number(stepText)? = root["step"], let step = Int(stepText) else { throw bad("no step") }
        guard case let .object(entries)? = root["files"] else { throw bad("no file list") }
        var files: [CheckpointManifest.File] = []
        for (name, entry) in entries {
            guard case let .number(sizeText)? = entry["size"], let size = Int(sizeText),
                  case let .string(digest)? = entry["sha256"], digest.count == 64,
                  !name.isEmpty, !name.contains("/"), name != "." && name != ".." else { throw bad("bad entry for \"\(name)\"") }
            files.append(.init(name: name, size: size, sha256: digest))
        }
        return CheckpointManifest(step: step, files: files, state: root["state"] ?? .null, path: path)
    }
}
