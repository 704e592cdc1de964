import Kernels

// Embeddings and post-LN encoder layers, forward and backward. Backward mirrors forward line by line
// in reverse.

extension BertForPreTraining {
    // MARK: - Forward

    /// Embeddings and all encoder layers for B sequences; fills the activation buffers.
    func encoderForward(
        _ ids: UnsafePointer<Int32>, _ types: UnsafePointer<Int32>, _ mask: UnsafePointer<Int32>,
        _ B: Int, _ dropout: DropoutSettings
    ) {
        let T = sequenceLength, N = B * T, C = config.hiddenSize, eps = config.layerNormEpsilon
        let a = activations, o = offsets
        lastSequenceCount = B

        timed(.embedding) {
            embeddingForward(
                a.embeddingSum, ids, types, param(o.wordEmbeddings), param(o.positionEmbeddings),
                param(o.tokenTypeEmbeddings), batch: B, length: T, channels: C)
        }
        timed(.layerNorm) {
            layerNormForward(
                a.embeddingOut, a.embeddingMean, a.embeddingRstd, a.embeddingSum,
                param(o.embeddingNormWeight), param(o.embeddingNormBias), rows: N, columns: C, epsilon: eps)
            if let mask = dropout.hiddenMask(layer: 0, site: DropoutSite.embeddings) {
                dropoutForward(a.embeddingOut, a.embeddingOut, mask, rows: N, columns: C)
            }
        }
        probe("embeddings + LayerNorm", nil, a.embeddingOut, N * C)
        for l in 0..<config.hiddenLayerCount {
            layerForward(l, input: layerOutput(l), mask, B, dropout)
        }
    }

    func layerForward(
        _ l: Int, input x: UnsafePointer<Float>, _ mask: UnsafePointer<Int32>, _ B: Int, _ dropout: DropoutSettings
    ) {
        let T = sequenceLength, N = B * T, C = config.hiddenSize, I = config.intermediateSize
        let eps = config.layerNormEpsilon
        let p = offsets.layers[l], a = activations, act = a.layers[l]

        // Self-attention: one GEMM for the three projections, then per-head GEMMs on strided views.
        timed(.gemm) {
            linearForward(act.qkv, x, param(p.qkvWeight), param(p.qkvBias), rows: N, inputSize: C, outputSize: 3 * C)
        }
        probe("query/key/value projection", l, act.qkv, N * 3 * C)
        attentionForward(l, act, mask, B, dropout)
        probe("attention (scores, masked softmax, context)", l, act.context, N * C)
        timed(.gemm) {
            linearForward(a.dense, act.context, param(p.attentionOutputWeight), nil, rows: N, inputSize: C, outputSize: C)
        }
        timed(.layerNorm) {
            residualLayerNormForward(
                act.hidden1, act.residual1, act.mean1, act.rstd1, a.dense, param(p.attentionOutputBias), x,
                param(p.attentionNormWeight), param(p.attentionNormBias),
                dropout.hiddenMask(layer: l + 1, site: DropoutSite.attentionOutput), rows: N, columns: C, epsilon: eps)
        }
        probe("attention output dense + residual + LayerNorm", l, act.hidden1, N * C)

        // Feed-forward: GEMM, fused bias + activation, GEMM, fused bias + dropout + residual + LayerNorm.
        // The activation output is not kept (backward recomputes it from `pre`): it lives in the
        // (N, I) scratch that backward uses for its gradient, which saves an (N, I) buffer per layer.
        timed(.gemm) {
            linearForward(act.pre, act.hidden1, param(p.intermediateWeight), nil, rows: N, inputSize: C, outputSize: I)
        }
        probe("intermediate dense", l, act.pre, N * I)
        timed(.activation) {
            biasActivationForward(
                a.dIntermediate, act.pre, param(p.intermediateBias), config.hiddenActivation, rows: N, columns: I)
        }
        probe("bias + activation", l, a.dIntermediate, N * I)
        timed(.gemm) {
            linearForward(a.dense, a.dIntermediate, param(p.outputWeight), nil, rows: N, inputSize: I, outputSize: C)
        }
        timed(.layerNorm) {
            residualLayerNormForward(
                act.output, act.residual2, act.mean2, act.rstd2, a.dense, param(p.outputBias), act.hidden1,
                param(p.outputNormWeight), param(p.outputNormBias),
                dropout.hiddenMask(layer: l + 1, site: DropoutSite.feedForwardOutput), rows: N, columns: C, epsilon: eps)
        }
        probe("output dense + residual + LayerNorm", l, act.output, N * C)
    }

    /// Scores, masked softmax (+ dropout) and context for every (sequence, head). Q, K, V of head h of
    /// sequence b are (T, hs) views into qkv with row stride 3C; the context is written straight into
    /// its (T, hs) slot of the (N, C) context buffer, so no transposing copies are made.
    ///
    /// The B*NH heads are independent small problems (T x T x hs): they are spread over the element-wise
    /// workers with single-threaded GEMMs, so each head's scores stay in that core's cache from the
    /// first GEMM through softmax to the second, and no BLAS thread hand-off happens per call.
    func attentionForward(
        _ l: Int, _ act: Activations.Layer, _ mask: UnsafePointer<Int32>, _ B: Int, _ dropout: DropoutSettings
    ) {
        let T = sequenceLength, C = config.hiddenSize, NH = config.attentionHeadCount, hs = config.headSize
        let scale = 1 / Float(hs).squareRoot()
        let attentionDropout = dropout.attentionMask(layer: l)
        let scratch = activations.attentionScratch
        let weights = attentionDropout == nil ? act.probs : scratch
        overHeads(B * NH) { bh, softmaxPart in
            let b = bh / NH, h = bh % NH
            let q = act.qkv + b * T * 3 * C + h * hs
            let head = bh * T * T
            gemm(
                .none, .transposed, m: T, n: T, k: hs, alpha: scale, a: q, lda: 3 * C, b: q + C, ldb: 3 * C,
                beta: 0, c: act.probs + head, ldc: T)
            softmaxPart {
                attentionSoftmaxForward(
                    act.probs, attentionDropout == nil ? nil : scratch, mask, attentionDropout,
                    rows: (bh * T)..<((bh + 1) * T), heads: NH, length: T)
            }
            gemm(
                .none, .none, m: T, n: hs, k: T, a: weights + head, lda: T, b: q + 2 * C, ldb: 3 * C,
                beta: 0, c: act.context + b * T * C + h * hs, ldc: C)
        }
    }

    /// Runs `body(head, softmaxPart)` for every head, spread over the element-wise workers with
    /// single-threaded BLAS (restored afterwards). `body` runs its softmax through `softmaxPart`, so
    /// that profiling can split the loop's time between the attention GEMMs and the softmax.
    func overHeads(_ count: Int, _ body: (_ head: Int, _ softmaxPart: (() -> Void) -> Void) -> Void) {
        let start = OpProfile.now()
        let times = profile == nil ? nil : HeadTimes()
        func run(_ range: Range<Int>) {
            guard let times else {
                for head in range { body(head) { $0() } }
                return
            }
            let chunkStart = OpProfile.now()
            var softmax = 0.0
            for head in range {
                body(head) { part in
                    let partStart = OpProfile.now()
                    part()
                    softmax += OpProfile.now() - partStart
                }
            }
            times.add(softmax: softmax, all: OpProfile.now() - chunkStart)
        }
        if min(Parallel.workerCount, count) <= 1 {
            run(0..<count)
        } else {
            let blasThreads = BLASRuntime.threadCount
            BLASRuntime.setThreadCount(1)
            Parallel.forEachChunk(count, minimumChunk: 1, run)
            BLASRuntime.setThreadCount(blasThreads)
        }
        if let profile, let times {
            let wall = OpProfile.now() - start
            profile.add(.softmax, seconds: wall * times.softmaxShare)
            profile.add(.attention, seconds: wall * (1 - times.softmaxShare))
        }
    }

    // MARK: - Backward

    /// Backward through all layers and the embeddings. On entry `dResidual` holds d(loss)/d(last
    /// hidden state), assembled by `headsForwardBackward`.
    func encoderBackward(
        _ ids: UnsafePointer<Int32>, _ types: UnsafePointer<Int32>, _ B: Int, _ dropout: DropoutSettings,
        _ onGradientsReady: ((Range<Int>) -> Void)?
    ) {
        let T = sequenceLength, N = B * T, C = config.hiddenSize
        let a = activations, o = offsets
        for l in stride(from: config.hiddenLayerCount - 1, through: 0, by: -1) {
            layerBackward(l, input: layerOutput(l), B, dropout)
            onGradientsReady?(table.layerRanges[l])
        }
        timed(.layerNorm) {
            if let dropoutMask = dropout.hiddenMask(layer: 0, site: DropoutSite.embeddings) {
                dropoutBackward(a.dResidual, a.dResidual, dropoutMask, rows: N, columns: C)
            }
            layerNormBackward(
                a.dResidual, grad(o.embeddingNormWeight), grad(o.embeddingNormBias), a.dResidual, a.embeddingSum,
                param(o.embeddingNormWeight), a.embeddingMean, a.embeddingRstd, rows: N, columns: C)
        }
        let padding = (0..<config.vocabSize).contains(config.padTokenID) ? Int32(config.padTokenID) : nil
        timed(.embedding) {
            embeddingBackward(
                grad(o.wordEmbeddings), grad(o.positionEmbeddings), grad(o.tokenTypeEmbeddings), a.dResidual,
                ids, types, paddingID: padding, batch: B, length: T, channels: C)
        }
        onGradientsReady?(table.embeddingRange)
    }

    /// On entry `dResidual` holds d(loss)/d(layer output); on exit d(loss)/d(layer input).
    func layerBackward(_ l: Int, input x: UnsafePointer<Float>, _ B: Int, _ dropout: DropoutSettings) {
        let T = sequenceLength, N = B * T, C = config.hiddenSize, I = config.intermediateSize
        let p = offsets.layers[l], a = activations, act = a.layers[l]
        let dh = a.dResidual

        // Feed-forward, in reverse.
        var dOutput = UnsafePointer(dh)
        timed(.layerNorm) {
            layerNormBackward(
                dh, grad(p.outputNormWeight), grad(p.outputNormBias), dh, act.residual2, param(p.outputNormWeight),
                act.mean2, act.rstd2, rows: N, columns: C)
            if let dropoutMask = dropout.hiddenMask(layer: l + 1, site: DropoutSite.feedForwardOutput) {
                dropoutBackward(a.dense, dh, dropoutMask, rows: N, columns: C)
                dOutput = UnsafePointer(a.dense)
            }
        }
        // Recompute the activation output for the weight gradient (and its derivative), then overwrite
        // it with the input gradient (the GEMM for dinp reads only dOutput and the weight).
        timed(.activation) {
            activationForwardWithDerivative(
                a.dIntermediate, a.activationDerivative, act.pre, config.hiddenActivation, count: N * I)
        }
        timed(.gemm) {
            linearBackward(
                nil, grad(p.outputWeight), grad(p.outputBias), dOutput, a.dIntermediate, param(p.outputWeight),
                rows: N, inputSize: I, outputSize: C)
            linearBackward(
                a.dIntermediate, nil, nil, dOutput, a.dIntermediate, param(p.outputWeight),
                rows: N, inputSize: I, outputSize: C)
        }
        timed(.activation) {
            activationBackward(a.dIntermediate, a.dIntermediate, derivative: a.activationDerivative, count: N * I)
        }
        timed(.gemm) {
            linearBackward(
                dh, grad(p.intermediateWeight), grad(p.intermediateBias), a.dIntermediate, act.hidden1,
                param(p.intermediateWeight), rows: N, inputSize: C, outputSize: I, accumulateInput: true)
        }

        // Self-attention, in reverse.
        var dAttentionOutput = UnsafePointer(dh)
        timed(.layerNorm) {
            layerNormBackward(
                dh, grad(p.attentionNormWeight), grad(p.attentionNormBias), dh, act.residual1,
                param(p.attentionNormWeight), act.mean1, act.rstd1, rows: N, columns: C)
            if let dropoutMask = dropout.hiddenMask(layer: l + 1, site: DropoutSite.attentionOutput) {
                dropoutBackward(a.dense, dh, dropoutMask, rows: N, columns: C)
                dAttentionOutput = UnsafePointer(a.dense)
            }
        }
        timed(.gemm) {
            linearBackward(
                a.dContext, grad(p.attentionOutputWeight), grad(p.attentionOutputBias), dAttentionOutput, act.context,
                param(p.attentionOutputWeight), rows: N, inputSize: C, outputSize: C)
        }
        attentionBackward(l, act, B, dropout)
        timed(.gemm) {
            linearBackward(
                dh, grad(p.qkvWeight), grad(p.qkvBias), a.dqkv, x, param(p.qkvWeight),
                rows: N, inputSize: C, outputSize: 3 * C, accumulateInput: true)
        }
    }

    /// From d(context) in `dContext` to d(qkv) in `dqkv`, mirroring `attentionForward` head by head.
    func attentionBackward(_ l: Int, _ act: Activations.Layer, _ B: Int, _ dropout: DropoutSettings) {
        let T = sequenceLength, C = config.hiddenSize, NH = config.attentionHeadCount, hs = config.headSize
        let scale = 1 / Float(hs).squareRoot()
        let a = activations
        let attentionDropout = dropout.attentionMask(layer: l)
        let scratch = a.attentionScratch
        overHeads(B * NH) { bh, softmaxPart in
            let b = bh / NH, h = bh % NH
            let head = bh * T * T
            let rows = (bh * T)..<((bh + 1) * T)
            let base = b * T * 3 * C + h * hs
            let dctx = a.dContext + b * T * C + h * hs
            // The dropped probabilities (operand of the context GEMM) are regenerated, not stored.
            var weights = UnsafePointer(act.probs)
            if let attentionDropout {
                softmaxPart { dropoutForward(scratch, act.probs, attentionDropout, rows: rows, columns: T) }
                weights = UnsafePointer(scratch)
            }
            // dV = P^T dctx
            gemm(
                .transposed, .none, m: T, n: hs, k: T, a: weights + head, lda: T, b: dctx, ldb: C,
                beta: 0, c: a.dqkv + base + 2 * C, ldc: 3 * C)
            // dP = dctx V^T (overwrites this head's dropped probabilities, no longer needed)
            gemm(
                .none, .transposed, m: T, n: T, k: hs, a: dctx, lda: C, b: act.qkv + base + 2 * C, ldb: 3 * C,
                beta: 0, c: scratch + head, ldc: T)
            softmaxPart { attentionSoftmaxBackward(scratch, act.probs, attentionDropout, rows: rows, length: T) }
            // scores = scale Q K^T: dQ = scale dS K, dK = scale dS^T Q
            gemm(
                .none, .none, m: T, n: hs, k: T, alpha: scale, a: scratch + head, lda: T,
                b: act.qkv + base + C, ldb: 3 * C, beta: 0, c: a.dqkv + base, ldc: 3 * C)
            gemm(
                .transposed, .none, m: T, n: hs, k: T, alpha: scale, a: scratch + head, lda: T,
                b: act.qkv + base, ldb: 3 * C, beta: 0, c: a.dqkv + base + C, ldc: 3 * C)
        }
    }
}
