import Kernels

// The pooler (shared by the heads that read [CLS]), and the pre-training heads: NSP and the MLM head on
// the gathered masked positions. The losses' gradients are known
// as soon as the logits are (they are the normalised softmax minus one-hot), so each head runs its
// backward right after its forward, while its logits are still in cache.

extension BertModel {
    /// The last hidden state, (N, C), or (R, C) at the kept rows (`lastLayerRows`).
    var lastHidden: UnsafeMutablePointer<Float> { layerOutput(config.hiddenLayerCount) }

    /// The row of sequence b's [CLS] token in the last hidden state.
    func clsRow(_ b: Int) -> Int {
        lastLayerRows.map { Int($0.sequenceStarts[b]) } ?? b * activeLength
    }

    /// `clsRows` = the [CLS] rows of the last hidden state, `pooled` = tanh(dense(clsRows)), (B, C).
    func poolerForward(_ B: Int) {
        let C = config.hiddenSize, a = activations
        for b in 0..<B { (a.clsRows + b * C).update(from: lastHidden + clsRow(b) * C, count: C) }
        timed(.gemm) {
            linearForward(
                a.pooled, a.clsRows, param(offsets.poolerWeight), param(offsets.poolerBias),
                rows: B, inputSize: C, outputSize: C)
        }
        timed(.activation) { tanhForward(a.pooled, a.pooled, count: B * C) }
        probe("pooler dense + tanh", nil, a.pooled, B * C)
    }

    /// Backward of `poolerForward` from d(pooled) in `dPooled`: adds d(loss)/d(CLS rows) into the
    /// [CLS] rows of `dResidual`.
    func poolerBackward(_ B: Int) {
        let C = config.hiddenSize, a = activations, o = offsets
        timed(.activation) { tanhBackward(a.dPooled, a.dPooled, a.pooled, count: B * C) }
        timed(.gemm) {
            linearBackward(
                a.dClsRows, grad(o.poolerWeight), grad(o.poolerBias), a.dPooled, a.clsRows, param(o.poolerWeight),
                rows: B, inputSize: C, outputSize: C)
        }
        for b in 0..<B {
            let row = a.dResidual + clsRow(b) * C, g = a.dClsRows + b * C
            for j in 0..<C { row[j] += g[j] }
        }
    }

    /// Sum in double precision: losses of a large batch differ by orders of magnitude.
    func sum(_ values: UnsafePointer<Float>, _ count: Int) -> Double {
        var total = 0.0
        for i in 0..<count { total += Double(values[i]) }
        return total
    }
}

extension BertForPreTraining {
    /// Gathers P <= `logitsChunkRows` masked rows of the last hidden state and applies the MLM
    /// transform (dense, activation, LayerNorm) into `transformOut`, (P, C).
    func mlmTransformForward(_ positions: UnsafePointer<Int32>, _ P: Int) {
        let C = config.hiddenSize, a = activations, o = offsets
        timed(.embedding) { gatherRows(a.gathered, lastHidden, positions, count: P, channels: C) }
        timed(.gemm) {
            linearForward(a.transformPre, a.gathered, param(o.transformWeight), nil, rows: P, inputSize: C, outputSize: C)
        }
        timed(.activation) {
            biasActivationForward(
                a.transformAct, a.transformPre, param(o.transformBias), config.hiddenActivation, rows: P, columns: C)
        }
        timed(.layerNorm) {
            layerNormForward(
                a.transformOut, a.transformMean, a.transformRstd, a.transformAct, param(o.transformNormWeight),
                param(o.transformNormBias), rows: P, columns: C, epsilon: config.layerNormEpsilon)
        }
        probe("MLM transform (dense, activation, LayerNorm)", nil, a.transformOut, P * C)
    }

    /// Both heads' forward, losses and (with `computeGradients`) backward down to the last hidden
    /// state, whose gradient (N, C), or (R, C) at the kept rows, they leave in `dResidual`.
    /// `positions` are rows of the last hidden state.
    func headsForwardBackward(
        _ positions: UnsafePointer<Int32>?, _ labels: UnsafePointer<Int32>?, _ P: Int,
        _ nspLabels: UnsafePointer<Int32>?, _ B: Int,
        _ maskedTokenNormalizer: Float, _ sequenceNormalizer: Float, _ computeGradients: Bool
    ) -> StepResult {
        let C = config.hiddenSize, V = config.vocabSize, K = config.nspClassCount
        let a = activations, o = offsets
        var result = StepResult()
        // d(last hidden state) is assembled here: the [CLS] rows from the pooler, the masked rows
        // from the MLM head.
        let hiddenRows = lastLayerRows?.count ?? B * activeLength
        if computeGradients { timed(.other) { a.dResidual.update(repeating: 0, count: hiddenRows * C) } }

        if K > 0, let nspLabels {
            poolerForward(B)
            timed(.gemm) {
                linearForward(a.nspLogits, a.pooled, param(o.nspWeight), param(o.nspBias), rows: B, inputSize: C, outputSize: K)
            }
            let dloss = 1 / sequenceNormalizer
            timed(.loss) {
                crossEntropyForwardBackward(
                    a.nspLosses, a.nspCorrect, computeGradients ? a.nspLogits : nil, a.nspLogits, nspLabels,
                    dloss: dloss, rows: B, vocabularySize: K)
            }
            result.nspLoss = Float(sum(a.nspLosses, B) / Double(sequenceNormalizer))
            result.nspCorrect = (0..<B).reduce(0) { $0 + (a.nspCorrect[$1] ? 1 : 0) }
            result.nspCount = B
            if computeGradients {
                timed(.gemm) {
                    linearBackward(
                        a.dPooled, grad(o.nspWeight), grad(o.nspBias), a.nspLogits, a.pooled, param(o.nspWeight),
                        rows: B, inputSize: C, outputSize: K)
                }
                poolerBackward(B)
            }
        }

        if P > 0, let positions, let labels {
            // A chunk of masked positions at a time goes all the way: transform, decoder (tied to the
            // word embeddings), cross-entropy and, with gradients, back to the hidden rows. So the
            // head's buffers hold one chunk, whatever the masking rate.
            let dloss = 1 / maskedTokenNormalizer
            var start = 0
            while start < P {
                let rows = min(logitsChunkRows, P - start)
                mlmTransformForward(positions + start, rows)
                timed(.gemm) {
                    linearForward(
                        a.logits, a.transformOut, param(o.wordEmbeddings), param(o.mlmBias), rows: rows, inputSize: C,
                        outputSize: V)
                }
                timed(.loss) {
                    crossEntropyForwardBackward(
                        a.mlmLosses + start, a.mlmCorrect + start, computeGradients ? a.logits : nil, a.logits,
                        labels + start, dloss: dloss, rows: rows, vocabularySize: V)
                }
                if computeGradients {
                    timed(.gemm) {
                        linearBackward(
                            a.dTransform, grad(o.wordEmbeddings), grad(o.mlmBias), a.logits, a.transformOut,
                            param(o.wordEmbeddings), rows: rows, inputSize: C, outputSize: V)
                    }
                    timed(.layerNorm) {
                        layerNormBackward(
                            a.dTransform, grad(o.transformNormWeight), grad(o.transformNormBias), a.dTransform,
                            a.transformAct, param(o.transformNormWeight), a.transformMean, a.transformRstd,
                            rows: rows, columns: C)
                    }
                    timed(.activation) {
                        activationBackward(
                            a.dTransform, a.dTransform, a.transformPre, config.hiddenActivation, count: rows * C)
                    }
                    timed(.gemm) {
                        linearBackward(
                            a.dGathered, grad(o.transformWeight), grad(o.transformBias), a.dTransform, a.gathered,
                            param(o.transformWeight), rows: rows, inputSize: C, outputSize: C)
                    }
                    timed(.embedding) { scatterAddRows(a.dResidual, a.dGathered, positions + start, count: rows, channels: C) }
                }
                start += rows
            }
            result.mlmLoss = Float(sum(a.mlmLosses, P) / Double(maskedTokenNormalizer))
            result.mlmCorrect = (0..<P).reduce(0) { $0 + (a.mlmCorrect[$1] ? 1 : 0) }
            result.mlmCount = P
        }
        result.loss = result.mlmLoss + result.nspLoss
        return result
    }
}
