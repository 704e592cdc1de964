import Foundation
import Kernels

// The fine-tuning heads of transformers' BERT: a linear classifier on the pooled [CLS] output
// (sequence classification, multiple choice) or on every token (token classification, question
// answering), with the losses transformers computes. Each loss is returned as a SUM over its items;
// the gradient is that of sum / `normalizer`, so ranks and micro-batches that divide by the global
// item count add up to transformers' mean over the global batch.

/// One micro-batch for the encoder: (B, T) row-major token ids, segment ids and attention mask.
public struct EncoderInputs: Sendable, Equatable {
    public var inputIDs: [Int32]
    public var tokenTypeIDs: [Int32]
    /// 1 for a real token, 0 for padding.
    public var attentionMask: [Int32]
    public var sequenceCount: Int
    public var sequenceLength: Int
    /// Global sample index of each sequence: keys its dropout masks, so a sample gets the same masks
    /// on whatever rank and in whatever micro-batch it runs. Empty without dropout.
    public var sampleIndices: [Int]

    public init(
        inputIDs: [Int32], tokenTypeIDs: [Int32], attentionMask: [Int32], sequenceCount: Int, sequenceLength: Int,
        sampleIndices: [Int] = []
    ) {
        self.inputIDs = inputIDs
        self.tokenTypeIDs = tokenTypeIDs
        self.attentionMask = attentionMask
        self.sequenceCount = sequenceCount
        self.sequenceLength = sequenceLength
        self.sampleIndices = sampleIndices
    }
}

/// How one forward (and backward) pass runs.
public struct PassOptions {
    /// Dropout on (needs `EncoderInputs.sampleIndices`).
    public var training: Bool
    /// Run backward, ADDING into the model's gradients.
    public var computeGradients: Bool
    public var dropoutSeed: UInt64
    /// Keys the dropout masks together with the seed (the optimizer step).
    public var dropoutStep: UInt64
    /// Receives flat ranges of the gradients that are final for this pass: the head (and pooler),
    /// then layers L-1 ... 0, then the embeddings.
    public var onGradientsReady: ((Range<Int>) -> Void)?

    public init(
        training: Bool, computeGradients: Bool, dropoutSeed: UInt64 = 0, dropoutStep: UInt64 = 0,
        onGradientsReady: ((Range<Int>) -> Void)? = nil
    ) {
        self.training = training
        self.computeGradients = computeGradients
        self.dropoutSeed = dropoutSeed
        self.dropoutStep = dropoutStep
        self.onGradientsReady = onGradientsReady
    }

    /// A forward pass without dropout or gradients.
    public static var inference: PassOptions { PassOptions(training: false, computeGradients: false) }
}

/// What a fine-tuning head's pass produced.
public struct HeadOutput: Sendable {
    /// The sum over the pass's items of their losses (0 without targets); the gradient is that of
    /// `lossSum / normalizer`.
    public var lossSum: Double
    /// The head's logits: (B, K) for sequence classification, (B, T, K) for token classification,
    /// (B, T, 2) start and end for question answering, (B / choices, choices) for multiple choice.
    public var logits: [Float]
}

/// The targets of sequence classification, one per sequence (multi-hot: K per sequence).
public enum SequenceTargets: Sendable, Equatable {
    /// Class ids (single-label classification, cross-entropy).
    case classes([Int32])
    /// 0/1 per label (multi-label classification, binary cross-entropy with logits).
    case multiHot([Float])
    /// One value per sequence (regression, mean squared error).
    case values([Float])
}

extension BertModel {
    /// Forward through the encoder, `head` (its forward, loss and, with gradients, its backward down
    /// to d(last hidden state) in `dResidual`, zeroed before), then the encoder's backward. Returns
    /// what `head` returns. `clsRowsOnly`: the head reads only the [CLS] rows, so the last layer
    /// computes only those when it can (`computesLastLayerAtLossRowsOnly`, a model built for training).
    func pass<Result>(
        _ inputs: EncoderInputs, _ options: PassOptions, clsRowsOnly: Bool = false,
        head: (_ dropout: DropoutSettings) -> Result
    ) -> Result {
        precondition(!(options.computeGradients && inferenceOnly), "gradients need a model built for training")
        if let problem = inputProblem(
            inputIDs: inputs.inputIDs, tokenTypeIDs: inputs.tokenTypeIDs, attentionMask: inputs.attentionMask,
            sequenceCount: inputs.sequenceCount, length: inputs.sequenceLength)
        {
            preconditionFailure(problem)
        }
        let inputs = config.virtualTokenCount > 0 ? inputs.prependingVirtualTokens(config.virtualTokenCount) : inputs
        let B = inputs.sequenceCount, T = inputs.sequenceLength
        precondition(!options.training || inputs.sampleIndices.count == B, "dropout needs one sample index per sequence")
        activeLength = T
        lastLayerRows = clsRowsOnly && computesLastLayerAtLossRowsOnly && !inferenceOnly
            ? activations.keepRows(maskedPositions: nil, count: 0, sequences: B, length: T, heads: config.attentionHeadCount)
            : nil
        let keys = inputs.sampleIndices.isEmpty ? Array(repeating: 0, count: B) : inputs.sampleIndices
        return keys.withUnsafeBufferPointer { samples in
            var dropout = DropoutSettings(
                enabled: options.training, seed: options.dropoutSeed, step: options.dropoutStep,
                sampleIndices: samples.baseAddress!, hidden: config.hiddenDropoutProbability,
                attention: config.attentionDropoutProbability, heads: config.attentionHeadCount, length: T)
            if options.computeGradients { dropout.record = activations.dropoutRecord }
            return inputs.inputIDs.withUnsafeBufferPointer { ids in
                inputs.tokenTypeIDs.withUnsafeBufferPointer { types in
                    inputs.attentionMask.withUnsafeBufferPointer { mask in
                        encoderForward(ids.baseAddress!, types.baseAddress!, mask.baseAddress!, B, dropout)
                        if options.computeGradients {
                            let rows = lastLayerRows?.count ?? B * T
                            activations.dResidual.update(repeating: 0, count: rows * config.hiddenSize)
                        }
                        let result = head(dropout)
                        if options.computeGradients {
                            options.onGradientsReady?(table.headRange)
                            encoderBackward(
                                ids.baseAddress!, types.baseAddress!, B, dropout.replaying, options.onGradientsReady)
                        }
                        return result
                    }
                }
            }
        }
    }

    /// The classifier's dropout (`classifier_dropout`, else the hidden dropout) on R rows, keyed like
    /// the encoder's but as layer L + 1: drawn again in backward rather than recorded.
    func classifierDropout(_ dropout: DropoutSettings, rowsPerSample: Int) -> DropoutMask? {
        let probability = config.classifierDropoutProbability
        guard dropout.enabled, probability > 0, let samples = dropout.sampleIndices else { return nil }
        return DropoutMask(
            probability: probability, seed: dropout.seed, step: dropout.step, layer: UInt64(config.hiddenLayerCount + 1),
            site: DropoutSite.classifier, sampleIndices: samples, rowsPerSample: rowsPerSample)
    }

    /// `headLogits` (R, K) = classifier(dropout(x)) for R rows of x, (R, C). Returns the classifier's input.
    func classifierForward(
        _ x: UnsafePointer<Float>, rows R: Int, _ mask: DropoutMask?
    ) -> UnsafePointer<Float> {
        let C = config.hiddenSize, K = config.headOutputCount, a = activations, o = offsets
        var input = x
        if let mask {
            timed(.other) { dropoutForward(a.headInput, x, mask, rows: R, columns: C) }
            input = UnsafePointer(a.headInput)
        }
        timed(.gemm) {
            linearForward(a.headLogits, input, param(o.classifierWeight), param(o.classifierBias), rows: R, inputSize: C, outputSize: K)
        }
        probe("classifier", nil, a.headLogits, R * K)
        return input
    }

    /// Backward of `classifierForward` from d(logits) in `headLogits`: d(x) WRITTEN to `dx`, (R, C).
    func classifierBackward(
        _ dx: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows R: Int, _ mask: DropoutMask?
    ) {
        let C = config.hiddenSize, K = config.headOutputCount, a = activations, o = offsets
        timed(.gemm) {
            linearBackward(
                dx, grad(o.classifierWeight), grad(o.classifierBias), a.headLogits, input, param(o.classifierWeight),
                rows: R, inputSize: C, outputSize: K)
        }
        if let mask { timed(.other) { dropoutBackward(dx, dx, mask, rows: R, columns: C) } }
    }

    /// The (R, K) logits as an array, before the loss overwrites them with their gradient.
    func headLogits(rows R: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: activations.headLogits, count: R * config.headOutputCount))
    }

    /// Sequence-level heads (sequence classification, multiple choice): pooler, dropout, classifier
    /// on the B [CLS] rows; `loss` turns the logits in `headLogits` into the loss sum and, when asked,
    /// their gradient (written over them); then backward to `dResidual`.
    func pooledHeadPass(
        _ inputs: EncoderInputs, _ options: PassOptions,
        loss: (_ logits: UnsafeMutablePointer<Float>, _ gradient: Bool) -> Double
    ) -> HeadOutput {
        pass(inputs, options, clsRowsOnly: true) { dropout in
            let B = inputs.sequenceCount
            poolerForward(B)
            let mask = classifierDropout(dropout, rowsPerSample: 1)
            let input = classifierForward(activations.pooled, rows: B, mask)
            let logits = headLogits(rows: B)
            let lossSum = timed(.loss) { loss(activations.headLogits, options.computeGradients) }
            if options.computeGradients {
                classifierBackward(activations.dPooled, input: input, rows: B, mask)
                poolerBackward(B)
            }
            return HeadOutput(lossSum: lossSum, logits: logits)
        }
    }

    /// Token-level heads (token classification, question answering): dropout (`dropout` false: none)
    /// and classifier on every row of the last hidden state, then `loss` as in `pooledHeadPass`.
    func tokenHeadPass(
        _ inputs: EncoderInputs, _ options: PassOptions, dropout withDropout: Bool,
        loss: (_ logits: UnsafeMutablePointer<Float>, _ gradient: Bool) -> Double
    ) -> HeadOutput {
        pass(inputs, options) { dropout in
            let N = inputs.sequenceCount * inputs.sequenceLength
            let mask = withDropout ? classifierDropout(dropout, rowsPerSample: inputs.sequenceLength) : nil
            let input = classifierForward(lastHidden, rows: N, mask)
            let logits = headLogits(rows: N)
            let lossSum = timed(.loss) { loss(activations.headLogits, options.computeGradients) }
            if options.computeGradients {
                classifierBackward(activations.dResidual, input: input, rows: N, mask)
            }
            return HeadOutput(lossSum: lossSum, logits: logits)
        }
    }
}

extension DropoutSite {
    /// The classifier's dropout, at layer L + 1.
    static let classifier: UInt64 = 4
}

extension BertModel {
    /// Runs `body` timed as `op` when profiling, returning its result.
    func timed<T>(_ op: OpClass, _ body: () -> T) -> T {
        var result: T?
        timed(op) { result = body() }
        return result!
    }
}

// MARK: - Losses

/// Softmax cross-entropy over `classes` logits per row, strided: class k of row r at
/// `logits[r * rowStride + k * classStride]`. Rows whose label is outside 0..<classes are ignored
/// (transformers' -100, and question answering's clamped positions). Returns the sum of the losses;
/// with `gradient`, writes (softmax - onehot) / normalizer over the logits (0 for ignored rows).
func crossEntropySum(
    _ logits: UnsafeMutablePointer<Float>, rows: Int, classes: Int, rowStride: Int, classStride: Int,
    labels: UnsafePointer<Int32>, normalizer: Float, gradient: Bool
) -> Double {
    var total = 0.0
    for r in 0..<rows {
        let x = logits + r * rowStride
        let label = Int(labels[r])
        guard (0..<classes).contains(label) else {
            if gradient { for k in 0..<classes { x[k * classStride] = 0 } }
            continue
        }
        var maximum = -Float.infinity
        for k in 0..<classes { maximum = max(maximum, x[k * classStride]) }
        var sum = 0.0
        for k in 0..<classes { sum += Double(exp(x[k * classStride] - maximum)) }
        total += log(sum) - Double(x[label * classStride] - maximum)
        if gradient {
            for k in 0..<classes {
                let p = Double(exp(x[k * classStride] - maximum)) / sum
                x[k * classStride] = Float((p - (k == label ? 1 : 0)) / Double(normalizer))
            }
        }
    }
    return total
}

/// Binary cross-entropy with logits, summed over `count` elements (transformers' BCEWithLogitsLoss,
/// in its numerically stable form); with `gradient`, (sigmoid(x) - y) / normalizer over the logits.
func binaryCrossEntropySum(
    _ logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Float>, count: Int, normalizer: Float, gradient: Bool
) -> Double {
    var total = 0.0
    for i in 0..<count {
        let x = Double(logits[i]), y = Double(targets[i])
        total += max(x, 0) - x * y + log1p(exp(-abs(x)))
        if gradient { logits[i] = Float((1 / (1 + exp(-x)) - y) / Double(normalizer)) }
    }
    return total
}

/// Squared error summed over `count` elements; with `gradient`, 2 (x - y) / normalizer over the outputs.
func squaredErrorSum(
    _ outputs: UnsafeMutablePointer<Float>, targets: UnsafePointer<Float>, count: Int, normalizer: Float, gradient: Bool
) -> Double {
    var total = 0.0
    for i in 0..<count {
        let difference = Double(outputs[i]) - Double(targets[i])
        total += difference * difference
        if gradient { outputs[i] = Float(2 * difference / Double(normalizer)) }
    }
    return total
}

// MARK: - The heads

/// `BertForSequenceClassification`: pooled [CLS] -> dropout -> linear, with the loss of
/// `config.resolvedProblemType` (cross-entropy, binary cross-entropy per label, or squared error).
public final class BertForSequenceClassification: BertModel {
    override public class var implementedHead: ModelHead? { .sequenceClassification }

    /// Logits (B, K) and, with `targets`, the loss sum: over sequences for cross-entropy and squared
    /// error, over sequences x labels for binary cross-entropy (transformers' means multiply back).
    public func step(
        _ inputs: EncoderInputs, targets: SequenceTargets?, normalizer: Float = 1, options: PassOptions
    ) -> HeadOutput {
        let B = inputs.sequenceCount, K = config.headOutputCount
        precondition(targets != nil || !options.computeGradients, "gradients need targets")
        return pooledHeadPass(inputs, options) { logits, gradient in
            switch targets {
            case nil:
                return 0
            case let .classes(labels):
                precondition(labels.count == B && labels.allSatisfy { (0..<Int32(K)).contains($0) }, "one class id in 0..<\(K) per sequence")
                return labels.withUnsafeBufferPointer {
                    crossEntropySum(
                        logits, rows: B, classes: K, rowStride: K, classStride: 1, labels: $0.baseAddress!,
                        normalizer: normalizer, gradient: gradient)
                }
            case let .multiHot(targets):
                precondition(targets.count == B * K, "\(K) targets per sequence")
                return targets.withUnsafeBufferPointer {
                    binaryCrossEntropySum(logits, targets: $0.baseAddress!, count: B * K, normalizer: normalizer, gradient: gradient)
                }
            case let .values(values):
                precondition(values.count == B && K == 1, "one value per sequence and one output")
                return values.withUnsafeBufferPointer {
                    squaredErrorSum(logits, targets: $0.baseAddress!, count: B, normalizer: normalizer, gradient: gradient)
                }
            }
        }
    }
}

/// `BertForMultipleChoice`: every choice is a sequence of the batch (choices of one example
/// adjacent); pooled [CLS] -> dropout -> linear to one score per choice; cross-entropy over each
/// example's choices.
public final class BertForMultipleChoice: BertModel {
    override public class var implementedHead: ModelHead? { .multipleChoice }

    /// Logits (B / choices, choices) and, with `labels` (one choice index per example), the loss sum
    /// over examples.
    public func step(
        _ inputs: EncoderInputs, choices: Int, labels: [Int32]?, normalizer: Float = 1, options: PassOptions
    ) -> HeadOutput {
        precondition(choices > 0 && inputs.sequenceCount % choices == 0, "the batch holds whole examples of \(choices) choices")
        let examples = inputs.sequenceCount / choices
        precondition(labels != nil || !options.computeGradients, "gradients need labels")
        return pooledHeadPass(inputs, options) { logits, gradient in
            guard let labels else { return 0 }
            precondition(labels.count == examples && labels.allSatisfy { (0..<Int32(choices)).contains($0) }, "one choice index per example")
            return labels.withUnsafeBufferPointer {
                crossEntropySum(
                    logits, rows: examples, classes: choices, rowStride: choices, classStride: 1, labels: $0.baseAddress!,
                    normalizer: normalizer, gradient: gradient)
            }
        }
    }
}

/// `BertForTokenClassification`: dropout -> linear on every token (no pooler); cross-entropy over
/// the tokens whose label is not ignored (-100: specials, padding, non-first WordPieces).
public final class BertForTokenClassification: BertModel {
    override public class var implementedHead: ModelHead? { .tokenClassification }

    /// Logits (B, T, K) and, with `labels` (B x T, -100 ignored), the loss sum over labelled tokens.
    public func step(_ inputs: EncoderInputs, labels: [Int32]?, normalizer: Float = 1, options: PassOptions) -> HeadOutput {
        let N = inputs.sequenceCount * inputs.sequenceLength, K = config.headOutputCount
        precondition(labels != nil || !options.computeGradients, "gradients need labels")
        return tokenHeadPass(inputs, options, dropout: true) { logits, gradient in
            guard let labels else { return 0 }
            precondition(labels.count == N && labels.allSatisfy { $0 == -100 || (0..<Int32(K)).contains($0) }, "one label in 0..<\(K) or -100 per token")
            return labels.withUnsafeBufferPointer {
                crossEntropySum(
                    logits, rows: N, classes: K, rowStride: K, classStride: 1, labels: $0.baseAddress!,
                    normalizer: normalizer, gradient: gradient)
            }
        }
    }
}

/// `BertForQuestionAnswering`: linear to a start and an end logit per token (no pooler, no
/// dropout); the loss is transformers': cross-entropy of the start and of the end position over
/// the T positions of each sequence (padding included, as there), so the sum is over 2 B terms.
public final class BertForQuestionAnswering: BertModel {
    override public class var implementedHead: ModelHead? { .questionAnswering }

    /// Logits (B, T, 2) (start, end per token) and, with positions (token index per sequence; T or
    /// more is ignored, as transformers clamps and ignores them), the loss sum.
    public func step(
        _ inputs: EncoderInputs, startPositions: [Int32]?, endPositions: [Int32]?, normalizer: Float = 1,
        options: PassOptions
    ) -> HeadOutput {
        let B = inputs.sequenceCount, T = inputs.sequenceLength
        precondition((startPositions == nil) == (endPositions == nil), "both start and end positions, or neither")
        precondition(startPositions != nil || !options.computeGradients, "gradients need positions")
        return tokenHeadPass(inputs, options, dropout: false) { logits, gradient in
            guard let startPositions, let endPositions else { return 0 }
            precondition(startPositions.count == B && endPositions.count == B, "one start and one end position per sequence")
            var total = 0.0
            for (column, positions) in [startPositions, endPositions].enumerated() {
                total += positions.withUnsafeBufferPointer {
                    crossEntropySum(
                        logits + column, rows: B, classes: T, rowStride: 2 * T, classStride: 2, labels: $0.baseAddress!,
                        normalizer: normalizer, gradient: gradient)
                }
            }
            return total
        }
    }
}
