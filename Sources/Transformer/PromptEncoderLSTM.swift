import Foundation
import Kernels

/// P-tuning's LSTM (peft's `lstm_head`): `torch.nn.LSTM(C, H, num_layers, bidirectional=True,
/// batch_first=True)` over the n learned rows as one sequence, its output (n, 2H) the input of the
/// MLP head. Gates i, f, g, o in that order of the 4H rows of each weight; h and c start at zero;
/// layer l > 0 reads the concatenated [forward, backward] outputs of layer l - 1.
///
/// peft runs it on every sequence of the batch alike (the same rows), so d(output) summed over the
/// batch, which the model's backward gives, is exactly what one sequence's backward needs.
final class PromptLSTM {
    struct Direction {
        let inputWeight, hiddenWeight, inputBias, hiddenBias: Int
    }

    let rows: Int
    let hidden: Int
    let embedding: Int
    let embeddingWidth: Int
    /// Per layer, the forward and the backward direction.
    let directions: [[Direction]]
    /// Per layer, its output (n, 2H): forward h in the first H columns, backward h in the last.
    private let outputs: [UnsafeMutablePointer<Float>]
    /// Per layer and direction, the activated gates of every step (n, 4H) and the cell states (n, H).
    private let gates: [[UnsafeMutablePointer<Float>]]
    private let cells: [[UnsafeMutablePointer<Float>]]
    /// d(last layer's output), (n, 2H), filled by the MLP head's backward.
    let outputGradient: UnsafeMutablePointer<Float>
    /// d(gates) (n, 4H), the previous step's h per step (n, H), d(h) of the next step (H), and two
    /// (n, 2H) buffers for d(a layer's input).
    private let gateGradient, previousHidden, hiddenGradient: UnsafeMutablePointer<Float>
    private let inputGradients: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
    private var buffers: [UnsafeMutablePointer<Float>] = []

    /// The LSTM's tensors in peft's names (after `PromptEncoderSettings.namePrefix`): per layer and
    /// direction `weight_ih` (4H, in), `weight_hh` (4H, H), `bias_ih` and `bias_hh` (4H).
    static func entries(layers: Int, hidden H: Int, inputWidth C: Int) -> [(name: String, shape: [Int])] {
        (0..<layers).flatMap { l in
            ["", "_reverse"].flatMap { suffix -> [(name: String, shape: [Int])] in
                let p = PromptEncoderSettings.namePrefix + "lstm_head.", s = "_l\(l)" + suffix
                return [(p + "weight_ih" + s, [4 * H, l == 0 ? C : 2 * H]), (p + "weight_hh" + s, [4 * H, H]),
                        (p + "bias_ih" + s, [4 * H]), (p + "bias_hh" + s, [4 * H])]
            }
        }
    }

    init(settings: PromptEncoderSettings, config: BertConfig, table: ParameterTable, rows n: Int) {
        rows = n
        hidden = settings.hiddenSize
        embeddingWidth = config.hiddenSize
        embedding = table.offset(of: PromptEncoderSettings.namePrefix + "embedding.weight")
        let names = Self.entries(layers: settings.layerCount, hidden: hidden, inputWidth: embeddingWidth).map { table.offset(of: $0.name) }
        directions = (0..<settings.layerCount).map { l in
            (0..<2).map { d in
                let at = 8 * l + 4 * d
                return Direction(inputWeight: names[at], hiddenWeight: names[at + 1], inputBias: names[at + 2], hiddenBias: names[at + 3])
            }
        }
        let H = hidden
        var buffers: [UnsafeMutablePointer<Float>] = []
        func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
            let pointer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
            pointer.initialize(repeating: 0, count: max(1, count))
            buffers.append(pointer)
            return pointer
        }
        outputs = directions.map { _ in buffer(n * 2 * H) }
        gates = directions.map { _ in [buffer(n * 4 * H), buffer(n * 4 * H)] }
        cells = directions.map { _ in [buffer(n * H), buffer(n * H)] }
        outputGradient = buffer(n * 2 * H)
        gateGradient = buffer(n * 4 * H)
        previousHidden = buffer(n * H)
        hiddenGradient = buffer(H)
        inputGradients = (buffer(n * 2 * H), buffer(n * 2 * H))
        self.buffers = buffers
    }

    deinit { for pointer in buffers { pointer.deallocate() } }

    /// The last layer's output (n, 2H) of the last `forward`.
    var output: UnsafePointer<Float> { UnsafePointer(outputs[directions.count - 1]) }

    /// The step order of a direction, and each step's predecessor.
    private func step(_ s: Int, reverse: Bool) -> (t: Int, previous: Int?) {
        let t = reverse ? rows - 1 - s : s
        return (t, s == 0 ? nil : (reverse ? t + 1 : t - 1))
    }

    func forward(_ parameters: UnsafeMutablePointer<Float>) {
        let n = rows, H = hidden
        for (l, layer) in directions.enumerated() {
            let x = l == 0 ? UnsafePointer(parameters + embedding) : UnsafePointer(outputs[l - 1])
            let width = l == 0 ? embeddingWidth : 2 * H, out = outputs[l]
            for (d, direction) in layer.enumerated() {
                let gate = gates[l][d], cell = cells[l][d]
                // Every step's input part at once: x W_ih^T + b_ih + b_hh.
                linearForward(gate, x, parameters + direction.inputWeight, parameters + direction.inputBias, rows: n, inputSize: width, outputSize: 4 * H)
                addBias(gate, parameters + direction.hiddenBias, rows: n, columns: 4 * H)
                for s in 0..<n {
                    let (t, previous) = step(s, reverse: d == 1)
                    let g = gate + t * 4 * H
                    if let previous {
                        gemm(.none, .transposed, m: 1, n: 4 * H, k: H, a: out + previous * 2 * H + d * H, b: parameters + direction.hiddenWeight,
                             beta: 1, c: g)
                    }
                    for j in 0..<H {
                        let i = sigmoid(g[j]), f = sigmoid(g[H + j]), candidate = tanhf(g[2 * H + j]), o = sigmoid(g[3 * H + j])
                        let c = f * (previous.map { cell[$0 * H + j] } ?? 0) + i * candidate
                        g[j] = i; g[H + j] = f; g[2 * H + j] = candidate; g[3 * H + j] = o
                        cell[t * H + j] = c
                        out[t * 2 * H + d * H + j] = o * tanhf(c)
                    }
                }
            }
        }
    }

    /// From d(output) in `outputGradient`: adds the LSTM's gradients and d(rows) to `gradient(offset)`
    /// (nil for a frozen tensor).
    func backward(_ parameters: UnsafeMutablePointer<Float>, gradient: (Int) -> UnsafeMutablePointer<Float>?) {
        let n = rows, H = hidden
        var dOutput = UnsafePointer(outputGradient)
        for l in stride(from: directions.count - 1, through: 0, by: -1) {
            let x = l == 0 ? UnsafePointer(parameters + embedding) : UnsafePointer(outputs[l - 1])
            let width = l == 0 ? embeddingWidth : 2 * H, out = outputs[l]
            let dInput = l == 0 ? gradient(embedding) : (dOutput == UnsafePointer(inputGradients.0) ? inputGradients.1 : inputGradients.0)
            if l > 0, let dInput { dInput.update(repeating: 0, count: n * width) }
            for (d, direction) in directions[l].enumerated() {
                let gate = gates[l][d], cell = cells[l][d], dGate = gateGradient
                var dCell = [Float](repeating: 0, count: H)
                for s in stride(from: n - 1, through: 0, by: -1) {
                    let (t, previous) = step(s, reverse: d == 1)
                    let g = gate + t * 4 * H, dg = dGate + t * 4 * H
                    for j in 0..<H {
                        let i = g[j], f = g[H + j], candidate = g[2 * H + j], o = g[3 * H + j]
                        let tanhC = tanhf(cell[t * H + j])
                        // hiddenGradient holds d(h) from the step after this one (zero at the last).
                        let dh = dOutput[t * 2 * H + d * H + j] + (s == n - 1 ? 0 : hiddenGradient[j])
                        let dc = dCell[j] + dh * o * (1 - tanhC * tanhC)
                        dg[j] = dc * candidate * i * (1 - i)
                        dg[H + j] = dc * (previous.map { cell[$0 * H + j] } ?? 0) * f * (1 - f)
                        dg[2 * H + j] = dc * i * (1 - candidate * candidate)
                        dg[3 * H + j] = dh * tanhC * o * (1 - o)
                        dCell[j] = dc * f
                    }
                    if let previous {
                        gemm(.none, .none, m: 1, n: H, k: 4 * H, a: dg, b: parameters + direction.hiddenWeight, beta: 0, c: hiddenGradient)
                        (previousHidden + t * H).update(from: out + previous * 2 * H + d * H, count: H)
                    } else {
                        (previousHidden + t * H).update(repeating: 0, count: H)
                    }
                }
                if let dHidden = gradient(direction.hiddenWeight) {
                    gemm(.transposed, .none, m: 4 * H, n: H, k: n, a: dGate, b: previousHidden, beta: 1, c: dHidden)
                }
                if let dBias = gradient(direction.hiddenBias) { biasBackward(dBias, dGate, rows: n, columns: 4 * H) }
                linearBackward(
                    dInput, gradient(direction.inputWeight), gradient(direction.inputBias), dGate, x, parameters + direction.inputWeight,
                    rows: n, inputSize: width, outputSize: 4 * H, accumulateInput: true)
            }
            guard l > 0, let dInput else { break }
            dOutput = UnsafePointer(dInput)
        }
    }

    private func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
}
