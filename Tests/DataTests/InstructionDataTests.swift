import Foundation
import XCTest

@testable import Data

/// Prompt/response files become ids with labels on the learned parts only.
final class InstructionDataTests: XCTestCase {
    static let tokenizer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/bpe/tokenizer.json").path

    func write(_ lines: [String]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("instructions-\(UUID().uuidString).jsonl").path
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testPairsAndChatsLabelTheResponsesAndTheEnd() throws {
        let tokenizer = try ByteLevelBPE.load(tokenizerJSON: Self.tokenizer)
        let eot = try XCTUnwrap(tokenizer.id(ofSpelled: "<|endoftext|>"))
        let examples = try InstructionExample.read(path: try write([
            #"{"prompt": "In the beginning", "response": " God created"}"#,
            "",
            #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Moses."}]}"#,
        ]))
        XCTAssertEqual(examples.map(\.line), [1, 3])
        let pair = examples[0].encoded(tokenizer, endOfText: eot, maxLength: 100, ignored: -100)
        let prompt = tokenizer.encode("In the beginning"), response = tokenizer.encode(" God created")
        XCTAssertEqual(pair.ids, prompt + response + [eot])
        XCTAssertEqual(pair.labels, Array(repeating: -100, count: prompt.count) + response + [eot])

        let chat = examples[1].encoded(tokenizer, endOfText: eot, maxLength: 100, ignored: -100)
        let pieces = ["system: ", "Be brief.", "\n", "user: ", "Who?", "\n", "assistant: "].map(tokenizer.encode)
        let answer = tokenizer.encode("Moses."), newline = tokenizer.encode("\n")
        XCTAssertEqual(chat.ids, pieces.flatMap { $0 } + answer + newline + [eot])
        XCTAssertEqual(chat.labels, Array(repeating: -100, count: pieces.flatMap { $0 }.count) + answer
                           + Array(repeating: -100, count: newline.count) + [eot])
        XCTAssertEqual(tokenizer.decode(chat.ids), "system: Be brief.\nuser: Who?\nassistant: Moses.\n<|endoftext|>")

        let cut = examples[0].encoded(tokenizer, endOfText: eot, maxLength: prompt.count + 1, ignored: -100)
        XCTAssertEqual(cut.ids, Array((prompt + response).prefix(prompt.count + 1)))
        XCTAssertEqual(cut.labels.suffix(1), response.prefix(1))
    }

    func testErrorsNameTheLineAndField() throws {
        let cases: [(String, String)] = [
            (#"{"prompt": "a", "response": ""}"#, ":1: field 'response': is empty"),
            (#"{"prompt": 3, "response": "b"}"#, ":1: field 'prompt': is a number"),
            (#"{"messages": "hello"}"#, ":1: field 'messages': is a string, expected an array"),
            (#"{"messages": [{"role": "assistant"}]}"#, ":1: field 'messages[0]': must be an object with string 'role' and 'content'"),
            (#"[1, 2]"#, ":1: the line is an array"),
        ]
        for (line, expected) in cases {
            let path = try write([line])
            XCTAssertThrowsError(try InstructionExample.read(path: path), line) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(expected), "\(line): \(error)")
            }
        }
    }
}
