import Kernels

// LoRA's low-rank path beside an adapted projection y = x W^T + b (W frozen):
//   forward   u = dropout(x) A^T            (R, r), kept for backward
//             y += scaling * u B^T
//   backward  v = dy B                      (R, r)
//             dB += scaling * dy^T u,  dA += scaling * v^T dropout(x)
//             dx += scaling * dropout'(v A)
// Two thin GEMMs each way instead of forming B A (out x in); the dropout mask is drawn again in
// backward from its key, like the classifier's.

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
        guard let factors = offsets.layers[site.layer].lora[site.module.rawValue], let lora = config.lora else { return }
        let r = lora.rank, (inputs, outputs) = site.module.shape(config), R = site.rows
        let u = activations.loraHidden(layer: site.layer, module: site.module)
        timed(.gemm) {
            let x = loraInput(site, dropout)
            gemm(.none, .transposed, m: R, n: r, k: inputs, a: x, b: param(factors.a), beta: 0, c: u)
            gemm(
                .none, .transposed, m: R, n: outputs, k: r, alpha: lora.scaling, a: u, b: param(factors.b),
                beta: 1, c: site.output, ldc: site.outputStride ?? outputs)
        }
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
        guard let factors = offsets.layers[site.layer].lora[site.module.rawValue], let lora = config.lora else { return }
        let r = lora.rank, (inputs, outputs) = site.module.shape(config), R = site.rows, s = lora.scaling
        let a = activations, u = a.loraHidden(layer: site.layer, module: site.module), v = a.loraGradient
        let dy = UnsafePointer(site.output), ldy = site.outputStride ?? outputs
        timed(.gemm) {
            gemm(.none, .none, m: R, n: r, k: outputs, a: dy, lda: ldy, b: param(factors.b), beta: 0, c: v)
            if let dB = grad(factors.b) {
                gemm(.transposed, .none, m: outputs, n: r, k: R, alpha: s, a: dy, lda: ldy, b: u, beta: 1, c: dB)
            }
            if let dA = grad(factors.a) {
                gemm(.transposed, .none, m: r, n: inputs, k: R, alpha: s, a: v, b: loraInput(site, dropout), beta: 1, c: dA)
            }
        }
    }

    /// The second half of `loraBackward`: d(input) += scaling * dropout'(v A).
    func loraInputGradient(_ site: LoraSite, dInput: UnsafeMutablePointer<Float>, _ dropout: DropoutSettings) {
        guard let factors = offsets.layers[site.layer].lora[site.module.rawValue], let lora = config.lora else { return }
        let r = lora.rank, inputs = site.module.shape(config).inputs, R = site.rows, s = lora.scaling
        let a = activations, v = a.loraGradient
        timed(.gemm) {
            if let mask = loraMask(site, dropout) {
                gemm(.none, .none, m: R, n: inputs, k: r, alpha: s, a: v, b: param(factors.a), beta: 0, c: a.loraScratch)
                dropoutBackward(a.loraScratch, a.loraScratch, mask, rows: R, columns: inputs)
                addInPlace(dInput, a.loraScratch, count: R * inputs)
            } else {
                gemm(.none, .none, m: R, n: inputs, k: r, alpha: s, a: v, b: param(factors.a), beta: 1, c: dInput)
            }
        }
    }

    /// The site's input after LoRA's dropout (in `loraScratch`), or the input itself without dropout.
    private func loraInput(_ site: LoraSite, _ dropout: DropoutSettings) -> UnsafePointer<Float> {
        guard let mask = loraMask(site, dropout) else { return site.input }
        dropoutForward(activations.loraScratch, site.input, mask, rows: site.rows, columns: site.module.shape(config).inputs)
        return UnsafePointer(activations.loraScratch)
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
