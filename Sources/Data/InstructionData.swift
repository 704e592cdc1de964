import Foundation

/// Prompt/response data for fine-tuning a causal LM to answer (instruction tuning): JSON lines with
/// `prompt` and `response` strings, or chat-style `messages` (a list of `{"role", "content"}`).
///
/// An example is a list of text segments, each with whether the model learns to produce it. A pair is
/// the prompt (not learned) then the response (learned). Messages are rendered as
/// `"<role>: <content>\n"` each; the contents of `assistant` messages are learned, and the roles, the
/// other messages and the line breaks are not. The tokenizer's end-of-text token follows every example
/// and is learned, so the model learns to stop.
public struct InstructionExample: Equatable, Sendable {
    public var line: Int
    public var segments: [(text: String, learned: Bool)]

    public static func == (a: Self, b: Self) -> Bool {
        a.line == b.line && a.segments.map(\.text) == b.segments.map(\.text) && a.segments.map(\.learned) == b.segments.map(\.learned)
    }

    /// Reads every example of a JSON-lines file; errors name the file, the line and the field.
    public static func read(path: String) throws -> [InstructionExample] {
        let table = try TaskFile(path: path).records(.jsonLines)
        let examples = try table.records.map { record -> InstructionExample in
            if let messages = record.values["messages"] {
                return InstructionExample(line: record.line, segments: try chat(messages, record, table))
            }
            guard record.values["prompt"] != nil || record.values["response"] != nil else {
                throw TaskDataError(path: path, line: record.line,
                                    "has neither 'prompt'/'response' nor 'messages' (the file has \(table.fieldList)); "
                                        + "give each line a prompt and a response, or a list of chat messages")
            }
            let prompt = try table.string(record, "prompt"), response = try table.string(record, "response")
            guard !response.isEmpty else {
                throw TaskDataError(path: path, line: record.line, field: "response", "is empty; the model learns nothing from it")
            }
            return InstructionExample(line: record.line, segments: [(prompt, false), (response, true)])
        }
        guard !examples.isEmpty else { throw TaskDataError(path: path, "the file holds no examples") }
        return examples
    }

    private static func chat(_ value: JSONValue, _ record: TaskRecord, _ table: Table) throws -> [(text: String, learned: Bool)] {
        var segments: [(text: String, learned: Bool)] = []
        for (index, message) in try table.array(value, record, "messages").enumerated() {
            let field = "messages[\(index)]"
            guard case let .string(role)? = message["role"], case let .string(content)? = message["content"] else {
                throw TaskDataError(path: table.path, line: record.line, field: field,
                                    "must be an object with string 'role' and 'content'")
            }
            segments.append((role + ": ", false))
            segments.append((content, role == "assistant"))
            segments.append(("\n", false))
        }
        guard segments.contains(where: \.learned) else {
            throw TaskDataError(path: table.path, line: record.line, field: "messages",
                                "has no 'assistant' message; the model learns only what the assistant says")
        }
        return segments
    }

    /// Token ids and labels (the ids where learned, `ignored` elsewhere), the end-of-text token last
    /// and learned. Segments are encoded one by one, so a learned segment's first token never merges
    /// with the prompt's last; at most `maxLength` tokens are kept.
    public func encoded(_ tokenizer: ByteLevelBPE, endOfText: Int32, maxLength: Int, ignored: Int32) -> (ids: [Int32], labels: [Int32]) {
        var ids: [Int32] = [], labels: [Int32] = []
        for segment in segments where !segment.text.isEmpty {
            let piece = tokenizer.encode(segment.text)
            ids += piece
            labels += segment.learned ? piece : Array(repeating: ignored, count: piece.count)
        }
        ids.append(endOfText)
        labels.append(endOfText)
        return (Array(ids.prefix(maxLength)), Array(labels.prefix(maxLength)))
    }
}
