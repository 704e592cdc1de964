import Foundation
import Training
import XCTest

final class CheckpointStoreTests: XCTestCase {
    private struct State: Codable, Equatable {
        var step: Int
        var consumedSamples: Int
        var seed: UInt64
    }

    /// Files of a small checkpoint: a few MiB of pseudo-random bytes (several hashing chunks) and text.
    private func writeFiles(step: Int) -> (String) throws -> Void {
        { directory in
            var bytes = [UInt8](repeating: 0, count: 5 << 20 | 12_345)
            var x = UInt64(step) &+ 0x9E37_79B9_7F4A_7C15
            for i in bytes.indices {
                x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                bytes[i] = UInt8(truncatingIfNeeded: x >> 56)
            }
            try CheckpointStore.writeFile(Data(bytes), to: directory + "/model.safetensors")
            try CheckpointStore.writeFile(Data("{\"hidden_size\": 64}\n".utf8), to: directory + "/config.json")
            try CheckpointStore.writeFile(Data(), to: directory + "/empty.txt")
        }
    }

    @discardableResult
    private func commit(_ store: CheckpointStore, step: Int) throws -> Checkpoint {
        try store.commit(step: step, state: State(step: step, consumedSamples: step * 32, seed: .max),
                         write: writeFiles(step: step))
    }

    /// SHA-256 by coreutils, independent of the implementation under test.
    private func sha256sum(_ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return String(output.prefix(64))
    }

    private func entries(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    private func flipByte(_ path: String, at offset: Int) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        let byte = try XCTUnwrap(handle.readData(ofLength: 1).first)
        try handle.seek(toOffset: UInt64(offset))
        handle.write(Data([byte ^ 0x01]))
    }

    func testCommitWritesAVerifiedCheckpointAndTheLatestPointer() throws {
        let run = try makeTemporaryDirectory(self)
        let store = try CheckpointStore(runDirectory: run)
        let checkpoint = try commit(store, step: 120)
        XCTAssertEqual(checkpoint.name, "step-00000120")
        XCTAssertEqual(checkpoint.path, run + "/checkpoints/step-00000120")
        XCTAssertEqual(entries(run + "/checkpoints"), ["latest", "step-00000120"])
        XCTAssertEqual(entries(checkpoint.path), ["config.json", "empty.txt", "model.safetensors", "trainer_state.json"])
        XCTAssertEqual(try String(contentsOfFile: run + "/checkpoints/latest", encoding: .utf8), "step-00000120\n")
        XCTAssertEqual(store.latest(), checkpoint)

        let manifest = try CheckpointStore.verify(checkpoint.path)
        XCTAssertEqual(manifest.step, 120)
        XCTAssertEqual(manifest.files.map(\.name), ["config.json", "empty.txt", "model.safetensors"])
        for file in manifest.files {
            let path = checkpoint.path + "/" + file.name
            XCTAssertEqual(file.sha256, try sha256sum(path), file.name)
            XCTAssertEqual(file.size, try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        }
        XCTAssertEqual(try manifest.decodeState(State.self), State(step: 120, consumedSamples: 3840, seed: .max))
        XCTAssertEqual(store.newestVerified().checkpoint, checkpoint)
    }

    func testFlippedByteInEveryFileIsDetectedAndNamed() throws {
        let run = try makeTemporaryDirectory(self)
        let store = try CheckpointStore(runDirectory: run)
        let checkpoint = try commit(store, step: 7)
        for name in ["config.json", "model.safetensors"] {
            let path = checkpoint.path + "/" + name
            let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
            for offset in [0, size / 2, size - 1] {
                try flipByte(path, at: offset)
                XCTAssertThrowsError(try CheckpointStore.verify(checkpoint.path)) {
                    XCTAssertEqual(($0 as? CheckpointError)?.path, path)
                    XCTAssertTrue("\($0)".contains("SHA-256"), "\($0)")
                }
                try flipByte(path, at: offset)
                XCTAssertNoThrow(try CheckpointStore.verify(checkpoint.path))
            }
        }
        // The manifest checks itself: any changed byte (state, hashes, sizes, syntax) is caught.
        let manifestPath = checkpoint.path + "/trainer_state.json"
        let manifestSize = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: manifestPath)[.size] as? Int)
        for offset in 0..<manifestSize {
            try flipByte(manifestPath, at: offset)
            XCTAssertThrowsError(try CheckpointStore.verify(checkpoint.path), "byte \(offset) of the manifest") {
                XCTAssertEqual(($0 as? CheckpointError)?.path, manifestPath, "\($0)")
            }
            try flipByte(manifestPath, at: offset)
        }
        XCTAssertNoThrow(try CheckpointStore.verify(checkpoint.path))
    }

    func testTruncatedAndMissingFilesAreDetected() throws {
        let run = try makeTemporaryDirectory(self)
        let store = try CheckpointStore(runDirectory: run)
        let checkpoint = try commit(store, step: 3)
        let model = checkpoint.path + "/model.safetensors"
        XCTAssertEqual(truncate(model, 1000), 0)
        XCTAssertThrowsError(try CheckpointStore.verify(checkpoint.path)) {
            XCTAssertEqual(($0 as? CheckpointError)?.path, model)
            XCTAssertTrue("\($0)".contains("1000 bytes"), "\($0)")
        }
        try FileManager.default.removeItem(atPath: checkpoint.path + "/config.json")
        XCTAssertThrowsError(try CheckpointStore.verify(checkpoint.path)) {
            XCTAssertEqual(($0 as? CheckpointError)?.path, checkpoint.path + "/config.json")
            XCTAssertTrue("\($0)".contains("missing"), "\($0)")
        }
    }

    func testCheckpointWithoutManifestDoesNotExistForResume() throws {
        let run = try makeTemporaryDirectory(self)
        let store = try CheckpointStore(runDirectory: run, keepLast: 5)
        let older = try commit(store, step: 100)
        let newer = try commit(store, step: 200)
        try FileManager.default.removeItem(atPath: newer.path + "/trainer_state.json")
        let found = store.newestVerified()
        XCTAssertEqual(found.checkpoint, older)
        XCTAssertEqual(found.manifest?.step, 100)
        XCTAssertEqual(found.rejected.map(\.checkpoint), [newer])
        XCTAssertTrue("\(found.rejected[0].error)".contains("trainer_state.json: missing"), "\(found.rejected[0].error)")
    }

    func testStaleTemporaryDirectoriesAreIgnoredAndRemoved() throws {
        let run = try makeTemporaryDirectory(self)
        let store = try CheckpointStore(runDirectory: run)
        let committed = try commit(store, step: 10)
        // A commit interrupted by a crash: files written, no manifest, never renamed.
        let stale = run + "/checkpoints/.tmp-step-00000020-99999"
        try FileManager.default.createDirectory(atPath: stale, withIntermediateDirectories: false)
        try writeFiles(step: 20)(stale)
        try CheckpointStore.writeFile(Data("x".utf8), to: run + "/checkpoints/latest.tmp")
        XCTAssertEqual(store.list(), [committed])
        XCTAssertEqual(store.newestVerified().checkpoint, committed)
        XCTAssertEqual(store.removeStaleTemporaries(), [stale, run + "/checkpoints/latest.tmp"])
        XCTAssertEqual(entries(run + "/checkpoints"), ["latest", "step-00000010"])
    }

    func testRetentionKeepsTheLastAndEveryMthCheckpoint() throws {
        let run = try makeTemporaryDirectory(self)
        let store = try CheckpointStore(runDirectory: run, keepLast: 2, keepEvery: 100)
        var expected: [[Int]] = [[50], [100, 50], [150, 100], [200, 150, 100], [250, 200, 100], [300, 250, 200, 100]]
        for step in [50, 100, 150, 200, 250, 300] {
            try commit(store, step: step)
            XCTAssertEqual(store.list().map(\.step), expected.removeFirst(), "after committing \(step)")
            XCTAssertEqual(store.latest()?.step, step)
        }
        XCTAssertFalse(entries(run + "/checkpoints").contains { $0.hasPrefix(".tmp") })
        for checkpoint in store.list() { XCTAssertNoThrow(try CheckpointStore.verify(checkpoint.path)) }
    }

    func testFullDiskLeavesThePreviousCheckpointIntact() throws {
        let run = try makeTemporaryDirectory(self)
        let store = try CheckpointStore(runDirectory: run)
        let previous = try commit(store, step: 10)
        // Writes through a link to /dev/full fail with ENOSPC, like a full disk.
        var failedPath = ""
        XCTAssertThrowsError(try store.commit(step: 20, state: State(step: 20, consumedSamples: 0, seed: 1)) { directory in
            try self.writeFiles(step: 20)(directory)
            failedPath = directory + "/optimizer.safetensors"
            try FileManager.default.createSymbolicLink(atPath: failedPath, withDestinationPath: "/dev/full")
            try CheckpointStore.writeFile(Data(repeating: 1, count: 1 << 20), to: failedPath)
        }) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(failedPath), text)
            XCTAssertTrue(text.contains("No space left on device"), text)
            XCTAssertTrue(text.contains("free disk space"), text)
        }
        XCTAssertEqual(entries(run + "/checkpoints"), ["latest", "step-00000010"], "the temporary directory must be gone")
        XCTAssertEqual(store.latest(), previous)
        XCTAssertNoThrow(try CheckpointStore.verify(previous.path))
    }

    func testWriterErrorsAndNestedDirectoriesAbortTheCommit() throws {
        struct Failure: Error {}
        let run = try makeTemporaryDirectory(self)
        let store = try CheckpointStore(runDirectory: run)
        XCTAssertThrowsError(try store.commit(step: 1, state: [String: Int]()) { _ in throw Failure() }) {
            XCTAssertTrue("\($0)".contains("writing checkpoint step 1 failed"), "\($0)")
        }
        XCTAssertThrowsError(try store.commit(step: 2, state: [String: Int]()) { directory in
            try FileManager.default.createDirectory(atPath: directory + "/nested", withIntermediateDirectories: false)
        }) { XCTAssertTrue("\($0)".contains("plain files only"), "\($0)") }
        XCTAssertEqual(entries(run + "/checkpoints"), [])
        XCTAssertNil(store.newestVerified().checkpoint)
    }

    func testRecommittingAStepReplacesIt() throws {
        let run = try makeTemporaryDirectory(self)
        let store = try CheckpointStore(runDirectory: run)
        try commit(store, step: 5)
        let again = try store.commit(step: 5, state: State(step: 5, consumedSamples: 999, seed: 2), write: writeFiles(step: 6))
        XCTAssertEqual(try CheckpointStore.verify(again.path).decodeState(State.self).consumedSamples, 999)
        XCTAssertEqual(entries(run + "/checkpoints"), ["latest", "step-00000005"])
    }
}
