import Foundation
import XCTest

/// Running the built `swiftbert` binary the way a user does, with a time limit so a hung job fails
/// the test instead of the whole run.
struct ToolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum Tool {
    /// The repository root, from this file's location.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The binary built next to the test bundle (same configuration), or `SWIFTBERT_BINARY`.
    static var binary: String {
        get throws {
            if let path = ProcessInfo.processInfo.environment["SWIFTBERT_BINARY"] { return path }
            var directory = Bundle.main.bundleURL
            for _ in 0..<3 {
                let candidate = directory.appendingPathComponent("swiftbert").path
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
                directory = directory.deletingLastPathComponent()
            }
            throw ToolError("swiftbert binary not found next to \(Bundle.main.bundleURL.path); build it first (launch/test.sh does) or set SWIFTBERT_BINARY")
        }
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
        let seconds: Double
        let timedOut: Bool
    }

    /// Runs `executable arguments` and waits at most `timeout` seconds (then kills its process group).
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        input: String? = nil, timeout: Double = 300
    ) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftbert-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // Files, not pipes: a chatty child can never block on a full pipe.
        let outURL = directory.appendingPathComponent("stdout"), errURL = directory.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        if let input {
            let inURL = directory.appendingPathComponent("stdin")
            try Data(input.utf8).write(to: inURL)
            process.standardInput = try FileHandle(forReadingFrom: inURL)
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        let start = Date()
        try process.run()
        let deadline = start.addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline {
                timedOut = true
                kill(-process.processIdentifier, SIGKILL)
                process.terminate()
                break
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
            seconds: Date().timeIntervalSince(start), timedOut: timedOut)
    }

    /// Runs `swiftbert arguments` standalone.
    static func swiftbert(_ arguments: [String], input: String? = nil, timeout: Double = 300) throws -> Result {
        try run(try binary, arguments, input: input, timeout: timeout)
    }

    /// Runs `swiftbert arguments` as `ranks` MPI processes on this machine.
    static func mpirun(ranks: Int, _ arguments: [String], timeout: Double = 300) throws -> Result {
        guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: FileManager.default.isExecutableFile) else {
            throw ToolError("mpirun not found: install openmpi-bin (launch/install.sh does)")
        }
        return try run(
            mpirun,
            ["--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)", try binary] + arguments,
            timeout: timeout)
    }
}
