import Data
import Foundation

// The machinery behind the key declarations in ConfigKeys.swift: one `ConfigKey` per key says where the
// key lives, its type, default, bounds, whether it may change on resume, its documentation and the Swift
// property it binds to; reading, defaults, checks, the resolved file, the fingerprint's key set and the
// documentation are all walks over those declarations.

/// Whether a key may take another value when a run resumes from one of its checkpoints.
enum ResumeRule: Sendable {
    /// Changing it would rewrite the steps already taken: it is part of the configuration fingerprint.
    case mustMatch
    /// A resumed run may change it (paths, cadence, guards, the run's length); the change is logged.
    case mayChange
}

/// The values a numeric key accepts, and the message (after "is VALUE; ") for a value outside them.
struct ConfigBounds<Value: Comparable & Sendable>: Sendable {
    var lower: Value?, lowerInclusive = true
    var upper: Value?, upperInclusive = true
    var message: String

    static func atLeast(_ lower: Value, else message: String) -> Self { Self(lower: lower, message: message) }
    static func above(_ lower: Value, else message: String) -> Self {
        Self(lower: lower, lowerInclusive: false, message: message)
    }
    static func between(_ lower: Value, _ upper: Value, else message: String) -> Self {
        Self(lower: lower, upper: upper, message: message)
    }
    /// Both ends excluded.
    static func strictlyBetween(_ lower: Value, _ upper: Value, else message: String) -> Self {
        Self(lower: lower, lowerInclusive: false, upper: upper, upperInclusive: false, message: message)
    }
    /// The lower end included, the upper one excluded.
    static func from(_ lower: Value, below upper: Value, else message: String) -> Self {
        Self(lower: lower, upper: upper, upperInclusive: false, message: message)
    }

    func contains(_ value: Value) -> Bool {
        if let lower, lowerInclusive ? value < lower : value <= lower { return false }
        if let upper, upperInclusive ? value > upper : value >= upper { return false }
        return true
    }

    /// The check the readers take: nil when the value is inside the bounds.
    var check: (Value) -> String? { { contains($0) ? nil : message } }

    /// Interval notation for the documentation, e.g. `[0, 1)`, `>= 1`.
    func text(_ format: (Value) -> String) -> String {
        switch (lower, upper) {
        case let (lower?, upper?):
            return (lowerInclusive ? "[" : "(") + format(lower) + ", " + format(upper) + (upperInclusive ? "]" : ")")
        case let (lower?, nil): return (lowerInclusive ? ">= " : "> ") + format(lower)
        case let (nil, upper?): return (upperInclusive ? "<= " : "< ") + format(upper)
        case (nil, nil): return ""
        }
    }
}

/// A condition on the keys read so far, with its wording for the documentation.
struct ConfigCondition<Root>: Sendable {
    /// Completes "required when ...", "left out when ...": e.g. "`task.type` is `\"pretraining\"`".
    let help: String
    let holds: @Sendable (Root) -> Bool
}

/// Whether a key or section must be given. A condition sees the keys read before it: those declared
/// earlier in its section, and the top-level keys the schema reads first (`ConfigSchema.readFirst`).
enum ConfigRequirement<Root>: Sendable, ExpressibleByBooleanLiteral {
    case always, never
    case when(ConfigCondition<Root>)

    init(booleanLiteral value: Bool) { self = value ? .always : .never }

    func holds(for root: Root) -> Bool {
        switch self {
        case .always: return true
        case .never: return false
        case let .when(condition): return condition.holds(root)
        }
    }

    /// For the documentation: "(required)", "(required when ...)", or nil.
    var text: String? {
        switch self {
        case .always: return "(required)"
        case .never: return nil
        case let .when(condition): return "(required when \(condition.help))"
        }
    }
}

/// A check across keys, run once the keys of its section are read; `keyPath` is the key it blames.
struct ConfigRule<Root>: Sendable {
    let keyPath: String
    /// One line for the documentation.
    let help: String
    /// nil when the configuration obeys the rule, otherwise the message.
    let violation: @Sendable (Root) -> String?
}

/// One key of the configuration file: a value bound to a property of `Root`, or a section of keys.
struct ConfigKey<Root>: Sendable {
    let name: String
    /// One line for the documentation.
    let help: String
    let content: Content

    enum Content: Sendable {
        case value(Value)
        case section(Section)
    }

    struct Section: Sendable {
        let required: ConfigRequirement<Root>
        let keys: [ConfigKey<Root>]
        let rules: [ConfigRule<Root>]
        /// When the section is left out of the resolved file (and so of the fingerprint), because its
        /// values say nothing then; reading the file back gives the same defaults.
        let omitted: ConfigCondition<Root>?
    }

    struct Value: Sendable {
        /// For the documentation: "integer", "number", "string or null", ...
        let type: String
        /// The value an absent (or null) key takes, as written in the resolved file; nil when required.
        let defaultValue: JSONValue?
        /// For the documentation, when the key is required only sometimes: "(required when ...)".
        let requirement: String?
        /// For the documentation: the bounds or choices, empty when any value of the type is accepted.
        let accepted: String
        let onResume: ResumeRule
        let setDefault: @Sendable (inout Root) -> Void
        let read: @Sendable (inout ObjectReader, inout Root) throws -> Void
        let write: @Sendable (Root) -> JSONValue
    }

    // MARK: Declarations

    /// `omitted`: when the resolved file leaves the section out.
    static func section(_ name: String, required: ConfigRequirement<Root>, _ help: String, _ keys: [ConfigKey],
                        rules: [ConfigRule<Root>] = [], omitted: ConfigCondition<Root>? = nil) -> ConfigKey {
        ConfigKey(name: name, help: help,
                  content: .section(Section(required: required, keys: keys, rules: rules, omitted: omitted)))
    }

    /// A key of any type, read and written by the given functions; for a value that is not one of the
    /// types below (the `model` section, read by `BertConfig`). `read` takes the key from the reader and
    /// sees the keys read before; `required` only documents what it does.
    static func custom<V: Sendable>(_ name: String, _ property: WritableKeyPath<Root, V> & Sendable, type: String,
                          required: ConfigRequirement<Root> = .always, onResume: ResumeRule, _ help: String,
                          read: @escaping @Sendable (inout ObjectReader, Root) throws -> V,
                          write: @escaping @Sendable (V) -> JSONValue) -> ConfigKey {
        value(name, property, type: type, default: nil, requirement: required, accepted: "", onResume: onResume, help,
              read: read, write: write)
    }

    /// An integer; `default` nil makes the key required.
    static func integer(_ name: String, _ property: WritableKeyPath<Root, Int> & Sendable, default fallback: Int?,
                        _ bounds: ConfigBounds<Int>? = nil, onResume: ResumeRule, _ help: String) -> ConfigKey {
        value(name, property, type: "integer", default: fallback, accepted: bounds?.text(Self.integerText) ?? "",
              onResume: onResume, help,
              read: { reader, _ in try reader.int(name, default: fallback, check: bounds?.check ?? { _ in nil }) },
              write: { .integer($0) })
    }

    /// An integer or null; null (the default) leaves the choice to the program.
    static func optionalInteger(_ name: String, _ property: WritableKeyPath<Root, Int?> & Sendable,
                                _ bounds: ConfigBounds<Int>? = nil, onResume: ResumeRule, _ help: String) -> ConfigKey {
        value(name, property, type: "integer or null", default: .some(nil), accepted: bounds?.text(Self.integerText) ?? "",
              onResume: onResume, help,
              read: { reader, _ in try reader.optionalInt(name, check: bounds?.check ?? { _ in nil }) },
              write: { $0.map { .integer($0) } ?? .null })
    }

    /// An integer in 0 ..< 2^64 (seeds).
    static func unsigned(_ name: String, _ property: WritableKeyPath<Root, UInt64> & Sendable, default fallback: UInt64,
                         onResume: ResumeRule, _ help: String) -> ConfigKey {
        value(name, property, type: "integer", default: fallback, accepted: "[0, 2^64)", onResume: onResume, help,
              read: { reader, _ in try reader.unsigned(name, default: fallback) }, write: { .integer($0) })
    }

    /// A finite number; `default` nil makes the key required.
    static func number(_ name: String, _ property: WritableKeyPath<Root, Double> & Sendable, default fallback: Double?,
                       _ bounds: ConfigBounds<Double>? = nil, onResume: ResumeRule, _ help: String) -> ConfigKey {
        value(name, property, type: "number", default: fallback,
              accepted: bounds?.text { JSONValue.double($0).compactText() } ?? "", onResume: onResume, help,
              read: { reader, _ in try reader.double(name, default: fallback, check: bounds?.check ?? { _ in nil }) },
              write: { .double($0) })
    }

    static func boolean(_ name: String, _ property: WritableKeyPath<Root, Bool> & Sendable, default fallback: Bool,
                        onResume: ResumeRule, _ help: String) -> ConfigKey {
        value(name, property, type: "boolean", default: fallback, accepted: "", onResume: onResume, help,
              read: { reader, _ in try reader.bool(name, default: fallback) }, write: { .bool($0) })
    }

    /// A non-empty string, required unless `required` says otherwise; `ifEmpty` is the message for "".
    /// Where it is not required it may be absent or empty, and is "".
    static func string(_ name: String, _ property: WritableKeyPath<Root, String> & Sendable,
                       required: ConfigRequirement<Root> = .always, ifEmpty: String,
                       onResume: ResumeRule, _ help: String) -> ConfigKey {
        let fallback: String? = if case .always = required { nil } else { "" }
        return value(name, property, type: "string", default: fallback, requirement: required, accepted: "not empty",
                     onResume: onResume, help,
                     read: { reader, root in
                         guard required.holds(for: root) else { return try reader.string(name, required: false) ?? "" }
                         let text = try reader.string(name, required: true)!
                         if text.isEmpty { throw reader.error(name, ifEmpty) }
                         return text
                     },
                     write: { .string($0) })
    }

    /// A string or null (the default); `required` makes null an error where it holds.
    static func optionalString(_ name: String, _ property: WritableKeyPath<Root, String?> & Sendable,
                               required: ConfigRequirement<Root> = .never, onResume: ResumeRule, _ help: String) -> ConfigKey {
        value(name, property, type: "string or null", default: .some(nil), requirement: required, accepted: "",
              onResume: onResume, help,
              read: { reader, root in try reader.string(name, required: required.holds(for: root)) },
              write: { $0.map { .string($0) } ?? .null })
    }

    /// A list of strings or null (the default); `check` gives the message for a list it refuses.
    static func stringList(_ name: String, _ property: WritableKeyPath<Root, [String]?> & Sendable, accepted: String,
                           check: @escaping @Sendable ([String]) -> String?, onResume: ResumeRule, _ help: String) -> ConfigKey {
        value(name, property, type: "list of strings or null", default: .some(nil), accepted: accepted,
              onResume: onResume, help,
              read: { reader, _ in
                  guard let list = try reader.strings(name) else { return nil }
                  if let problem = check(list) { throw reader.error(name, problem) }
                  return list
              },
              write: { $0.map { .array($0.map { .string($0) }) } ?? .null })
    }

    /// One of the raw values of `Choice`.
    static func choice<Choice: RawRepresentable & CaseIterable & Sendable>(
        _ name: String, _ property: WritableKeyPath<Root, Choice> & Sendable, default fallback: Choice,
        onResume: ResumeRule, _ help: String
    ) -> ConfigKey where Choice.RawValue == String {
        value(name, property, type: "string", default: fallback,
              accepted: Choice.allCases.map { "`\"\($0.rawValue)\"`" }.joined(separator: ", "), onResume: onResume, help,
              read: { reader, _ in try reader.choice(name, default: fallback) }, write: { .string($0.rawValue) })
    }

    /// One of the raw values of `Choice`, or null (the default) for the program's choice.
    static func optionalChoice<Choice: RawRepresentable & CaseIterable & Sendable>(
        _ name: String, _ property: WritableKeyPath<Root, Choice?> & Sendable, onResume: ResumeRule, _ help: String
    ) -> ConfigKey where Choice.RawValue == String {
        value(name, property, type: "string or null", default: .some(nil),
              accepted: Choice.allCases.map { "`\"\($0.rawValue)\"`" }.joined(separator: ", "), onResume: onResume, help,
              read: { reader, _ in try reader.optionalChoice(name, Choice.self) },
              write: { $0.map { .string($0.rawValue) } ?? .null })
    }

    private static func integerText(_ value: Int) -> String { value.formatted() }

    /// The one place a value key is assembled: `fallback` nil means required, `.some(nil)` a null default.
    private static func value<V: Sendable>(
        _ name: String, _ property: WritableKeyPath<Root, V> & Sendable, type: String, default fallback: V?,
        requirement: ConfigRequirement<Root> = .never, accepted: String, onResume: ResumeRule, _ help: String,
        read: @escaping @Sendable (inout ObjectReader, Root) throws -> V, write: @escaping @Sendable (V) -> JSONValue
    ) -> ConfigKey {
        let sometimes: String? = if case .when = requirement { requirement.text } else { nil }
        let value = Value(
            type: type, defaultValue: fallback.map(write), requirement: sometimes, accepted: accepted, onResume: onResume,
            setDefault: { root in if let fallback { root[keyPath: property] = fallback } },
            read: { reader, root in root[keyPath: property] = try read(&reader, root) },
            write: { root in write(root[keyPath: property]) })
        return ConfigKey(name: name, help: help, content: .value(value))
    }
}

// MARK: - Walks over the declarations

/// The keys of a configuration file whose values live in `Root`.
struct ConfigSchema<Root>: Sendable {
    /// The top-level keys and sections, in the order of the resolved file.
    let keys: [ConfigKey<Root>]
    /// Top-level keys read before the others, whose values other keys depend on (their requiredness,
    /// how they are read); they keep their place in the resolved file.
    var readFirst: Set<String> = []

    /// Reads every key of `json` into `root`, section by section in declaration order (`readFirst` keys
    /// first): absent keys take their defaults, each section's rules run once its keys are read, and a key
    /// nobody declared is an error.
    func read(_ json: JSONValue, source: String, into root: inout Root) throws {
        var reader = try ObjectReader(json, path: "", source: source, required: true)
        let ordered = keys.filter { readFirst.contains($0.name) } + keys.filter { !readFirst.contains($0.name) }
        try Self.read(ordered, rules: [], with: &reader, into: &root)
    }

    private static func read(_ keys: [ConfigKey<Root>], rules: [ConfigRule<Root>], with reader: inout ObjectReader,
                             into root: inout Root) throws {
        for key in keys {
            switch key.content {
            case let .value(value):
                try value.read(&reader, &root)
            case let .section(section):
                var sectionReader = try reader.object(key.name, required: section.required.holds(for: root))
                try read(section.keys, rules: section.rules, with: &sectionReader, into: &root)
            }
        }
        for rule in rules {
            if let message = rule.violation(root) {
                throw ConfigError(source: reader.source, keyPath: rule.keyPath, message: message)
            }
        }
        try reader.finish()
    }

    /// Every default filled in; required keys keep the values `root` has.
    func applyDefaults(to root: inout Root) {
        Self.visit(keys) { _, _, value in value.setDefault(&root) }
    }

    /// The values of `root` as a JSON object in declaration order, keeping the keys `include` accepts;
    /// a section left without keys, or whose `omitted` condition holds, is left out.
    func json(of root: Root, including include: (Value) -> Bool = { _ in true }) -> JSONValue {
        Self.json(keys, of: root, including: include) ?? .object([])
    }

    typealias Value = ConfigKey<Root>.Value

    private static func json(_ keys: [ConfigKey<Root>], of root: Root, including include: (Value) -> Bool) -> JSONValue? {
        var members: [(key: String, value: JSONValue)] = []
        for key in keys {
            switch key.content {
            case let .value(value):
                if include(value) { members.append((key.name, value.write(root))) }
            case let .section(section):
                if section.omitted?.holds(root) == true { continue }
                if let json = json(section.keys, of: root, including: include) { members.append((key.name, json)) }
            }
        }
        return members.isEmpty ? nil : .object(members)
    }

    /// Every value key with its dotted path, in declaration order.
    var values: [(keyPath: String, key: ConfigKey<Root>, value: Value)] {
        var out: [(keyPath: String, key: ConfigKey<Root>, value: Value)] = []
        Self.visit(keys) { path, key, value in out.append((path, key, value)) }
        return out
    }

    private static func visit(_ keys: [ConfigKey<Root>], prefix: String = "",
                              _ body: (_ keyPath: String, ConfigKey<Root>, Value) -> Void) {
        for key in keys {
            let path = prefix.isEmpty ? key.name : prefix + "." + key.name
            switch key.content {
            case let .value(value): body(path, key, value)
            case let .section(section): visit(section.keys, prefix: path, body)
            }
        }
    }

    struct Section {
        /// Dotted path, "" for the top level.
        let path: String
        let help: String
        let content: ConfigKey<Root>.Section
    }

    /// The top level, then every section depth first.
    var sections: [Section] {
        var out = [Section(path: "", help: "", content: .init(required: .always, keys: keys, rules: [], omitted: nil))]
        func collect(_ keys: [ConfigKey<Root>], prefix: String) {
            for key in keys {
                guard case let .section(content) = key.content else { continue }
                let path = prefix.isEmpty ? key.name : prefix + "." + key.name
                out.append(Section(path: path, help: key.help, content: content))
                collect(content.keys, prefix: path)
            }
        }
        collect(keys, prefix: "")
        return out
    }

    // MARK: Documentation

    /// A Markdown table per section (the top-level keys first), with the section's rules below it.
    func markdown() -> String {
        var out = ""
        for section in sections {
            let values: [(name: String, help: String, value: Value)] = section.content.keys.compactMap {
                guard case let .value(value) = $0.content else { return nil }
                return ($0.name, $0.help, value)
            }
            guard !values.isEmpty else { continue }
            let required = section.content.required.text.map { " " + $0 } ?? ""
            out += section.path.isEmpty
                ? "## Top level\n\n"
                : "## `\(section.path)`\(required)\n\n\(section.help)\n\n"
            if let omitted = section.content.omitted {
                out += "Left out of the resolved configuration when \(omitted.help).\n\n"
            }
            out += "| key | type | default | accepted | on resume | meaning |\n| --- | --- | --- | --- | --- | --- |\n"
            for (name, help, value) in values {
                let path = section.path.isEmpty ? name : section.path + "." + name
                let fallback = value.requirement ?? value.defaultValue.map { "`\($0.compactText())`" } ?? "(required)"
                let resume = value.onResume == .mustMatch ? "must match" : "may change"
                out += "| `\(path)` | \(value.type) | \(fallback) | \(value.accepted) | \(resume) | \(help) |\n"
            }
            if !section.content.rules.isEmpty {
                out += "\nAcross keys:\n\n" + section.content.rules.map { "- `\($0.keyPath)`: \($0.help)\n" }.joined()
            }
            out += "\n"
        }
        return out
    }
}

// MARK: - Reading one object

/// Reads the members of one JSON object by key, checking types and values, and reports keys that were
/// never read as unknown.
struct ObjectReader {
    let path: String
    let source: String
    var members: [(key: String, value: JSONValue)]
    var taken: Set<String> = []

    init(_ value: JSONValue?, path: String, source: String, required: Bool) throws {
        self.path = path
        self.source = source
        switch value {
        case let .object(members)?:
            self.members = members
        case nil, .null?:
            guard !required else {
                throw ConfigError(source: source, keyPath: path, message: "missing; this section is required")
            }
            members = []
        case let other?:
            throw ConfigError(source: source, keyPath: path, message: "must be an object, not \(other.kindDescription)")
        }
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(source: source, keyPath: keyPath(key), message: message)
    }

    /// The member's value, nil when absent or null.
    mutating func take(_ key: String) -> JSONValue? {
        taken.insert(key)
        guard let value = members.first(where: { $0.key == key })?.value, value != .null else { return nil }
        return value
    }

    mutating func object(_ key: String, required: Bool) throws -> ObjectReader {
        try ObjectReader(take(key), path: keyPath(key), source: source, required: required)
    }

    mutating func int(_ key: String, default fallback: Int?, check: (Int) -> String? = { _ in nil }) throws -> Int {
        guard let value = try optionalInt(key, check: check) else {
            if let fallback { return fallback }
            throw error(key, "missing; this key is required")
        }
        return value
    }

    mutating func optionalInt(_ key: String, check: (Int) -> String? = { _ in nil }) throws -> Int? {
        guard let value = take(key) else { return nil }
        guard case let .number(text) = value else {
            throw error(key, "must be an integer, not \(value.kindDescription)")
        }
        // Accept 1e6 and 1000.0, which are integers written as decimals.
        guard let number = Int(text) ?? Double(text).flatMap({ $0 == $0.rounded() && abs($0) < 9e15 ? Int($0) : nil })
        else { throw error(key, "must be an integer, not \(text)") }
        if let problem = check(number) { throw error(key, "is \(number); \(problem)") }
        return number
    }

    mutating func unsigned(_ key: String, default fallback: UInt64) throws -> UInt64 {
        guard let value = take(key) else { return fallback }
        guard case let .number(text) = value, let number = UInt64(text) else {
            throw error(key, "must be a non-negative integer below 2^64, not \(value.compactText())")
        }
        return number
    }

    mutating func double(_ key: String, default fallback: Double?, check: (Double) -> String? = { _ in nil }) throws -> Double {
        guard let value = take(key) else {
            if let fallback { return fallback }
            throw error(key, "missing; this key is required")
        }
        guard case let .number(text) = value, let number = Double(text), number.isFinite else {
            throw error(key, "must be a number, not \(value.kindDescription)")
        }
        if let problem = check(number) { throw error(key, "is \(text); \(problem)") }
        return number
    }

    mutating func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let value = take(key) else { return fallback }
        guard case let .bool(flag) = value else { throw error(key, "must be true or false, not \(value.kindDescription)") }
        return flag
    }

    mutating func string(_ key: String, required: Bool) throws -> String? {
        guard let value = take(key) else {
            if required { throw error(key, "missing; this key is required") }
            return nil
        }
        guard case let .string(text) = value else { throw error(key, "must be a string, not \(value.kindDescription)") }
        return text
    }

    mutating func choice<Choice: RawRepresentable & CaseIterable>(_ key: String, default fallback: Choice) throws -> Choice
    where Choice.RawValue == String {
        try optionalChoice(key, Choice.self) ?? fallback
    }

    /// One of the raw values of `Choice`; nil when absent or null.
    mutating func optionalChoice<Choice: RawRepresentable & CaseIterable>(_ key: String, _: Choice.Type) throws -> Choice?
    where Choice.RawValue == String {
        guard let text = try string(key, required: false) else { return nil }
        guard let choice = Choice(rawValue: text) else {
            let names = Choice.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw error(key, "is \"\(text)\"; must be one of \(names)")
        }
        return choice
    }

    /// An array of strings, nil when absent or null.
    mutating func strings(_ key: String) throws -> [String]? {
        guard let value = take(key) else { return nil }
        guard case let .array(items) = value else { throw error(key, "must be a list of strings, not \(value.kindDescription)") }
        return try items.map { item in
            guard case let .string(text) = item else { throw error(key, "must hold strings only, not \(item.kindDescription)") }
            return text
        }
    }

    /// The member's value without reading it (it stays unknown unless a reader takes it); nil when absent.
    func peek(_ key: String) -> JSONValue? { members.first { $0.key == key }?.value }

    /// Throws for the first key that no reader asked for, listing the keys this section knows.
    func finish() throws {
        guard let unknown = members.first(where: { !taken.contains($0.key) }) else { return }
        let known = taken.sorted().joined(separator: ", ")
        throw ConfigError(source: source, keyPath: keyPath(unknown.key),
                          message: "unknown key; check the spelling or remove it (\(path.isEmpty ? "top-level" : path) keys: \(known))")
    }
}
