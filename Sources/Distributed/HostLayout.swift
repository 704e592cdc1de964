/// Where the ranks of a job run: which host each rank is on, and this rank's place on its host.
public struct HostLayout: Sendable, Equatable {
    /// Host name of every rank, in rank order.
    public let hostOfRank: [String]
    public let rank: Int

    public init(hostOfRank: [String], rank: Int) {
        self.hostOfRank = hostOfRank
        self.rank = rank
    }

    /// Gathers every rank's host name (a collective: all ranks call it).
    public static func gather(_ communicator: Communicator, hostname: String) throws -> HostLayout {
        HostLayout(hostOfRank: try communicator.allGather(string: hostname), rank: communicator.rank)
    }

    /// Host names in order of their first rank.
    public var hosts: [String] {
        var seen: Set<String> = []
        return hostOfRank.filter { seen.insert($0).inserted }
    }

    public func ranks(on host: String) -> [Int] {
        hostOfRank.indices.filter { hostOfRank[$0] == host }
    }

    /// Ranks on this rank's host.
    public var localSize: Int { ranks(on: hostOfRank[rank]).count }

    /// This rank's index among the ranks of its host.
    public var localRank: Int { ranks(on: hostOfRank[rank]).firstIndex(of: rank)! }

    /// Threads each rank of this host should use so that the host's cores are shared evenly, and no
    /// more than the cores this rank is bound to (`allowedCores`).
    public func threadsPerRank(cores: Int, allowedCores: Int? = nil) -> Int {
        max(1, min(cores / localSize, allowedCores ?? cores))
    }

    /// `host-a: ranks 0-1; host-b: ranks 2-3`.
    public var summary: String {
        hosts.map { host in "\(host): ranks \(Self.ranges(ranks(on: host)))" }.joined(separator: "; ")
    }

    static func ranges(_ ranks: [Int]) -> String {
        var parts: [String] = []
        var index = 0
        while index < ranks.count {
            var end = index
            while end + 1 < ranks.count && ranks[end + 1] == ranks[end] + 1 { end += 1 }
            parts.append(end == index ? "\(ranks[index])" : "\(ranks[index])-\(ranks[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }
}
