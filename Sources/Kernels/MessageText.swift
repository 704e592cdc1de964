import Foundation

// Every module reads JSON files a user gives (configs, manifests, safetensors headers); their
// messages describe a decoding failure the same way, in one line.
extension DecodingError {
    /// One line naming the key path and what was wrong, for messages about a damaged file (the
    /// default description spells out the whole context type).
    public var summary: String {
        func at(_ path: [CodingKey]) -> String {
            path.isEmpty ? "" : " at '" + path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "'"
        }
        switch self {
        case let .keyNotFound(key, context):
            return "missing key '\(key.stringValue)'\(at(context.codingPath))"
        case let .typeMismatch(type, context), let .valueNotFound(type, context):
            return "expected \(type)\(at(context.codingPath))"
        case let .dataCorrupted(context):
            let reason = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
                ?? context.debugDescription
            return reason.split(whereSeparator: \.isNewline).joined(separator: " ") + at(context.codingPath)
        @unknown default:
            return "\(self)".split(whereSeparator: \.isNewline).joined(separator: " ")
        }
    }
}
