import Foundation
import XCTest

/// `swiftbert config`: the key documentation and resolved configurations, as a user runs it.
final class ConfigCommandTests: XCTestCase {
    func testKeysPrintTheCommittedDocumentation() throws {
        let result = try Tool.swiftbert(["config", "--keys"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let committed = try String(contentsOfFile: Tool.root.appendingPathComponent("docs/configuration.md").path, encoding: .utf8)
        XCTAssertEqual(result.stdout, committed, "regenerate with swiftbert config --keys > docs/configuration.md")
    }

    func testConfigPrintsTheResolvedFileWithOverridesApplied() throws {
        let config = Tool.root.appendingPathComponent("configs/debug.json").path
        let result = try Tool.swiftbert(["config", "--config", config, "--set", "optimizer.learning_rate=5e-4"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let resolved = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let optimizer = try XCTUnwrap(resolved["optimizer"] as? [String: Any])
        XCTAssertEqual(optimizer["learning_rate"] as? Double, 5e-4)
        XCTAssertEqual(optimizer["beta2"] as? Double, 0.999, "a default is filled in")
        XCTAssertTrue(resolved["init_from"] is NSNull)
    }

    func testBadOverrideIsOneErrorNamingTheKeyAndNoOutput() throws {
        let config = Tool.root.appendingPathComponent("configs/debug.json").path
        let result = try Tool.swiftbert(["config", "--config", config, "--set", "optimizer.beta1=1"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertEqual(result.stdout, "")
        XCTAssertEqual(result.stderr, "error: override 'optimizer.beta1=1': optimizer.beta1: is 1; must be in [0, 1), typically 0.9\n")

        let both = try Tool.swiftbert(["config", "--keys", "--config", config])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("either --keys or --config FILE"), both.stderr)
    }
}
