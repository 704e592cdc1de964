import Foundation

// Every module reads files a user gives (configs, manifests, vocabularies, safetensors headers) and
// reports what is wrong with them in one line; these helpers keep quoted file contents from breaking it.

extension String {
    /// The text with line breaks escaped (`\n`, `\r`), so that a message quoting a damaged file's key
    /// or value stays one line.
    public var escapingLineBreaks: String {
        replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\r")
    }
}

extension DecodingError {
    /// One line naming the key path and what was wrong, for messages about a damaged file (the
    /// default description spells out the whole context type).
    public var summary: String {
        func at(_ path: [CodingKey]) -> String {
            path.isEmpty ? "" : " at '" + path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "'"
        }
        switch self {
        case let .keyNotFound(key, context):
            return "missing key '\(key.stringValue)'\(at(context.codingPath))".escapingLineBreaks
        case let .typeMismatch(type, context), let .valueNotFound(type, context):
            return "expected \(type)\(at(context.codingPath))".escapingLineBreaks
        case let .dataCorrupted(context):
            let reason = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
                ?? context.debugDescription
            return (reason + at(context.codingPath)).escapingLineBreaks
        @unknown default:
            return "\(self)".escapingLineBreaks
        }
    }
}
