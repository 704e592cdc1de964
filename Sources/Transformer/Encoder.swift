import Kernels

// Embeddings and post-LN encoder layers, forward and backward. Backward mirrors forward line by line
// in reverse.

extension BertModel {
    // MARK: - Forward

    /// Embeddings and all encoder layers for B sequences; fills the activation buffers.
    func encoderForward(
        _ ids: UnsafePointer<Int32>, _ types: UnsafePointer<Int32>, _ mask: UnsafePointer<Int32>,
        _ B: Int, _ dropout: DropoutSettings
    ) {
        let T = activeLength, N = B * T, C = config.hiddenSize, eps = config.layerNormEpsilon
        let a = activations, o = offsets
        lastSequenceCount = B

        timed(.embedding) {
            promptEncoder?.forward(param(0))
            embeddingForward(
                a.embeddingSum, ids, types, param(o.wordEmbeddings), param(o.positionEmbeddings),
                param(o.tokenTypeEmbeddings), prompts: config.prompt == nil ? nil : promptTable(),
                firstPosition: config.keyPrefixLength, batch: B, length: T, channels: C)
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
        var keyMask = mask
        if config.keyPrefixLength > 0 {
            // Every query attends to the prefix: n ones in front of each sequence's mask.
            let n = config.keyPrefixLength, S = T + n
            for b in 0..<B {
                (a.keyMask + b * S).update(repeating: 1, count: n)
                (a.keyMask + b * S + n).update(from: mask + b * T, count: T)
            }
            keyMask = UnsafePointer(a.keyMask)
        }
        let L = config.hiddenLayerCount
        for l in 0..<L {
            layerForward(l, input: layerOutput(l), keyMask, B, dropout, l == L - 1 ? lastLayerRows : nil)
        }
    }

    /// Encoder layer l on every token, or with `kept` on the kept rows only (keys and values still on
    /// every token).
    func layerForward(
        _ l: Int, input x: UnsafePointer<Float>, _ mask: UnsafePointer<Int32>, _ B: Int, _ dropout: DropoutSettings,
        _ kept: KeptRows?
    ) {
        let T = activeLength, N = B * T, C = config.hiddenSize, I = config.intermediateSize
        let eps = config.layerNormEpsilon
        let p = offsets.layers[l], a = activations, act = a.layers[l]
        // Rows from the attention output on.
        let M = kept?.count ?? N

        // Self-attention: one GEMM for the three projections, then per-head GEMMs on strided views.
        timed(.gemm) {
            linearForward(act.qkv, x, param(p.qkvWeight), param(p.qkvBias), rows: N, inputSize: C, outputSize: 3 * C)
        }
        for module in [LoraModule.query, .key, .value] {
            loraForward(qkvSite(l, module, input: x, output: act.qkv), dropout)
        }
        probe("query/key/value projection", l, act.qkv, N * 3 * C)
        // The residual input of the kept rows goes where their residual sum will be (the kernel
        // reads each element before it writes it).
        var residual = x
        if let kept {
            timed(.other) {
                gatherRows(a.keptQueries, act.qkv, kept.tokenRows, count: M, channels: C, inputStride: 3 * C)
                gatherRows(act.residual1, x, kept.tokenRows, count: M, channels: C)
            }
            residual = UnsafePointer(act.residual1)
        }
        attentionForward(l, act, mask, B, dropout, kept)
        probe("attention (scores, masked softmax, context)", l, act.context, M * C)
        timed(.gemm) {
            linearForward(a.dense, act.context, param(p.attentionOutputWeight), nil, rows: M, inputSize: C, outputSize: C)
        }
        loraForward(LoraSite(l, .attentionOutput, input: act.context, output: a.dense, rows: M, kept: kept), dropout)
        timed(.layerNorm) {
            residualLayerNormForward(
                act.hidden1, act.residual1, act.mean1, act.rstd1, a.dense, param(p.attentionOutputBias), residual,
                param(p.attentionNormWeight), param(p.attentionNormBias),
                dropout.hiddenMask(layer: l + 1, site: DropoutSite.attentionOutput, kept: kept), rows: M, columns: C,
                epsilon: eps)
        }
        probe("attention output dense + residual + LayerNorm", l, act.hidden1, M * C)

        // Feed-forward: GEMM, fused bias + activation, GEMM, fused bias + dropout + residual + LayerNorm.
        // The activation output is not kept (backward recomputes it from `pre`): it lives in the
        // (N, I) scratch that backward uses for its gradient, which saves an (N, I) buffer per layer.
        timed(.gemm) {
            linearForward(act.pre, act.hidden1, param(p.intermediateWeight), nil, rows: M, inputSize: C, outputSize: I)
        }
        loraForward(LoraSite(l, .intermediate, input: act.hidden1, output: act.pre, rows: M, kept: kept), dropout)
        probe("intermediate dense", l, act.pre, M * I)
        timed(.activation) {
            biasActivationForward(
                a.dIntermediate, act.pre, param(p.intermediateBias), config.hiddenActivation, rows: M, columns: I)
        }
        probe("bias + activation", l, a.dIntermediate, M * I)
        timed(.gemm) {
            linearForward(a.dense, a.dIntermediate, param(p.outputWeight), nil, rows: M, inputSize: I, outputSize: C)
        }
        loraForward(LoraSite(l, .output, input: a.dIntermediate, output: a.dense, rows: M, kept: kept), dropout)
        timed(.layerNorm) {
            residualLayerNormForward(
                act.output, act.residual2, act.mean2, act.rstd2, a.dense, param(p.outputBias), act.hidden1,
                param(p.outputNormWeight), param(p.outputNormBias),
                dropout.hiddenMask(layer: l + 1, site: DropoutSite.feedForwardOutput, kept: kept), rows: M, columns: C,
                epsilon: eps)
        }
        probe("output dense + residual + LayerNorm", l, act.output, M * C)
    }

    /// The query rows of sequence b: where they start among the rows of the layer's context and how
    /// many (all T of them, or the kept ones); the scores of head h are then the rows from
    /// `NH * first + h * count` of the probabilities.
    func queryRows(_ b: Int, _ kept: KeptRows?) -> (first: Int, count: Int) {
        kept?.queries(of: b) ?? (b * activeLength, activeLength)
    }

    /// Scores, masked softmax (+ dropout) and context for every (sequence, head). Q, K, V of head h of
    /// sequence b are (T, hs) views into qkv with row stride 3C; the context is written straight into
    /// its (T, hs) slot of the (N, C) context buffer, so no transposing copies are made. With prefix
    /// tuning each head's S = n + T keys are the prefix's n (a view into its table) and then the
    /// tokens': the score and probability rows are S long, and `mask` holds S flags per sequence.
    ///
    /// The B*NH heads are independent small problems (T x S x hs): they are spread over the element-wise
    /// workers with single-threaded GEMMs, so each head's scores stay in that core's cache from the
    /// first GEMM through softmax to the second, and no BLAS thread hand-off happens per call.
    func attentionForward(
        _ l: Int, _ act: Activations.Layer, _ mask: UnsafePointer<Int32>, _ B: Int, _ dropout: DropoutSettings,
        _ kept: KeptRows?
    ) {
        let T = activeLength, C = config.hiddenSize, NH = config.attentionHeadCount, hs = config.headSize
        let n = config.keyPrefixLength, S = T + n
        let scale = 1 / Float(hs).squareRoot()
        let attentionDropout = dropout.attentionMask(layer: l, kept: kept)
        let scratch = activations.attentionScratch
        let weights = attentionDropout == nil ? act.probs : scratch
        let prefix = prefixKeysAndValues(l)
        // Queries are in qkv, or gathered into keptQueries for the kept rows.
        let (queries, queryStride) = kept == nil ? (act.qkv, 3 * C) : (activations.keptQueries, C)
        overHeads(B * NH) { bh, softmaxPart in
            let b = bh / NH, h = bh % NH
            let (first, count) = queryRows(b, kept)
            let keys = act.qkv + b * T * 3 * C + C + h * hs
            let headQueries = queries + first * queryStride + h * hs
            let firstRow = NH * first + h * count
            let block = firstRow * S
            let context = act.context + first * C + h * hs
            if let prefix {
                gemm(
                    .none, .transposed, m: count, n: n, k: hs, alpha: scale, a: headQueries, lda: queryStride,
                    b: prefix.keys + h * hs, ldb: prefix.stride, beta: 0, c: act.probs + block, ldc: S)
            }
            gemm(
                .none, .transposed, m: count, n: T, k: hs, alpha: scale, a: headQueries,
                lda: queryStride, b: keys, ldb: 3 * C, beta: 0, c: act.probs + block + n, ldc: S)
            softmaxPart {
                attentionSoftmaxForward(
                    act.probs, attentionDropout == nil ? nil : scratch, mask + b * S, attentionDropout,
                    rows: firstRow..<(firstRow + count), length: S)
            }
            if let prefix {
                gemm(
                    .none, .none, m: count, n: hs, k: n, a: weights + block, lda: S, b: prefix.values + h * hs,
                    ldb: prefix.stride, beta: 0, c: context, ldc: C)
            }
            gemm(
                .none, .none, m: count, n: hs, k: T, a: weights + block + n, lda: S, b: keys + C, ldb: 3 * C,
                beta: prefix == nil ? 0 : 1, c: context, ldc: C)
        }
    }

    /// Layer l's prefix keys and values (prefix tuning): (n, C) views into the prefix table, rows
    /// `stride` apart; nil without prefix tuning.
    func prefixKeysAndValues(_ l: Int) -> (keys: UnsafePointer<Float>, values: UnsafePointer<Float>, stride: Int)? {
        guard config.prefix != nil, let table = promptTable() else { return nil }
        let C = config.hiddenSize
        let keys = UnsafePointer(table + 2 * l * C)
        return (keys, keys + C, PrefixTuningSettings.rowWidth(config))
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
        let T = activeLength, N = B * T, C = config.hiddenSize
        let a = activations, o = offsets
        let L = config.hiddenLayerCount
        // Backward goes down to the lowest layer with a trainable parameter (all of them unless
        // parameters are frozen), and needs that layer's input gradient only when more lies below.
        let lowest = table.embeddingRange.isEmpty ? (0..<L).first { !table.layerRanges[$0].isEmpty } ?? L : -1
        if let promptEncoder { promptEncoder.tableGradient.update(repeating: 0, count: promptEncoder.tableCount) }
        for l in stride(from: L - 1, through: 0, by: -1) {
            if l >= lowest {
                layerBackward(l, input: layerOutput(l), B, dropout, l == L - 1 ? lastLayerRows : nil, needsInputGradient: l > lowest)
            }
            // Every layer has added to a prefix's gradient by now: on to its encoder's.
            if l == 0, config.prefix != nil { timed(.other) { promptEncoder?.backward(param(0), gradient: grad) } }
            onGradientsReady?(table.layerRanges[l])
        }
        guard lowest < 0 else {
            onGradientsReady?(table.embeddingRange)
            return
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
                grad(o.wordEmbeddings), grad(o.positionEmbeddings), grad(o.tokenTypeEmbeddings),
                dprompts: config.prompt == nil ? nil : promptTableGradient(), a.dResidual,
                ids, types, paddingID: padding, firstPosition: config.keyPrefixLength, batch: B, length: T, channels: C)
        }
        if config.prompt != nil { timed(.other) { promptEncoder?.backward(param(0), gradient: grad) } }
        onGradientsReady?(table.embeddingRange)
    }

    /// On entry `dResidual` holds d(loss)/d(layer output) (at the kept rows with `kept`); on exit
    /// d(loss)/d(layer input), (N, C), unless `needsInputGradient` is false (nothing below trains).
    func layerBackward(
        _ l: Int, input x: UnsafePointer<Float>, _ B: Int, _ dropout: DropoutSettings, _ kept: KeptRows?,
        needsInputGradient: Bool = true
    ) {
        let T = activeLength, N = B * T, C = config.hiddenSize, I = config.intermediateSize
        let p = offsets.layers[l], a = activations, act = a.layers[l]
        let dh = a.dResidual
        let M = kept?.count ?? N

        // Feed-forward, in reverse.
        var dOutput = UnsafePointer(dh)
        timed(.layerNorm) {
            layerNormBackward(
                dh, grad(p.outputNormWeight), grad(p.outputNormBias), dh, act.residual2, param(p.outputNormWeight),
                act.mean2, act.rstd2, rows: M, columns: C)
            if let dropoutMask = dropout.hiddenMask(layer: l + 1, site: DropoutSite.feedForwardOutput, kept: kept) {
                dropoutBackward(a.dense, dh, dropoutMask, rows: M, columns: C)
                dOutput = UnsafePointer(a.dense)
            }
        }
        // Recompute the activation output for the weight gradient (and its derivative), then overwrite
        // it with the input gradient (the GEMM for dinp reads only dOutput and the weight).
        timed(.activation) {
            activationForwardWithDerivative(
                a.dIntermediate, a.activationDerivative, act.pre, config.hiddenActivation, count: M * I)
        }
        let outputSite = LoraSite(
            l, .output, input: a.dIntermediate, output: UnsafeMutablePointer(mutating: dOutput), rows: M, kept: kept)
        loraFactorGradients(outputSite, dropout)
        timed(.gemm) {
            linearBackward(
                nil, grad(p.outputWeight), grad(p.outputBias), dOutput, a.dIntermediate, param(p.outputWeight),
                rows: M, inputSize: I, outputSize: C)
            linearBackward(
                a.dIntermediate, nil, nil, dOutput, a.dIntermediate, param(p.outputWeight),
                rows: M, inputSize: I, outputSize: C)
        }
        loraInputGradient(outputSite, dInput: a.dIntermediate, dropout)
        timed(.activation) {
            activationBackward(a.dIntermediate, a.dIntermediate, derivative: a.activationDerivative, count: M * I)
        }
        timed(.gemm) {
            linearBackward(
                dh, grad(p.intermediateWeight), grad(p.intermediateBias), a.dIntermediate, act.hidden1,
                param(p.intermediateWeight), rows: M, inputSize: C, outputSize: I, accumulateInput: true)
        }
        loraBackward(
            LoraSite(l, .intermediate, input: act.hidden1, output: a.dIntermediate, rows: M, kept: kept), dInput: dh, dropout)

        // Self-attention, in reverse.
        var dAttentionOutput = UnsafePointer(dh)
        timed(.layerNorm) {
            layerNormBackward(
                dh, grad(p.attentionNormWeight), grad(p.attentionNormBias), dh, act.residual1,
                param(p.attentionNormWeight), act.mean1, act.rstd1, rows: M, columns: C)
            if let dropoutMask = dropout.hiddenMask(layer: l + 1, site: DropoutSite.attentionOutput, kept: kept) {
                dropoutBackward(a.dense, dh, dropoutMask, rows: M, columns: C)
                dAttentionOutput = UnsafePointer(a.dense)
            }
        }
        timed(.gemm) {
            linearBackward(
                a.dContext, grad(p.attentionOutputWeight), grad(p.attentionOutputBias), dAttentionOutput, act.context,
                param(p.attentionOutputWeight), rows: M, inputSize: C, outputSize: C)
        }
        loraBackward(
            LoraSite(
                l, .attentionOutput, input: act.context, output: UnsafeMutablePointer(mutating: dAttentionOutput), rows: M,
                kept: kept),
            dInput: a.dContext, dropout)
        attentionBackward(l, act, B, dropout, kept)
        if let kept {
            // Back from the kept rows to all N: the queries' gradient (in dContext) into dqkv, the
            // residual stream's in place; the other rows reached no loss.
            timed(.other) {
                expandRows(
                    a.dqkv, a.dContext, kept.tokenRows, count: M, rows: N, channels: C, outputStride: 3 * C)
                expandRows(dh, dh, kept.tokenRows, count: M, rows: N, channels: C)
            }
        }
        timed(.gemm) {
            linearBackward(
                needsInputGradient ? dh : nil, grad(p.qkvWeight), grad(p.qkvBias), a.dqkv, x, param(p.qkvWeight),
                rows: N, inputSize: C, outputSize: 3 * C, accumulateInput: true)
        }
        for module in [LoraModule.query, .key, .value] {
            loraBackward(qkvSite(l, module, input: x, output: a.dqkv), dInput: needsInputGradient ? dh : nil, dropout)
        }
    }

    /// The LoRA site of the query, key or value projection: its columns of the (N, 3C) qkv layout.
    func qkvSite(_ l: Int, _ module: LoraModule, input x: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) -> LoraSite {
        let C = config.hiddenSize
        var site = LoraSite(l, module, input: x, output: output + module.rawValue * C, rows: lastSequenceCount * activeLength, kept: nil)
        site.outputStride = 3 * C
        return site
    }

    /// From d(context) in `dContext` to d(qkv) in `dqkv`, mirroring `attentionForward` head by head.
    /// With `kept`, the kept rows' query gradient is left in `dContext` instead (each head's block
    /// of d(context) is no longer needed once its dP is computed). With prefix tuning, each sequence's
    /// gradient of the prefix keys and values goes to `dPrefix`, then into the prefix table's gradient
    /// in sequence order (heads of different sequences run concurrently).
    func attentionBackward(
        _ l: Int, _ act: Activations.Layer, _ B: Int, _ dropout: DropoutSettings, _ kept: KeptRows?
    ) {
        let T = activeLength, C = config.hiddenSize, NH = config.attentionHeadCount, hs = config.headSize
        let n = config.keyPrefixLength, S = T + n
        let scale = 1 / Float(hs).squareRoot()
        let a = activations
        let attentionDropout = dropout.attentionMask(layer: l, kept: kept)
        let scratch = a.attentionScratch
        let prefix = prefixKeysAndValues(l)
        let (queries, queryStride) = kept == nil ? (act.qkv, 3 * C) : (a.keptQueries, C)
        let (dQueries, dQueryStride) = kept == nil ? (a.dqkv, 3 * C) : (a.dContext, C)
        overHeads(B * NH) { bh, softmaxPart in
            let b = bh / NH, h = bh % NH
            let (first, count) = queryRows(b, kept)
            let firstRow = NH * first + h * count
            let block = firstRow * S
            let rows = firstRow..<(firstRow + count)
            let keys = act.qkv + b * T * 3 * C + C + h * hs
            let dKeys = a.dqkv + b * T * 3 * C + C + h * hs
            let dPrefixKeys = a.dPrefix + b * n * 2 * C + h * hs
            let dctx = a.dContext + first * C + h * hs
            let headQueries = queries + first * queryStride + h * hs
            // The dropped probabilities (operand of the context GEMM) are regenerated, not stored.
            var weights = UnsafePointer(act.probs)
            if let attentionDropout {
                softmaxPart { dropoutForward(scratch, act.probs, attentionDropout, rows: rows, columns: S) }
                weights = UnsafePointer(scratch)
            }
            // dV = P^T dctx
            gemm(
                .transposed, .none, m: T, n: hs, k: count, a: weights + block + n, lda: S, b: dctx, ldb: C,
                beta: 0, c: dKeys + C, ldc: 3 * C)
            if prefix != nil {
                gemm(
                    .transposed, .none, m: n, n: hs, k: count, a: weights + block, lda: S, b: dctx, ldb: C,
                    beta: 0, c: dPrefixKeys + C, ldc: 2 * C)
            }
            // dP = dctx V^T (overwrites this head's dropped probabilities, no longer needed)
            if let prefix {
                gemm(
                    .none, .transposed, m: count, n: n, k: hs, a: dctx, lda: C, b: prefix.values + h * hs,
                    ldb: prefix.stride, beta: 0, c: scratch + block, ldc: S)
            }
            gemm(
                .none, .transposed, m: count, n: T, k: hs, a: dctx, lda: C, b: keys + C, ldb: 3 * C,
                beta: 0, c: scratch + block + n, ldc: S)
            softmaxPart { attentionSoftmaxBackward(scratch, act.probs, attentionDropout, rows: rows, length: S) }
            // scores = scale Q K^T: dQ = scale dS K, dK = scale dS^T Q
            let dHeadQueries = dQueries + first * dQueryStride + h * hs
            if let prefix {
                gemm(
                    .none, .none, m: count, n: hs, k: n, alpha: scale, a: scratch + block, lda: S,
                    b: prefix.keys + h * hs, ldb: prefix.stride, beta: 0, c: dHeadQueries, ldc: dQueryStride)
                gemm(
                    .transposed, .none, m: n, n: hs, k: count, alpha: scale, a: scratch + block, lda: S,
                    b: headQueries, ldb: queryStride, beta: 0, c: dPrefixKeys, ldc: 2 * C)
            }
            gemm(
                .none, .none, m: count, n: hs, k: T, alpha: scale, a: scratch + block + n, lda: S,
                b: keys, ldb: 3 * C, beta: prefix == nil ? 0 : 1, c: dHeadQueries, ldc: dQueryStride)
            gemm(
                .transposed, .none, m: T, n: hs, k: count, alpha: scale, a: scratch + block + n, lda: S,
                b: headQueries, ldb: queryStride, beta: 0, c: dKeys, ldc: 3 * C)
        }
        if prefix != nil, let dTable = promptTableGradient() {
            timed(.other) {
                let width = PrefixTuningSettings.rowWidth(config)
                for b in 0..<B {
                    for v in 0..<n {
                        VectorMath.add(dTable + v * width + 2 * l * C, a.dPrefix + (b * n + v) * 2 * C, count: 2 * C)
                    }
                }
            }
        }
    }
}
