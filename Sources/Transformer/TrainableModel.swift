import Foundation

/// What the training engine needs of a model, whatever its architecture: the parameter table and the
/// flat parameter and gradient buffers it lays out, initialisation, Hugging Face directories in and
/// out, and the hooks of the benchmark and the debug mode. The forward and backward passes belong to
/// the task, which knows the model's inputs.
public protocol TrainableModel: AnyObject {
    var table: ParameterTable { get }
    /// Flat parameters, laid out by `table`.
    var parameters: UnsafeMutableBufferPointer<Float> { get }
    /// Flat gradients of the trainable parameters (`table.trainableRange`); backward adds into them.
    var gradients: UnsafeMutableBufferPointer<Float> { get }
    /// When set, passes add each op's wall-clock time to its class.
    var profile: OpProfile? { get set }
    /// Debug mode: called after each forward op with its name, its layer and its output.
    var forwardProbe: ((_ op: String, _ layer: Int?, _ output: UnsafeBufferPointer<Float>) -> Void)? { get set }
    /// Whether only an adapter trains on a frozen base (checkpoints then hold the adapter alone).
    var hasAdapter: Bool { get }

    func zeroGradients()
    /// The architecture's random initialisation, keyed by `seed` alone.
    func initializeParameters(seed: UInt64)
    /// Copies the tensors of a Hugging Face directory's weight files into `parameters`.
    func loadWeights(from files: [SafetensorsFile], initializationSeed: UInt64) throws -> PretrainedLoadReport
    /// Writes a Hugging Face model directory (config.json and model.safetensors).
    func savePretrained(to directory: String) throws
    /// Writes the model's config.json into `directory` (beside an adapter, for the commands that run it).
    func writeConfig(toDirectory directory: String) throws
    /// Writes the adapter's peft directory, naming `baseModel`.
    func saveAdapter(to directory: String, baseModel: String) throws
    /// Loads an adapter's peft directory over the base weights.
    func loadAdapter(directory: String) throws
}

extension BertModel: TrainableModel {
    public var hasAdapter: Bool { config.hasAdapter }

    public func initializeParameters(seed: UInt64) { initializeParameters(seed: seed, only: nil) }

    public func writeConfig(toDirectory directory: String) throws {
        try config.write(to: (directory as NSString).appendingPathComponent(PretrainedDirectory.configFile))
    }
}
