import Foundation
import Kernels

/// Text generation with GPT-2: a key/value cache so that each new token costs one position's work
/// (plus attention over the cache), and the decoding rules of transformers' `generate`.
///
/// Prompts of different lengths are left-padded to the longest, as transformers pads them for
/// generation; positions count the real tokens only (transformers' `cumsum(attention_mask) - 1`), and
/// the padding is never attended.
public final class GPT2Cache {
    let layers: Int
    let sequences: Int
    let capacity: Int
    let channels: Int
    /// Per layer, keys and values of every cached position, (B, capacity, C) each.
    let keys: [UnsafeMutablePointer<Float>]
    let values: [UnsafeMutablePointer<Float>]
    /// Positions cached so far (the same for every sequence: padding included).
    public private(set) var length = 0
    /// Per sequence and cached position: 1 for a real token, 0 for padding.
    var mask: [Int32]
    /// Per sequence, the real tokens so far: the next token's position.
    var realTokens: [Int]

    /// An empty cache for `model`, for B sequences of up to `capacity` positions.
    public convenience init(model: GPT2Model, sequences B: Int, capacity: Int) {
        self.init(config: model.config, sequences: B, capacity: capacity)
    }

    init(config: GPT2Config, sequences B: Int, capacity: Int) {
        layers = config.layerCount
        sequences = B
        self.capacity = capacity
        channels = config.hiddenSize
        func buffer() -> UnsafeMutablePointer<Float> {
            let pointer = UnsafeMutablePointer<Float>.allocate(capacity: B * capacity * config.hiddenSize)
            pointer.initialize(repeating: 0, count: B * capacity * config.hiddenSize)
            return pointer
        }
        keys = (0..<config.layerCount).map { _ in buffer() }
        values = (0..<config.layerCount).map { _ in buffer() }
        mask = Array(repeating: 0, count: B * capacity)
        realTokens = Array(repeating: 0, count: B)
    }

    deinit { for pointer in keys + values { pointer.deallocate() } }

    fileprivate func advance(by count: Int) { length += count }
}

/// How `generate` picks each token.
public struct GenerationSettings: Sendable {
    public var maxNewTokens = 20
    /// nil or 0: greedy (the most likely token, the lowest id among ties, as torch.argmax).
    public var temperature: Float? = nil
    public var topK: Int? = nil
    public var topP: Float? = nil
    public var seed: UInt64 = 0
    /// Stop a sequence at this token (it is kept); nil: never.
    public var endOfText: Int32? = nil

    public init(maxNewTokens: Int = 20) { self.maxNewTokens = maxNewTokens }

    var sampling: Bool { (temperature ?? 0) > 0 }
}

extension GPT2Model {
    /// Runs `ids` (B x S new tokens, with `mask` 1 for real tokens) through the model at the cache's
    /// next positions, appends their keys and values to the cache and returns the logits of each
    /// sequence's last new token, (B, V).
    public func extend(_ cache: GPT2Cache, ids: [Int32], mask newMask: [Int32]) -> [Float] {
        let B = cache.sequences, S = ids.count / B
        precondition(ids.count == B * S && newMask.count == B * S && cache.length + S <= cache.capacity)
        let C = config.hiddenSize, I = config.inner, NH = config.headCount, hs = config.headSize, V = config.vocabSize
        let N = B * S, L = cache.length, total = L + S, eps = config.layerNormEpsilon
        for b in 0..<B {
            for s in 0..<S { cache.mask[b * cache.capacity + L + s] = newMask[b * S + s] }
        }
        var buffers: [UnsafeMutablePointer<Float>] = []
        func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
            let pointer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
            buffers.append(pointer)
            return pointer
        }
        defer { for pointer in buffers { pointer.deallocate() } }
        let h = buffer(N * C), normed = buffer(N * C), mean = buffer(N), rstd = buffer(N), qkv = buffer(N * 3 * C)
        let context = buffer(N * C), attended = buffer(N * C), pre = buffer(N * I), activated = buffer(N * I)
        let scores = buffer(B * NH * S * total)
        // Embeddings; a token's position counts the real tokens before it (padding takes position 1, as
        // transformers fills it, but is never attended).
        for b in 0..<B {
            for s in 0..<S {
                let n = b * S + s
                let position = newMask[n] != 0 ? cache.realTokens[b] : 1
                if newMask[n] != 0 { cache.realTokens[b] += 1 }
                let row = h + n * C, word = p(wte) + Int(ids[n]) * C, place = p(wpe) + position * C
                for j in 0..<C { row[j] = word[j] + place[j] }
            }
        }
        let scale = 1 / Float(hs).squareRoot()
        for (l, layer) in layers.enumerated() {
            layerNormForward(normed, mean, rstd, h, p(layer.ln1Weight), p(layer.ln1Bias), rows: N, columns: C, epsilon: eps)
            conv1D(qkv, normed, layer.attentionWeight, layer.attentionBias, rows: N, inputs: C, outputs: 3 * C)
            for b in 0..<B {
                for s in 0..<S {
                    let source = qkv + (b * S + s) * 3 * C, row = (b * cache.capacity + L + s) * C
                    (cache.keys[l] + row).update(from: source + C, count: C)
                    (cache.values[l] + row).update(from: source + 2 * C, count: C)
                }
            }
            cache.mask.withUnsafeBufferPointer { keyMask in
                overHeads(B * NH) { bh in
                    let b = bh / NH, head = bh % NH
                    let q = qkv + b * S * 3 * C + head * hs
                    let k = cache.keys[l] + b * cache.capacity * C + head * hs, v = cache.values[l] + b * cache.capacity * C + head * hs
                    let block = scores + bh * S * total
                    gemm(.none, .transposed, m: S, n: total, k: hs, alpha: scale, a: q, lda: 3 * C, b: k, ldb: C, beta: 0, c: block, ldc: total)
                    for s in 0..<S {
                        // Query s sees the cached keys and the new ones up to itself.
                        let row = block + s * total, visible = L + s + 1
                        attentionSoftmaxForward(row, nil, keyMask.baseAddress! + b * cache.capacity, nil, rows: 0..<1, length: visible)
                        (row + visible).update(repeating: 0, count: total - visible)
                    }
                    gemm(.none, .none, m: S, n: hs, k: total, a: block, lda: total, b: v, ldb: C, beta: 0,
                         c: context + b * S * C + head * hs, ldc: C)
                }
            }
            conv1D(attended, context, layer.projectionWeight, layer.projectionBias, rows: N, inputs: C, outputs: C)
            VectorMath.add(h, attended, count: N * C)
            layerNormForward(normed, mean, rstd, h, p(layer.ln2Weight), p(layer.ln2Bias), rows: N, columns: C, epsilon: eps)
            conv1D(pre, normed, layer.fcWeight, nil, rows: N, inputs: C, outputs: I)
            biasActivationForward(activated, pre, p(layer.fcBias), config.activation, rows: N, columns: I)
            conv1D(attended, activated, layer.outputWeight, layer.outputBias, rows: N, inputs: I, outputs: C)
            VectorMath.add(h, attended, count: N * C)
        }
        cache.advance(by: S)
        // The final LayerNorm and the head at each sequence's last new token only.
        let last = buffer(B * C)
        for b in 0..<B { (last + b * C).update(from: h + (b * S + S - 1) * C, count: C) }
        layerNormForward(normed, mean, rstd, last, p(lnfWeight), p(lnfBias), rows: B, columns: C, epsilon: eps)
        var logits = [Float](repeating: 0, count: B * V)
        logits.withUnsafeMutableBufferPointer {
            gemm(.none, .transposed, m: B, n: V, k: C, a: normed, b: p(wte), beta: 0, c: $0.baseAddress!)
        }
        return logits
    }

    /// Continues each prompt by up to `settings.maxNewTokens` tokens, calling `onToken(step, tokens)`
    /// with the B new tokens of each step (for streaming). A sequence that produced `endOfText` goes on
    /// with `endOfText` as padding (as transformers' `generate` does) until all have stopped. Returns
    /// the new tokens of each prompt, up to and including its end of text.
    public func generate(
        prompts: [[Int32]], settings: GenerationSettings, onToken: ((Int, [Int32]) -> Void)? = nil
    ) -> [[Int32]] {
        let B = prompts.count, longest = prompts.map(\.count).max() ?? 0
        precondition(B > 0 && longest > 0, "generate needs prompts of at least one token")
        let steps = min(settings.maxNewTokens, config.positionCount - longest)
        let cache = GPT2Cache(config: config, sequences: B, capacity: longest + max(0, steps))
        var ids: [Int32] = [], mask: [Int32] = []
        for prompt in prompts {
            let padding = longest - prompt.count
            ids += Array(repeating: settings.endOfText ?? 0, count: padding) + prompt
            mask += Array(repeating: 0, count: padding) + Array(repeating: 1, count: prompt.count)
        }
        var generated = Array(repeating: [Int32](), count: B)
        var finished = Array(repeating: false, count: B)
        var logits = extend(cache, ids: ids, mask: mask)
        let random = Philox(seed: settings.seed, 0x67656e)
        for step in 0..<max(0, steps) {
            var next: [Int32] = []
            for b in 0..<B {
                let row = Array(logits[(b * config.vocabSize)..<((b + 1) * config.vocabSize)])
                let token = finished[b] ? (settings.endOfText ?? 0)
                    : Self.pick(row, settings, uniform: random.uniform(at: UInt64(step * B + b)))
                next.append(token)
                if !finished[b] {
                    generated[b].append(token)
                    if token == settings.endOfText { finished[b] = true }
                }
            }
            onToken?(step, next)
            if finished.allSatisfy({ $0 }) || step == steps - 1 { break }
            logits = extend(cache, ids: next, mask: Array(repeating: 1, count: B))
        }
        return generated
    }

    /// The next token from one row of logits: greedy, or sampled after temperature, top-k and top-p
    /// (nucleus) filtering, as transformers' logits warpers apply them, with `uniform` in [0, 1).
    static func pick(_ logits: [Float], _ settings: GenerationSettings, uniform: Float) -> Int32 {
        guard settings.sampling, let temperature = settings.temperature else {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        var order = Array(0..<logits.count).sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if let k = settings.topK, k > 0 { order = Array(order.prefix(k)) }
        let maximum = logits[order[0]]
        var weights = order.map { Double(exp((logits[$0] - maximum) / temperature)) }
        if let topP = settings.topP, topP < 1 {
            // Keep the smallest prefix whose probability reaches top_p (at least one token).
            let total = weights.reduce(0, +)
            var cumulative = 0.0, keep = 0
            while keep < weights.count {
                cumulative += weights[keep] / total
                keep += 1
                if cumulative >= Double(topP) { break }
            }
            order = Array(order.prefix(keep))
            weights = Array(weights.prefix(keep))
        }
        let total = weights.reduce(0, +)
        var target = Double(uniform) * total
        for (i, weight) in weights.enumerated() {
            target -= weight
            if target < 0 { return Int32(order[i]) }
        }
        return Int32(order[order.count - 1])
    }
}
