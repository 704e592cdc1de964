import Foundation

/// The one place the tool prints. Rank 0 reports progress and results; every rank may report an
/// error, prefixed with its rank so a user can tell which process of a job failed.
struct Console {
    let rank: Int
    let size: Int

    static let standalone = Console(rank: 0, size: 1)

    /// A line on standard output, from rank 0 only.
    func say(_ line: String) {
        guard rank == 0 else { return }
        print(line)
        fflush(stdout)
    }

    /// A warning on standard error, from rank 0 only (every rank sees the same conditions).
    func warn(_ line: String) {
        guard rank == 0 else { return }
        FileHandle.standardError.write(Data("warning: \(line)\n".utf8))
    }

    /// An error on standard error, from any rank.
    func fail(_ line: String) {
        let prefix = size > 1 ? "rank \(rank): " : ""
        FileHandle.standardError.write(Data("\(prefix)error: \(line)\n".utf8))
    }
}
