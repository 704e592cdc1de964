import Dispatch
import Foundation

/// Runs `body(worker, index)` for every index in `0 ..< count` on up to `workers` threads, each
/// taking the next index when it is free (items differ a lot in size); `worker` is in
/// `0 ..< workers`, for per-thread results. With one worker, in order on the calling thread.
func forEachDynamically(_ count: Int, workers: Int, _ body: (_ worker: Int, _ index: Int) -> Void) {
    let workers = min(workers, count)
    if workers <= 1 {
        for index in 0..<count { body(0, index) }
        return
    }
    let lock = NSLock()
    var next = 0
    DispatchQueue.concurrentPerform(iterations: workers) { worker in
        while true {
            lock.lock()
            let index = next
            next += 1
            lock.unlock()
            if index >= count { return }
            body(worker, index)
        }
    }
}
