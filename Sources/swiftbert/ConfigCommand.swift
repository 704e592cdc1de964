import ArgumentParser
import Foundation
import Training

/// `swiftbert config`: the configuration keys as documentation, or a config file as a run resolves it.
struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the configuration keys, or a configuration with every default filled in.",
        discussion: """
            --keys prints every key (type, default, accepted values, whether a resumed run may change it, \
            meaning) as Markdown: docs/configuration.md is its output. --config FILE prints the configuration \
            a run with that file (and --set overrides) uses, as the run directory's config.json holds it.

            Examples:
              swiftbert config --keys > docs/configuration.md
              swiftbert config --config configs/bert-mini.json --set optimizer.learning_rate=5e-4
            """)

    @Flag(help: "Print every configuration key as Markdown.")
    var keys = false

    @Option(help: "A run configuration (JSON) to print with every default filled in.")
    var config: String?

    @Option(name: .customLong("set"), help: "Override a configuration value, e.g. --set optimizer.learning_rate=5e-4 (repeatable).")
    var overrides: [String] = []

    func validate() throws {
        guard keys != (config != nil) else { throw ValidationError("give either --keys or --config FILE") }
        if keys && !overrides.isEmpty { throw ValidationError("--set applies to --config FILE, not to --keys") }
    }

    func run() throws {
        if keys {
            print(TrainingConfig.keyDocumentation, terminator: "")
        } else {
            print(try Train.loadConfiguration(config!, overrides: overrides).resolvedJSON(), terminator: "")
        }
    }
}
