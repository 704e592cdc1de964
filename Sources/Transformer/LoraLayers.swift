import Kernels

// LoRA's low-rank path beside an adapted projection y = x W^T + b (W frozen; Conv1D's y = x W + b
// is the same with W transposed):
//   forward   u = dropout(x) A^T            (R, r), kept for backward
//             y += scaling * u B^T
//   backward  v = dy B                      (R, r)
//             dB += scaling * dy^T u,  dA += scaling * v^T dropout(x)
//             dx += scaling * dropout'(v A)
// Two thin GEMMs each way instead of forming B A (out x in); the dropout mask is drawn again in
// backward from its key. The functions below are the math alone, shared by BERT and GPT-2; each
// model says where its sites read and write.

/// One adapted projection's factors: A (r, in) and B (out, r), their gradients (nil: frozen), and
/// the update's scale.
struct LoraFactors {
    let a: UnsafePointer<Float>
    let b: UnsafePointer<Float>
    let dA: UnsafeMutablePointer<Float>?
    let dB: UnsafeMutablePointer<Float>?
    let rank: Int
    let inputs: Int
    let outputs: Int
    let scaling: Float
}

/// The input after LoRA's dropout (written to `scratch`, (R, in), needed with a mask), or the input
/// itself without a mask.
func loraDroppedInput(
    _ x: UnsafePointer<Float>, _ mask: DropoutMask?, scratch: UnsafeMutablePointer<Float>?, rows R: Int, columns: Int
) -> UnsafePointer<Float> {
    guard let mask, let scratch else { return x }
    dropoutForward(scratch, x, mask, rows: R, columns: columns)
    return UnsafePointer(scratch)
}

/// y (R, out), rows `ldy` apart, += scaling * u B^T with u = x A^T (R, r) kept in `hidden`;
/// x (R, in) is the input after dropout.
func loraForward(
    _ y: UnsafeMutablePointer<Float>, ldy: Int, hidden u: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>,
    _ f: LoraFactors, rows R: Int
) {
    gemm(.none, .transposed, m: R, n: f.rank, k: f.inputs, a: x, b: f.a, beta: 0, c: u)
    gemm(.none, .transposed, m: R, n: f.outputs, k: f.rank, alpha: f.scaling, a: u, b: f.b, beta: 1, c: y, ldc: ldy)
}

/// The factors' gradients ADDED into `f.dA`, `f.dB` from dy (R, out; rows `ldy` apart), and
/// v = dy B (R, r) written to `hiddenGradient` for `loraInputGradient`. `input` is forward's x after dropout.
func loraFactorGradients(
    _ f: LoraFactors, dOutput dy: UnsafePointer<Float>, ldy: Int, hidden u: UnsafePointer<Float>,
    input x: () -> UnsafePointer<Float>, hiddenGradient v: UnsafeMutablePointer<Float>, rows R: Int
) {
    gemm(.none, .none, m: R, n: f.rank, k: f.outputs, a: dy, lda: ldy, b: f.b, beta: 0, c: v)
    if let dB = f.dB {
        gemm(.transposed, .none, m: f.outputs, n: f.rank, k: R, alpha: f.scaling, a: dy, lda: ldy, b: u, beta: 1, c: dB)
    }
    if let dA = f.dA {
        gemm(.transposed, .none, m: f.rank, n: f.inputs, k: R, alpha: f.scaling, a: v, b: x(), beta: 1, c: dA)
    }
}

/// d(input) (R, in) += scaling * dropout'(v A), v from `loraFactorGradients`; `scratch` (R, in) is
/// needed with a mask.
func loraInputGradient(
    _ dx: UnsafeMutablePointer<Float>, _ f: LoraFactors, hiddenGradient v: UnsafePointer<Float>, rows R: Int,
    mask: DropoutMask?, scratch: UnsafeMutablePointer<Float>?
) {
    if let mask, let scratch {
        gemm(.none, .none, m: R, n: f.inputs, k: f.rank, alpha: f.scaling, a: v, b: f.a, beta: 0, c: scratch)
        dropoutBackward(scratch, scratch, mask, rows: R, columns: f.inputs)
        addInPlace(dx, scratch, count: R * f.inputs)
    } else {
        gemm(.none, .none, m: R, n: f.inputs, k: f.rank, alpha: f.scaling, a: v, b: f.a, beta: 1, c: dx)
    }
}

extension BertModel {
    /// Where one adapted projection reads and writes in a layer pass: its input x (R, in), contiguous,
    /// and its output y (R, out) with rows `outputStride` apart (nil: out, contiguous).
    struct LoraSite {
        let layer: Int
        let module: LoraModule
        let input: UnsafePointer<Float>
        let output: UnsafeMutablePointer<Float>
        var outputStride: Int?
        let rows: Int
        /// The token rows of the site's rows, when they are the kept rows of the last layer.
        let kept: KeptRows?

        /// A site whose output rows are contiguous.
        init(
            _ layer: Int, _ module: LoraModule, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, rows: Int,
            kept: KeptRows?
        ) {
            self.layer = layer
            self.module = module
            self.input = input
            self.output = output
            self.rows = rows
            self.kept = kept
        }
    }

    /// Adds the low-rank update of `site` to its output, if its module is adapted.
    func loraForward(_ site: LoraSite, _ dropout: DropoutSettings) {
        guard let factors = loraFactors(site) else { return }
        timed(.gemm) {
            Transformer.loraForward(
                site.output, ldy: site.outputStride ?? factors.outputs, hidden: activations.loraHidden(layer: site.layer, module: site.module),
                input: loraInput(site, dropout), factors, rows: site.rows)
        }
    }

    /// The factors of `site`'s module, nil when it is not adapted.
    private func loraFactors(_ site: LoraSite) -> LoraFactors? {
        guard let factors = offsets.layers[site.layer].lora[site.module.rawValue], let lora = config.lora else { return nil }
        let (inputs, outputs) = site.module.shape(config)
        return LoraFactors(
            a: param(factors.a), b: param(factors.b), dA: grad(factors.a), dB: grad(factors.b), rank: lora.rank, inputs: inputs,
            outputs: outputs, scaling: lora.scaling)
    }

    /// Backward of `loraForward` from d(output) at `site.output` (same stride): the factors' gradients
    /// and d(input) ADDED into `dInput` (R, in), when given.
    func loraBackward(_ site: LoraSite, dInput: UnsafeMutablePointer<Float>?, _ dropout: DropoutSettings) {
        loraFactorGradients(site, dropout)
        if let dInput { loraInputGradient(site, dInput: dInput, dropout) }
    }

    /// The first half of `loraBackward`: the factors' gradients, and v = dy B for `loraInputGradient`.
    /// It reads the site's input, which the second half's caller may then overwrite.
    func loraFactorGradients(_ site: LoraSite, _ dropout: DropoutSettings) {
        guard let factors = loraFactors(site) else { return }
        timed(.gemm) {
            Transformer.loraFactorGradients(
                factors, dOutput: site.output, ldy: site.outputStride ?? factors.outputs,
                hidden: activations.loraHidden(layer: site.layer, module: site.module), input: { loraInput(site, dropout) },
                hiddenGradient: activations.loraGradient, rows: site.rows)
        }
    }

    /// The second half of `loraBackward`: d(input) += scaling * dropout'(v A).
    func loraInputGradient(_ site: LoraSite, dInput: UnsafeMutablePointer<Float>, _ dropout: DropoutSettings) {
        guard let factors = loraFactors(site) else { return }
        timed(.gemm) {
            Transformer.loraInputGradient(
                dInput, factors, hiddenGradient: activations.loraGradient, rows: site.rows, mask: loraMask(site, dropout),
                scratch: activations.loraScratch)
        }
    }

    /// The site's input after LoRA's dropout (in `loraScratch`), or the input itself without dropout.
    private func loraInput(_ site: LoraSite, _ dropout: DropoutSettings) -> UnsafePointer<Float> {
        loraDroppedInput(
            site.input, loraMask(site, dropout), scratch: activations.loraScratch, rows: site.rows,
            columns: site.module.shape(config).inputs)
    }

    /// LoRA's dropout mask of the site, keyed like the encoder's masks with a site of its own per module.
    private func loraMask(_ site: LoraSite, _ dropout: DropoutSettings) -> DropoutMask? {
        guard let probability = config.lora?.dropout, probability > 0, dropout.enabled, let samples = dropout.sampleIndices
        else { return nil }
        var mask = DropoutMask(
            probability: Float(probability), seed: dropout.seed, step: dropout.step, layer: UInt64(site.layer + 1),
            site: DropoutSite.lora + UInt64(site.module.rawValue), sampleIndices: samples, rowsPerSample: dropout.length)
        mask.rowMap = site.kept?.tokenRows
        return mask
    }
}

/// `destination += source`, element-wise.
func addInPlace(_ destination: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
    Parallel.forEachChunk(count, minimumChunk: 65_536) { range in
        for i in range { destination[i] += source[i] }
    }
}
