import Foundation

/// An error every rank of a job raises at the same point, after the ranks have exchanged what
/// happened through a collective. It is reported once (by rank 0) and the ranks can end MPI
/// together. Any other error is one rank's own: that rank reports it with its rank and aborts the
/// job, because the others may be waiting in a collective it will never join.
public struct CollectiveError: Error, LocalizedError, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }

    /// The failures of the ranks that failed, `messages[r]` empty for a rank that did not: the message
    /// alone when every rank failed alike, otherwise one line per distinct message naming its ranks.
    public init(failures messages: [String]) {
        let failed = messages.indices.filter { !messages[$0].isEmpty }
        if failed.count == messages.count, Set(messages).count == 1 {
            self.init(messages[0])
            return
        }
        var lines: [String] = []
        for r in failed where !failed.contains(where: { $0 < r && messages[$0] == messages[r] }) {
            let ranks = failed.filter { messages[$0] == messages[r] }
            lines.append("rank\(ranks.count > 1 ? "s" : "") \(ranks.map(String.init).joined(separator: ", ")): \(messages[r])")
        }
        self.init(lines.joined(separator: "\n"))
    }
}

extension Communicator {
    /// Runs `body` on every rank, then lets every rank learn whether any rank's `body` threw: if one
    /// did, every rank throws the same `CollectiveError`. A collective; `body` must not call any.
    public func collectively<T>(_ body: () throws -> T) throws -> T {
        let outcome = Result { try body() }
        var message = ""
        if case .failure(let error) = outcome {
            message = "\(error)"
            if message.isEmpty { message = "\(type(of: error))" }
        }
        let messages = try allGather(string: message)
        if messages.contains(where: { !$0.isEmpty }) { throw CollectiveError(failures: messages) }
        return try outcome.get()
    }
}
