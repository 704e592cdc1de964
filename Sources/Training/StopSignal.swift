#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM and SIGINT as a request to stop cleanly: the trainer checkpoints at the next step
/// boundary (all ranks agree on which) and exits 0. A second signal ends the process at once.
///
/// SLURM sends SIGTERM to every task before a job's time runs out or when it is preempted; a user
/// presses Ctrl-C. Either way no more than one step of work is lost.
public enum StopSignal {
    nonisolated(unsafe) private static var count: sig_atomic_t = 0

    /// Installs the handlers (idempotent).
    public static func install() {
        for signal in [SIGTERM, SIGINT] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                if StopSignal.count > 0 { _exit(128 + number) }
                StopSignal.count = 1
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(signal, &action, nil)
        }
    }

    /// Whether a stop was requested in this process.
    public static var requested: Bool { count > 0 }
}
