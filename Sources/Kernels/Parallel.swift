import Dispatch

/// Multi-threading for element-wise kernels: the work is split into contiguous chunks, one per
/// worker, each a plain loop the compiler can vectorise. Small jobs run inline: below a few
/// thousand elements the thread hand-off costs more than it saves.
public enum Parallel {
    /// Workers used for element-wise kernels; set once at start-up from cores / local ranks.
    nonisolated(unsafe) public static var workerCount = 1

    /// Calls `body(range)` for disjoint ranges covering `0..<count`, concurrently when it pays.
    @inlinable
    public static func forEachChunk(
        _ count: Int, minimumChunk: Int = 16_384, _ body: (Range<Int>) -> Void
    ) {
        let workers = min(workerCount, max(1, count / max(1, minimumChunk)))
        if workers <= 1 {
            body(0..<count)
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let start = count * worker / workers
            let end = count * (worker + 1) / workers
            body(start..<end)
        }
    }
}
