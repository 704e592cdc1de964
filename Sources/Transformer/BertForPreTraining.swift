import Foundation
import Kernels

/// What one forward (and backward) pass over a micro-batch produced.
public struct StepResult: Sendable, Equatable {
    /// Sum of the MLM cross-entropies of this micro-batch divided by `maskedTokenNormalizer`.
    public var mlmLoss: Float
    /// Sum of the NSP cross-entropies divided by `sequenceNormalizer` (0 without an NSP head).
    public var nspLoss: Float
    /// `mlmLoss + nspLoss`, the quantity whose gradient backward adds.
    public var loss: Float
    public var mlmCorrect: Int
    public var mlmCount: Int
    public var nspCorrect: Int
    public var nspCount: Int

    public init(
        mlmLoss: Float = 0, nspLoss: Float = 0, loss: Float = 0,
        mlmCorrect: Int = 0, mlmCount: Int = 0, nspCorrect: Int = 0, nspCount: Int = 0
    ) {
        self.mlmLoss = mlmLoss
        self.nspLoss = nspLoss
        self.loss = loss
        self.mlmCorrect = mlmCorrect
        self.mlmCount = mlmCount
        self.nspCorrect = nspCorrect
        self.nspCount = nspCount
    }
}

/// The targets of the pre-training heads for one micro-batch.
public struct PreTrainingTargets: Sendable, Equatable {
    /// Flat positions b*T + t of the masked tokens, and the original token at each.
    public var maskedPositions: [Int32]
    public var maskedLabels: [Int32]
    /// One next-sentence class per sequence (empty without an NSP head).
    public var nspLabels: [Int32]

    public init(maskedPositions: [Int32], maskedLabels: [Int32], nspLabels: [Int32]) {
        self.maskedPositions = maskedPositions
        self.maskedLabels = maskedLabels
        self.nspLabels = nspLabels
    }
}

/// BERT with its two pre-training heads (masked LM and next sentence), whatever head `config` names.
public final class BertForPreTraining: BertModel {
    public required init(config: BertConfig, maxSequenceCount: Int, sequenceLength: Int, inferenceOnly: Bool = false) {
        var config = config
        config.head = .preTraining
        super.init(config: config, maxSequenceCount: maxSequenceCount, sequenceLength: sequenceLength, inferenceOnly: inferenceOnly)
    }

    /// An inference-only model that reads the parameters of `source`: see `BertModel`.
    public init(sharingParametersOf source: BertForPreTraining, maxSequenceCount: Int, sequenceLength: Int) {
        super.init(sharingParametersOf: source, maxSequenceCount: maxSequenceCount, sequenceLength: sequenceLength)
    }

    // MARK: - Training step

    /// `step` with the inputs, targets and pass settings as values: masked positions b*T + t with
    /// their labels, one NSP label per sequence; the losses divided by the global masked-token and
    /// sequence counts.
    @discardableResult
    public func step(
        _ inputs: EncoderInputs, targets: PreTrainingTargets, maskedTokenNormalizer: Float, sequenceNormalizer: Float,
        options: PassOptions
    ) -> StepResult {
        precondition(inputs.sequenceLength == sequenceLength, "pre-training batches are padded to the model's sequence length")
        return step(
            inputIDs: inputs.inputIDs, tokenTypeIDs: inputs.tokenTypeIDs, attentionMask: inputs.attentionMask,
            maskedPositions: targets.maskedPositions, maskedLabels: targets.maskedLabels, nspLabels: targets.nspLabels,
            sampleIndices: inputs.sampleIndices, sequenceCount: inputs.sequenceCount,
            maskedTokenNormalizer: maskedTokenNormalizer, sequenceNormalizer: sequenceNormalizer,
            training: options.training, dropoutSeed: options.dropoutSeed, dropoutStep: options.dropoutStep,
            computeGradients: options.computeGradients, onGradientsReady: options.onGradientsReady)
    }

    /// Forward and, when `computeGradients`, backward over one micro-batch, ADDING into `gradients`.
    ///
    /// Inputs are row-major (B, T) with B = `sequenceCount` <= `maxSequenceCount`; `maskedPositions`
    /// are flat positions b*T + t, `maskedLabels` their target ids, `nspLabels` (B) the NSP classes,
    /// `sampleIndices` (B) the global sample indices that key dropout. The MLM loss is the sum over
    /// masked tokens divided by `maskedTokenNormalizer`, the NSP loss the sum over sequences divided by
    /// `sequenceNormalizer` (global counts, so ranks and micro-batches add up to the global mean).
    /// Dropout applies only when `training`. `onGradientsReady` receives flat ranges of `gradients`
    /// that are final for this micro-batch: the pooler and heads, then layers L-1 ... 0, then the
    /// embeddings (the word embeddings are tied to the MLM decoder, so they finish last).
    @discardableResult
    public func step(
        inputIDs: [Int32], tokenTypeIDs: [Int32], attentionMask: [Int32],
        maskedPositions: [Int32], maskedLabels: [Int32], nspLabels: [Int32], sampleIndices: [Int],
        sequenceCount: Int, maskedTokenNormalizer: Float, sequenceNormalizer: Float,
        training: Bool, dropoutSeed: UInt64, dropoutStep: UInt64, computeGradients: Bool,
        onGradientsReady: ((Range<Int>) -> Void)? = nil
    ) -> StepResult {
        precondition(!inferenceOnly, "step needs a model built for training (inferenceOnly: false)")
        let B = sequenceCount, T = sequenceLength
        if let problem = inputProblem(
            inputIDs: inputIDs, tokenTypeIDs: tokenTypeIDs, attentionMask: attentionMask, sequenceCount: B, length: T)
        {
            preconditionFailure(problem)
        }
        activeLength = T
        precondition(maskedLabels.count == maskedPositions.count, "one masked label per masked position")
        precondition(maskedPositions.count <= B * T, "more masked positions than tokens")
        precondition(maskedPositions.allSatisfy { $0 >= 0 && Int($0) < B * T }, "masked position outside 0..<B*T")
        precondition(maskedLabels.allSatisfy { $0 >= 0 && Int($0) < config.vocabSize }, "masked label outside the vocabulary")
        if config.nspClassCount > 0 {
            precondition(nspLabels.count == B, "nspLabels must have one label per sequence")
            precondition(nspLabels.allSatisfy { $0 >= 0 && Int($0) < config.nspClassCount }, "NSP label outside 0..<\(config.nspClassCount)")
        }
        precondition(!training || sampleIndices.count == B, "sampleIndices must have one index per sequence")
        let dropoutKeys = sampleIndices.isEmpty ? Array(repeating: 0, count: B) : sampleIndices
        return dropoutKeys.withUnsafeBufferPointer { samples in
            var dropout = DropoutSettings(
                enabled: training, seed: dropoutSeed, step: dropoutStep, sampleIndices: samples.baseAddress!,
                hidden: config.hiddenDropoutProbability, attention: config.attentionDropoutProbability,
                heads: config.attentionHeadCount, length: T)
            if computeGradients { dropout.record = activations.dropoutRecord }
            lastLayerRows = !computesLastLayerAtLossRowsOnly ? nil : maskedPositions.withUnsafeBufferPointer {
                activations.keepRows(
                    maskedPositions: $0.baseAddress, count: $0.count, sequences: B, length: T,
                    heads: config.attentionHeadCount)
            }
            return inputIDs.withUnsafeBufferPointer { ids in
                tokenTypeIDs.withUnsafeBufferPointer { types in
                    attentionMask.withUnsafeBufferPointer { mask in
                        encoderForward(ids.baseAddress!, types.baseAddress!, mask.baseAddress!, B, dropout)
                        var result = StepResult()
                        maskedPositions.withUnsafeBufferPointer { positions in
                            maskedLabels.withUnsafeBufferPointer { labels in
                                nspLabels.withUnsafeBufferPointer { nsp in
                                    result = headsForwardBackward(
                                        lastLayerRows?.maskedRows ?? positions.baseAddress, labels.baseAddress, maskedPositions.count,
                                        nsp.baseAddress, B, maskedTokenNormalizer, sequenceNormalizer,
                                        computeGradients)
                                    if computeGradients {
                                        onGradientsReady?(table.headRange)
                                        encoderBackward(
                                            ids.baseAddress!, types.baseAddress!, B, dropout.replaying,
                                            onGradientsReady)
                                    }
                                }
                            }
                        }
                        return result
                    }
                }
            }
        }
    }

    /// MLM logits of the most recent forward pass at flat positions b*T + t, [P, V].
    public func mlmLogits(at positions: [Int32]) throws -> [Float] {
        let N = lastSequenceCount * activeLength, C = config.hiddenSize, V = config.vocabSize
        if let bad = positions.first(where: { $0 < 0 || Int($0) >= N }) {
            throw BertInputError.invalid("position \(bad) is outside the \(N) token positions of the last forward pass")
        }
        precondition(
            lastLayerRows == nil,
            "step computes the last layer at the loss rows only: run hiddenStates(inputIDs:...) first")
        let P = positions.count
        var logits = [Float](repeating: 0, count: P * V)
        let a = activations
        positions.withUnsafeBufferPointer { positions in
            logits.withUnsafeMutableBufferPointer { logits in
                var start = 0
                while start < P {
                    let rows = min(logitsChunkRows, P - start)
                    mlmTransformForward(positions.baseAddress! + start, rows)
                    linearForward(
                        logits.baseAddress! + start * V, a.transformOut, param(offsets.wordEmbeddings),
                        param(offsets.mlmBias), rows: rows, inputSize: C, outputSize: V)
                    start += rows
                }
            }
        }
        return logits
    }

    /// NSP logits of the most recent forward pass, [B, K] (empty without an NSP head).
    public func nspLogits() -> [Float] {
        guard config.nspClassCount > 0 else { return [] }
        poolerForward(lastSequenceCount)
        let B = lastSequenceCount, C = config.hiddenSize, K = config.nspClassCount
        linearForward(
            activations.nspLogits, activations.pooled, param(offsets.nspWeight), param(offsets.nspBias),
            rows: B, inputSize: C, outputSize: K)
        return Array(UnsafeBufferPointer(start: activations.nspLogits, count: B * K))
    }

}
