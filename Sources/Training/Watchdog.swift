import Foundation

/// Ends a job that stopped making progress, instead of letting it hang.
///
/// A rank that dies is noticed by `mpirun`, which ends the job; a rank that hangs (a stuck file
/// system, a lost network peer that the transport keeps retrying) is not. The trainer reports progress
/// at every phase; when `timeout` seconds pass without any, the watchdog prints where this rank was
/// waiting and calls `onTimeout` (which aborts the whole job).
public final class Watchdog: @unchecked Sendable {
    public let timeout: Double
    private let lock = NSLock()
    private var lastBeat = Date()
    private var phase = "start-up"
    private var stopped = false
    private let onTimeout: (_ message: String) -> Void

    /// `timeout` 0 disables the watchdog.
    public init(timeout: Double, onTimeout: @escaping (_ message: String) -> Void) {
        self.timeout = timeout
        self.onTimeout = onTimeout
        guard timeout > 0 else { return }
        let thread = Thread { [weak self] in
            while let self, self.check() {
                Thread.sleep(forTimeInterval: min(1, timeout / 10))
            }
        }
        thread.name = "watchdog"
        thread.start()
    }

    /// Records progress: this rank is now in `phase`.
    public func beat(_ phase: String) {
        lock.lock()
        lastBeat = Date()
        self.phase = phase
        lock.unlock()
    }

    public func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
    }

    /// False once the watchdog is done.
    private func check() -> Bool {
        lock.lock()
        let idle = Date().timeIntervalSince(lastBeat)
        let phase = self.phase
        let stopped = self.stopped
        lock.unlock()
        if stopped { return false }
        if idle > timeout {
            onTimeout("no progress for \(Int(idle)) s in \(phase) (watchdog_seconds = \(Int(timeout))): another "
                + "rank died or hangs; aborting the job")
            return false
        }
        return true
    }

    deinit { stop() }
}
