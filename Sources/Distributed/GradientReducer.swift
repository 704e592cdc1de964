import Dispatch
import Foundation

/// Sums the flat gradient buffer over all ranks in buckets, overlapped with backward.
///
/// Buckets are contiguous ranges of the buffer, cut from its end towards its start, because backward
/// finishes the parameters in reverse layer order (heads first, embeddings last). As backward reports
/// ranges as final (`markReady`), every bucket that is wholly final is handed to a communication
/// thread, which all-reduces the buckets one at a time in bucket order, while the compute threads go
/// on with backward. Every rank cuts the same buckets and reduces them in the same order.
public final class GradientReducer: @unchecked Sendable {
    public let communicator: Communicator
    /// Bucket ranges, in reduction order (from the end of the buffer towards its start).
    public let buckets: [Range<Int>]
    private let gradients: UnsafeMutableBufferPointer<Float>
    private let queue = DispatchQueue(label: "swiftbert.gradient-reducer")
    private let group = DispatchGroup()
    private let lock = NSLock()

    private var readyRanges: [Range<Int>] = []
    private var nextBucket = 0
    private var failure: Error?
    /// Seconds the communication thread spent in all-reduce during the current step.
    private var communicationSeconds = 0.0

    /// - Parameters:
    ///   - boundaries: offsets where a bucket may end (tensor boundaries), so no tensor is split
    ///     unless it alone exceeds the bucket size.
    ///   - bucketElements: target elements per bucket.
    public init(
        communicator: Communicator, gradients: UnsafeMutableBufferPointer<Float>,
        boundaries: [Int], bucketElements: Int
    ) {
        precondition(bucketElements > 0, "bucket size must be positive")
        self.communicator = communicator
        self.gradients = gradients
        let total = gradients.count
        let cuts = Set(boundaries.filter { $0 > 0 && $0 < total }).sorted(by: >)
        var buckets: [Range<Int>] = []
        var end = total
        for cut in cuts where end - cut >= bucketElements {
            buckets.append(cut..<end)
            end = cut
        }
        if end > 0 || buckets.isEmpty { buckets.append(0..<end) }
        self.buckets = buckets
    }

    /// Forgets the previous step's progress; call before the backward whose gradients are reduced.
    public func beginStep() {
        lock.lock()
        readyRanges = []
        nextBucket = 0
        failure = nil
        communicationSeconds = 0
        lock.unlock()
    }

    /// Backward reports that `range` of the gradient buffer is final; starts the buckets now complete.
    public func markReady(_ range: Range<Int>) {
        lock.lock()
        defer { lock.unlock() }
        guard !range.isEmpty else { return }
        readyRanges.append(range)
        readyRanges.sort { $0.lowerBound < $1.lowerBound }
        var merged: [Range<Int>] = []
        for r in readyRanges {
            if let last = merged.last, last.upperBound >= r.lowerBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                merged.append(r)
            }
        }
        readyRanges = merged
        while nextBucket < buckets.count, covers(buckets[nextBucket]) {
            start(buckets[nextBucket])
            nextBucket += 1
        }
    }

    /// Waits for every bucket to be reduced; buckets never reported ready are reduced now, so the
    /// result is complete whatever backward reported. Returns the seconds spent waiting.
    @discardableResult
    public func finish() throws -> (waitSeconds: Double, communicationSeconds: Double) {
        let started = DispatchTime.now().uptimeNanoseconds
        lock.lock()
        while nextBucket < buckets.count {
            start(buckets[nextBucket])
            nextBucket += 1
        }
        lock.unlock()
        group.wait()
        let waited = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        lock.lock()
        defer { lock.unlock() }
        if let failure { throw failure }
        return (waited, communicationSeconds)
    }

    private func covers(_ bucket: Range<Int>) -> Bool {
        readyRanges.contains { $0.lowerBound <= bucket.lowerBound && $0.upperBound >= bucket.upperBound }
    }

    /// Called with the lock held.
    private func start(_ bucket: Range<Int>) {
        nonisolated(unsafe) let slice = UnsafeMutableBufferPointer(rebasing: gradients[bucket])
        group.enter()
        queue.async { [self] in
            defer { group.leave() }
            lock.lock()
            let failed = failure != nil
            lock.unlock()
            if failed { return }
            let begin = DispatchTime.now().uptimeNanoseconds
            do {
                try communicator.allReduceSum(slice)
            } catch {
                lock.lock()
                if failure == nil { failure = error }
                lock.unlock()
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e9
            lock.lock()
            communicationSeconds += seconds
            lock.unlock()
        }
    }
}
