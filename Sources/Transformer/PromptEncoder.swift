import Kernels

/// peft's prompt encoder: a network that computes the prompt table from `n` learned rows during
/// training, for P-tuning (the virtual tokens' embeddings, `PromptEncoderConfig` with the MLP or the
/// LSTM reparameterisation) and for prefix tuning with `prefix_projection` (the prefix's keys and values).
/// peft saves only its output, `prompt_embeddings`, which inference reads as a plain table: an
/// adapter file loads for inference without the network, and a training checkpoint keeps the
/// network's own tensors beside it (`PromptEncoderSettings.weightsFile`) to resume.
public struct PromptEncoderSettings: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// P-tuning's `mlp_head`: Linear(C, H), ReLU, Linear(H, H), ReLU, Linear(H, C).
        case mlp = "MLP"
        /// P-tuning's `lstm_head`, a bidirectional LSTM of `layerCount` layers and H units, then
        /// `mlp_head`: Linear(2H, 2H), ReLU, Linear(2H, C).
        case lstm = "LSTM"
        /// Prefix tuning's `transform`: Linear(C, H), Tanh, Linear(H, 2 L C).
        case projection
    }

    public var kind: Kind
    /// peft's `encoder_hidden_size`.
    public var hiddenSize: Int
    /// peft's `encoder_num_layers`: the LSTM's layers (the other kinds have a fixed depth).
    public var layerCount: Int

    public init(kind: Kind, hiddenSize: Int, layerCount: Int = 2) {
        self.kind = kind
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
    }

    /// The encoder's tensors are named as in peft's PeftModel.
    public static let namePrefix = "prompt_encoder.default."
    /// The file of a checkpoint's adapter directory that holds the encoder's tensors.
    public static let weightsFile = "prompt_encoder.safetensors"

    static func isEncoderEntry(_ name: String) -> Bool { name.hasPrefix(namePrefix) }

    /// The learned rows, then the linear layers in order: (name without `.weight`/`.bias`, inputs, outputs).
    func layers(_ config: BertConfig, outputWidth: Int) -> [(name: String, inputs: Int, outputs: Int)] {
        let C = config.hiddenSize, H = hiddenSize, p = Self.namePrefix
        switch kind {
        case .mlp: return [(p + "mlp_head.0", C, H), (p + "mlp_head.2", H, H), (p + "mlp_head.4", H, outputWidth)]
        case .lstm: return [(p + "mlp_head.0", 2 * H, 2 * H), (p + "mlp_head.2", 2 * H, outputWidth)]
        case .projection: return [(p + "transform.0", C, H), (p + "transform.2", H, outputWidth)]
        }
    }

    /// The LSTM's tensors, before the linear layers (none for the other kinds).
    func recurrentEntries(_ config: BertConfig) -> [(name: String, shape: [Int])] {
        kind == .lstm ? PromptLSTM.entries(layers: layerCount, hidden: hiddenSize, inputWidth: config.hiddenSize) : []
    }

    var activation: ActivationFunction? { kind == .projection ? nil : .relu }

    func check(_ config: BertConfig) throws {
        guard hiddenSize >= 1 else {
            throw LoraSettingsError(key: "encoder_hidden_size", message: "is \(hiddenSize); the prompt encoder needs at least 1 unit")
        }
        guard layerCount >= 1 else {
            throw LoraSettingsError(key: "encoder_num_layers", message: "is \(layerCount); the LSTM needs at least 1 layer")
        }
    }
}

/// The prompt encoder's forward and backward on the model's parameters: the layers' outputs are kept
/// (the last is the prompt table), and backward takes d(table) to the encoder's gradients.
final class PromptEncoderNetwork {
    struct Layer {
        let weight, bias, inputs, outputs: Int
    }

    let settings: PromptEncoderSettings
    let rows: Int
    /// Offset of the learned (n, C) rows.
    let embedding: Int
    let layers: [Layer]
    /// The LSTM in front of the layers (kind `.lstm`).
    let lstm: PromptLSTM?
    /// Each layer's output after its activation, (n, outputs); the last one is the table.
    private let outputs: [UnsafeMutablePointer<Float>]
    /// d(table), filled by the model's backward; two scratch buffers for the layers' gradients.
    let tableGradient: UnsafeMutablePointer<Float>
    private let scratch: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)

    init(settings: PromptEncoderSettings, config: BertConfig, table: ParameterTable, rows: Int, outputWidth: Int) {
        self.settings = settings
        self.rows = rows
        embedding = table.offset(of: PromptEncoderSettings.namePrefix + "embedding.weight")
        lstm = settings.kind == .lstm ? PromptLSTM(settings: settings, config: config, table: table, rows: rows) : nil
        layers = settings.layers(config, outputWidth: outputWidth).map {
            Layer(weight: table.offset(of: $0.name + ".weight"), bias: table.offset(of: $0.name + ".bias"), inputs: $0.inputs, outputs: $0.outputs)
        }
        func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
            let pointer = UnsafeMutablePointer<Float>.allocate(capacity: count)
            pointer.initialize(repeating: 0, count: count)
            return pointer
        }
        outputs = layers.map { buffer(rows * $0.outputs) }
        tableGradient = buffer(rows * outputWidth)
        let widest = layers.map { max($0.inputs, $0.outputs) }.max() ?? 1
        scratch = (buffer(rows * widest), buffer(rows * widest))
    }

    deinit {
        for pointer in outputs + [tableGradient, scratch.0, scratch.1] { pointer.deallocate() }
    }

    /// The prompt table of the last `forward`, (n, outputWidth).
    var table: UnsafeMutablePointer<Float> { outputs[layers.count - 1] }
    /// Elements of the table.
    var tableCount: Int { rows * layers[layers.count - 1].outputs }

    /// Computes the table from the parameters.
    func forward(_ parameters: UnsafeMutablePointer<Float>) {
        lstm?.forward(parameters)
        var input = lstm?.output ?? UnsafePointer(parameters + embedding)
        for (i, layer) in layers.enumerated() {
            let out = outputs[i]
            linearForward(
                out, input, parameters + layer.weight, parameters + layer.bias, rows: rows, inputSize: layer.inputs,
                outputSize: layer.outputs)
            if i < layers.count - 1 {
                let count = rows * layer.outputs
                if let activation = settings.activation {
                    activationForward(out, out, activation, count: count)
                } else {
                    tanhForward(out, out, count: count)
                }
            }
            input = UnsafePointer(out)
        }
    }

    /// Adds the gradient of the encoder's tensors for d(table) in `tableGradient` (of the last
    /// `forward`) to `gradient(offset)`.
    func backward(_ parameters: UnsafeMutablePointer<Float>, gradient: (Int) -> UnsafeMutablePointer<Float>?) {
        var dOutput = tableGradient
        for i in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[i]
            // The first layer reads the LSTM's output when there is one, else the learned rows.
            let input = i > 0 ? UnsafePointer(outputs[i - 1]) : lstm?.output ?? UnsafePointer(parameters + embedding)
            let dInput = i > 0 ? (dOutput == scratch.0 ? scratch.1 : scratch.0) : lstm?.outputGradient ?? gradient(embedding)
            linearBackward(
                dInput, gradient(layer.weight), gradient(layer.bias), dOutput, input, parameters + layer.weight,
                rows: rows, inputSize: layer.inputs, outputSize: layer.outputs, accumulateInput: i == 0 && lstm == nil)
            guard i > 0, let dInput else {
                lstm?.backward(parameters, gradient: gradient)
                break
            }
            // Through the previous layer's activation, from its output y (ReLU(x) > 0 exactly where x > 0).
            let y = outputs[i - 1], count = rows * layer.inputs
            if let activation = settings.activation {
                activationBackward(dInput, dInput, y, activation, count: count)
            } else {
                tanhBackward(dInput, dInput, y, count: count)
            }
            dOutput = dInput
        }
    }
}
