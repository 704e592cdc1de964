import ArgumentParser
import Kernels

@main
struct SwiftBERT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftbert",
        abstract: "Data-parallel BERT pre-training over MPI, with OpenBLAS.",
        subcommands: [Doctor.self, Config.self, Train.self, Bench.self, FillMask.self, Embed.self, Generate.self, Prepare.self, Inspect.self, Export.self, Merge.self, Tokenize.self, Vocab.self, Evaluate.self, Predict.self])

    static func main() {
        BLASKernelSelection.ensureBestKernel()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
