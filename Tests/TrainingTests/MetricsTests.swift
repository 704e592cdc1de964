import Foundation
import Training
import XCTest

final class MetricsTests: XCTestCase {
    func testMetricsLogAppendsOneJSONObjectPerLine() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir + "/metrics.jsonl"
        let log = try MetricsLog(path: path)
        try log.append(MetricsRecord(step: 10, split: .train, loss: 7.5, mlmLoss: 7.0, nspLoss: 0.5, mlmAccuracy: 0.1,
                                     learningRate: 1e-4, gradNorm: .nan, tokensPerSecond: 12_345, timeCompute: 0.25,
                                     timeCommWait: 0.01, timeDataWait: 0.002))
        // Visible before close: each record is written through at once.
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count, 1)
        try log.append(MetricsRecord(step: 10, split: .validation, mlmLoss: 2.0, perplexity: exp(2.0)))
        log.close()

        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        let first = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        XCTAssertEqual(first["step"] as? Int, 10)
        XCTAssertEqual(first["split"] as? String, "train")
        XCTAssertEqual(first["loss"] as? Double, 7.5)
        XCTAssertEqual(first["lr"] as? Double, 1e-4)
        XCTAssertEqual(first["tokens_per_second"] as? Double, 12_345)
        XCTAssertEqual(first["time_comm_wait"] as? Double, 0.01)
        XCTAssertTrue(first["grad_norm"] is NSNull, "NaN must be written as null")
        XCTAssertNil(first["nsp_accuracy"], "unset fields are omitted")
        XCTAssertEqual(Set(first.keys), ["step", "split", "loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "lr", "grad_norm",
                                         "tokens_per_second", "time_compute", "time_comm_wait", "time_data_wait"])
        let second = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any])
        XCTAssertEqual(second["split"] as? String, "validation")
        XCTAssertEqual(try XCTUnwrap(second["perplexity"] as? Double), exp(2.0), accuracy: 1e-12)
        XCTAssertTrue(lines[0].hasPrefix("{\"step\":10,\"split\":\"train\",\"loss\":7.5,"))
    }

    func testResumingDropsRecordsAfterTheCheckpointStep() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir + "/metrics.jsonl"
        let log = try MetricsLog(path: path)
        for step in [10, 20, 30, 40] { try log.append(MetricsRecord(step: step, split: .train, loss: Double(step))) }
        try log.append(line: "{\"step\":50,\"split\":\"tr")  // torn by a crash
        log.close()
        let resumed = try MetricsLog(path: path, keepingStepsThrough: 20)
        try resumed.append(MetricsRecord(step: 30, split: .train, loss: 3))
        resumed.close()
        let steps = try MetricsLog.read(path: path).map { $0["step"] }
        XCTAssertEqual(steps, [.number("10"), .number("20"), .number("30")])
        XCTAssertEqual(try MetricsLog.read(path: path).last?["loss"], .number("3"))
    }

    func testOpeningInAMissingDirectoryNamesThePath() {
        XCTAssertThrowsError(try MetricsLog(path: "/nonexistent-dir/metrics.jsonl")) {
            XCTAssertTrue("\($0)".hasPrefix("/nonexistent-dir/metrics.jsonl: cannot open"), "\($0)")
        }
    }

    // MARK: - Progress line

    func testProgressLineRendersTheDocumentedFormat() {
        XCTAssertEqual(ProgressLine.render(step: 120, totalSteps: 1000, loss: 7.2345, learningRate: 1e-4,
                                           tokensPerSecond: 12_345.4, eta: 200),
                       "step 120/1000 | loss 7.23 | lr 1.0e-04 | 12,345 tok/s | ETA 3m20s")
        XCTAssertEqual(ProgressLine.render(step: 1, totalSteps: 10, loss: .nan, learningRate: nil, tokensPerSecond: nil,
                                           eta: nil),
                       "step 1/10 | loss nan | lr -- | -- tok/s | ETA --")
        XCTAssertEqual(ProgressLine.durationText(45), "45s")
        XCTAssertEqual(ProgressLine.durationText(7500), "2h05m")
        XCTAssertEqual(ProgressLine.durationText(200_000), "2d07h")
        XCTAssertEqual(ProgressLine.groupedThousands(1_234_567), "1,234,567")
        XCTAssertEqual(ProgressLine.groupedThousands(999), "999")
    }

    func testProgressLineRewritesInPlaceOnATerminalAndPrintsLinesWhenPiped() {
        var terminal = "", piped = ""
        var onTerminal = ProgressLine(totalSteps: 10, isTerminal: true) { terminal += $0 }
        var onPipe = ProgressLine(totalSteps: 10, isTerminal: false) { piped += $0 }
        for step in 1...3 {
            onTerminal.update(step: step, loss: 1, learningRate: 1e-3, tokensPerSecond: 100, eta: 5)
            onPipe.update(step: step, loss: 1, learningRate: 1e-3, tokensPerSecond: 100, eta: 5)
        }
        onTerminal.finish()
        onPipe.finish()
        XCTAssertEqual(terminal.filter { $0 == "\r" }.count, 3)
        XCTAssertEqual(terminal.filter { $0 == "\n" }.count, 1)
        XCTAssertTrue(terminal.hasSuffix("\u{1B}[K\n"))
        XCTAssertFalse(piped.contains("\r"))
        XCTAssertEqual(piped.split(separator: "\n").count, 3)
        XCTAssertTrue(piped.hasPrefix("step 1/10 | loss 1.00 | lr 1.0e-03 | 100 tok/s | ETA 5s\n"))
    }

    // MARK: - TensorBoard

    /// CRC-32C bit by bit, independent of the table-driven implementation under test.
    private func referenceCRC32C(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0x82F6_3B78 & (0 &- (crc & 1))) }
        }
        return ~crc
    }

    private func referenceMask(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8 }

    private struct Event { var wallTime: Double?; var step: Int64 = 0; var fileVersion: String?; var values: [(String, Float)] = [] }

    /// Parses TFRecords and the Event protobuf fields, checking both CRCs of every record.
    private func readEvents(_ path: String) throws -> [Event] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var events: [Event] = []
        var i = 0
        func le<T: FixedWidthInteger>(_ type: T.Type, _ at: Int) -> T {
            (0..<MemoryLayout<T>.size).reduce(T(0)) { $0 | T(bytes[at + $1]) << (8 * $1) }
        }
        while i < bytes.count {
            XCTAssertGreaterThanOrEqual(bytes.count - i, 12, "truncated record header")
            let length = Int(le(UInt64.self, i))
            XCTAssertEqual(le(UInt32.self, i + 8), referenceMask(referenceCRC32C(Array(bytes[i..<i + 8]))), "length CRC")
            let data = Array(bytes[i + 12..<i + 12 + length])
            XCTAssertEqual(le(UInt32.self, i + 12 + length), referenceMask(referenceCRC32C(data)), "data CRC")
            events.append(try parseEvent(data))
            i += 12 + length + 4
        }
        return events
    }

    private func parseEvent(_ data: [UInt8]) throws -> Event {
        var event = Event()
        var reader = ProtoReader(bytes: data[...])
        while let (field, wire) = reader.key() {
            switch (field, wire) {
            case (1, 1): event.wallTime = Double(bitPattern: reader.fixed64())
            case (2, 0): event.step = Int64(bitPattern: reader.varint())
            case (3, 2): event.fileVersion = String(decoding: reader.lengthDelimited(), as: UTF8.self)
            case (5, 2):
                var summary = ProtoReader(bytes: reader.lengthDelimited())
                while let (f, w) = summary.key() {
                    XCTAssertEqual([f, w], [1, 2])
                    var value = ProtoReader(bytes: summary.lengthDelimited())
                    var tag = "", simple: Float = .nan
                    while let (vf, vw) = value.key() {
                        if vf == 1, vw == 2 { tag = String(decoding: value.lengthDelimited(), as: UTF8.self) }
                        else if vf == 2, vw == 5 { simple = Float(bitPattern: value.fixed32()) }
                        else { XCTFail("unexpected Value field \(vf)") }
                    }
                    event.values.append((tag, simple))
                }
            default: XCTFail("unexpected Event field \(field) wire \(wire)"); return event
            }
        }
        return event
    }

    private struct ProtoReader {
        var bytes: ArraySlice<UInt8>
        mutating func varint() -> UInt64 {
            var result: UInt64 = 0, shift: UInt64 = 0
            while let byte = bytes.popFirst() {
                result |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { break }
                shift += 7
            }
            return result
        }
        mutating func key() -> (Int, Int)? {
            guard !bytes.isEmpty else { return nil }
            let k = varint()
            return (Int(k >> 3), Int(k & 7))
        }
        mutating func fixed64() -> UInt64 {
            defer { bytes = bytes.dropFirst(8) }
            return bytes.prefix(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) }
        }
        mutating func fixed32() -> UInt32 {
            defer { bytes = bytes.dropFirst(4) }
            return bytes.prefix(4).enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * $1.offset) }
        }
        mutating func lengthDelimited() -> ArraySlice<UInt8> {
            let n = Int(varint())
            defer { bytes = bytes.dropFirst(n) }
            return bytes.prefix(n)
        }
    }

    func testCRC32CMatchesTheStandardCheckValue() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        let sample = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }
        XCTAssertEqual(CRC32C.checksum(sample), referenceCRC32C(sample))
    }

    func testTensorBoardEventFileRoundTrips() throws {
        let dir = try makeTemporaryDirectory(self)
        let writer = try TensorBoardWriter(directory: dir + "/tb", wallTime: 1_700_000_000.5, hostname: "node7")
        XCTAssertEqual((writer.path as NSString).lastPathComponent, "events.out.tfevents.1700000000.node7")
        try writer.addScalars([("train/loss", 7.25), ("train/lr", 1e-4)], step: 1, wallTime: 1_700_000_001)
        try writer.add(MetricsRecord(step: 300, split: .validation, mlmLoss: 2.5, perplexity: 12.18),
                       wallTime: 1_700_000_002)
        try writer.addScalars([("train/loss", -0.5)], step: 5_000_000_000, wallTime: 1_700_000_003)
        writer.close()

        let events = try readEvents(writer.path)
        XCTAssertEqual(events.count, 4)
        XCTAssertEqual(events[0].fileVersion, "brain.Event:2")
        XCTAssertEqual(events[0].wallTime, 1_700_000_000.5)
        XCTAssertEqual(events[1].step, 1)
        XCTAssertEqual(events[1].wallTime, 1_700_000_001)
        XCTAssertEqual(events[1].values.map(\.0), ["train/loss", "train/lr"])
        XCTAssertEqual(events[1].values.map(\.1), [7.25, Float(1e-4)])
        XCTAssertEqual(events[2].step, 300)
        XCTAssertEqual(events[2].values.map(\.0), ["validation/mlm_loss", "validation/perplexity"])
        XCTAssertEqual(events[2].values.map(\.1), [2.5, Float(12.18)])
        XCTAssertEqual(events[3].step, 5_000_000_000)
        XCTAssertEqual(events[3].values.map(\.1), [-0.5])

        let second = try TensorBoardWriter(directory: dir + "/tb", wallTime: 1_700_000_000.9, hostname: "node7")
        XCTAssertNotEqual(second.path, writer.path, "a writer in the same second must not reuse the file")
    }
}
