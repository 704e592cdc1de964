import Dispatch
import Transformer

/// The debug mode's eye on every op: the first non-finite output (op and layer named) and the time
/// spent per op, from the model's forward probes and the gradient ranges backward reports.
final class OpMonitor {
    private let table: ParameterTable
    private var lastTime = DispatchTime.now().uptimeNanoseconds
    private(set) var seconds: [String: Double] = [:]
    private(set) var order: [String] = []
    /// The first problem of the current step.
    private(set) var failure: String?

    init(table: ParameterTable) { self.table = table }

    /// Starts timing from now (call before forward).
    func restart() { lastTime = DispatchTime.now().uptimeNanoseconds }

    func clearFailure() { failure = nil }

    private func lap(_ name: String) {
        let now = DispatchTime.now().uptimeNanoseconds
        if seconds[name] == nil { order.append(name) }
        seconds[name, default: 0] += Double(now - lastTime) / 1e9
        lastTime = now
    }

    /// After a forward op.
    func forward(_ op: String, _ layer: Int?, _ output: UnsafeBufferPointer<Float>) {
        lap("forward: " + op)
        guard failure == nil, let bad = output.firstIndex(where: { !$0.isFinite }) else { return }
        failure = "non-finite value (\(output[bad])) in the output of \(op)"
            + (layer.map { " in encoder layer \($0)" } ?? "") + " at element \(bad)"
    }

    /// After backward finished `range` of the gradient buffer.
    func gradients(_ range: Range<Int>, _ gradients: UnsafeMutableBufferPointer<Float>) {
        let names = table.entries.filter { $0.range.overlaps(range) }
        let part = names.first.map { entry -> String in
            if entry.name.contains("encoder.layer.") || entry.name.hasPrefix("transformer.h.") { return "encoder layers" }
            return entry.name.contains("embeddings") || entry.name.hasPrefix("transformer.w") ? "embeddings" : "heads (logits, losses)"
        }
        lap("backward: " + (part ?? "heads (logits, losses)"))
        guard failure == nil else { return }
        for entry in names {
            let slice = gradients[entry.range.clamped(to: range)]
            if let bad = slice.firstIndex(where: { !$0.isFinite }) {
                failure = "non-finite gradient (\(slice[bad])) of \(entry.name)"
                return
            }
        }
    }

    /// `op  total ms  share` lines, slowest first.
    func report(steps: Int) -> String {
        let total = seconds.values.reduce(0, +)
        let rows = order.sorted { seconds[$0]! > seconds[$1]! }.map { name in
            let value = seconds[name]!
            return "  \(name.padding(toLength: 56, withPad: " ", startingAt: 0)) "
                + String(format: "%9.2f ms/step %5.1f%%", value * 1000 / Double(max(1, steps)), 100 * value / max(total, 1e-12))
        }
        return (["per-op time (debug mode, \(steps) steps):"] + rows).joined(separator: "\n")
    }
}
