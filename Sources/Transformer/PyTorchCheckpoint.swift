import Foundation

// Reading `pytorch_model.bin` as `torch.save` writes it since PyTorch 1.6: a zip archive (entries
// stored, not compressed) holding `<name>/data.pkl`, a pickle of the state dict, and one entry
// `<name>/data/<key>` per storage. The pickle is interpreted, never executed: only the opcodes and
// the three callables a state dict uses (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
// `torch._utils._rebuild_parameter`) are understood; anything else is refused by name.

/// A `pytorch_model.bin` that cannot be read, with the file and what is wrong.
public struct PyTorchCheckpointError: Error, LocalizedError, CustomStringConvertible {
    public let path: String
    public let detail: String

    public var description: String {
        "PyTorch checkpoint \(path): \(detail); convert it with transformers (from_pretrained, then save_pretrained) "
            + "to model.safetensors"
    }

    public var errorDescription: String? { description }
}

extension SafetensorsFile {
    /// The tensors of a state dict saved by `torch.save` (zip format), memory-mapped in place: the
    /// same accessors as a safetensors file. Tensors must be contiguous; the storages' bytes are
    /// little-endian, as PyTorch writes them on every platform SwiftBERT runs on.
    public init(pyTorchCheckpoint path: String) throws {
        let mapping: MappedFile
        do {
            mapping = try MappedFile(path: path)
        } catch let SafetensorsError.cannotOpen(_, reason) {
            throw PyTorchCheckpointError(path: path, detail: "cannot be opened (\(reason))")
        }
        let bytes = UnsafeRawBufferPointer(start: mapping.base, count: mapping.count)
        let fail = { (detail: String) in PyTorchCheckpointError(path: path, detail: detail) }
        let entries = try ZipDirectory(bytes, fail: fail)
        guard let pickleName = entries.names.first(where: { $0.hasSuffix("/data.pkl") || $0 == "data.pkl" }) else {
            throw fail("no data.pkl in the archive (a checkpoint of PyTorch before 1.6, or not one at all)")
        }
        let prefix = String(pickleName.dropLast("data.pkl".count))
        let pickle = try entries.data(pickleName, fail: fail)
        var machine = PickleMachine(bytes: UnsafeRawBufferPointer(rebasing: bytes[pickle]), fail: fail)
        let root = try machine.run()
        guard case let .dictionary(items) = root else { throw fail("the pickle is not a state dict") }

        var tensors: [String: TensorInfo] = [:]
        var order: [String] = []
        for (key, value) in items {
            guard case let .string(name) = key else { throw fail("a state dict key is not a string") }
            guard case let .tensor(storage, offset, shape, strides) = value else {
                throw fail("'\(name)' is not a tensor")
            }
            // Sizes in elements, in checked arithmetic: a damaged file must not overflow.
            var elements = 1
            for (size, stride) in zip(shape, strides).reversed() {
                guard size == 1 || stride == elements else { throw fail("tensor '\(name)' is not contiguous") }
                let (product, overflow) = elements.multipliedReportingOverflow(by: size)
                guard !overflow, product <= mapping.count else { throw fail("tensor '\(name)' has an absurd shape \(shape)") }
                elements = product
            }
            let range = try entries.data(prefix + "data/" + storage.key, fail: fail)
            let capacity = range.count / storage.dtype.size
            guard offset >= 0, offset <= capacity, elements <= capacity - offset else {
                throw fail("tensor '\(name)' reaches past its storage '\(storage.key)'")
            }
            let begin = range.lowerBound + offset * storage.dtype.size
            let info = TensorInfo(dtype: storage.dtype, shape: shape, byteRange: begin..<(begin + elements * storage.dtype.size))
            if tensors.updateValue(info, forKey: name) == nil { order.append(name) }
        }
        self.init(path: path, mapping: mapping, tensors: tensors, order: order)
    }
}

// MARK: - Zip

/// The central directory of a zip archive whose entries are stored uncompressed (zip64 included).
private struct ZipDirectory {
    let bytes: UnsafeRawBufferPointer
    private var entries: [String: (localHeader: Int, size: Int, method: Int)] = [:]
    private(set) var names: [String] = []

    init(_ bytes: UnsafeRawBufferPointer, fail: (String) -> PyTorchCheckpointError) throws {
        self.bytes = bytes
        // The end-of-central-directory record is within the last 64 KiB + 22 bytes.
        var end = -1
        var position = bytes.count - 22
        while position >= max(0, bytes.count - 65_557) {
            if Self.u32(bytes, position) == 0x0605_4b50 { end = position; break }
            position -= 1
        }
        guard end >= 0 else { throw fail("not a zip archive (no end-of-central-directory record)") }
        var count = Int(Self.u16(bytes, end + 10)), directory = Int(Self.u32(bytes, end + 16))
        // Zip64: the locator just before the record points at the zip64 end record.
        if end >= 20, Self.u32(bytes, end - 20) == 0x0706_4b50 {
            let record = Int(truncatingIfNeeded: Self.u64(bytes, end - 12))
            guard record >= 0, record <= bytes.count - 56, Self.u32(bytes, record) == 0x0606_4b50 else {
                throw fail("broken zip64 end record")
            }
            count = Int(truncatingIfNeeded: Self.u64(bytes, record + 32))
            directory = Int(truncatingIfNeeded: Self.u64(bytes, record + 48))
        }
        position = directory
        for _ in 0..<max(0, count) {
            guard position >= 0, position <= bytes.count - 46, Self.u32(bytes, position) == 0x0201_4b50 else {
                throw fail("broken zip central directory")
            }
            let method = Int(Self.u16(bytes, position + 10))
            var size = Int(Self.u32(bytes, position + 24))
            let nameLength = Int(Self.u16(bytes, position + 28)), extraLength = Int(Self.u16(bytes, position + 30))
            let commentLength = Int(Self.u16(bytes, position + 32))
            var local = Int(Self.u32(bytes, position + 42))
            let nameStart = position + 46
            guard nameStart + nameLength + extraLength <= bytes.count else { throw fail("broken zip central directory") }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[nameStart..<(nameStart + nameLength)]), as: UTF8.self)
            // Zip64 extended information: the 64-bit values of the fields saturated at 0xFFFFFFFF, in order.
            var extra = nameStart + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = Self.u16(bytes, extra), length = Int(Self.u16(bytes, extra + 2))
                guard extra + 4 + length <= extraEnd else { throw fail("broken zip extra field of '\(name)'") }
                if id == 1 {
                    var field = extra + 4
                    func next() throws -> Int {
                        guard field + 8 <= extra + 4 + length else { throw fail("broken zip64 field of '\(name)'") }
                        defer { field += 8 }
                        return Int(truncatingIfNeeded: Self.u64(bytes, field))
                    }
                    if Self.u32(bytes, position + 24) == 0xFFFF_FFFF { size = try next() }
                    if Self.u32(bytes, position + 20) == 0xFFFF_FFFF { _ = try next() }
                    if Self.u32(bytes, position + 42) == 0xFFFF_FFFF { local = try next() }
                }
                extra += 4 + length
            }
            guard local >= 0, size >= 0 else { throw fail("broken zip entry '\(name)'") }
            entries[name] = (local, size, method)
            names.append(name)
            position = extraEnd + commentLength
        }
    }

    /// The byte range of an entry's data in the archive.
    func data(_ name: String, fail: (String) -> PyTorchCheckpointError) throws -> Range<Int> {
        guard let entry = entries[name] else { throw fail("the archive has no entry '\(name)'") }
        guard entry.method == 0 else { throw fail("entry '\(name)' is compressed (method \(entry.method)); torch.save stores entries") }
        let local = entry.localHeader
        guard local <= bytes.count - 30, Self.u32(bytes, local) == 0x0403_4b50 else {
            throw fail("broken zip local header of '\(name)'")
        }
        let start = local + 30 + Int(Self.u16(bytes, local + 26)) + Int(Self.u16(bytes, local + 28))
        guard entry.size <= bytes.count - start else { throw fail("entry '\(name)' is truncated") }
        return start..<(start + entry.size)
    }

    private static func u16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    private static func u32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(u16(bytes, offset)) | UInt32(u16(bytes, offset + 2)) << 16
    }

    private static func u64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(u32(bytes, offset)) | UInt64(u32(bytes, offset + 4)) << 32
    }
}

// MARK: - Pickle

/// A storage a tensor views: its entry key under `data/` and its element type.
private struct StorageReference {
    let key: String
    let dtype: SafetensorsDType
}

/// The values a state dict's pickle builds.
private indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case tuple([PickleValue])
    case list([PickleValue])
    case dictionary([(PickleValue, PickleValue)])
    case global(String)
    case storage(StorageReference)
    case tensor(StorageReference, offset: Int, shape: [Int], strides: [Int])
    case mark
}

/// Runs the opcodes of pickle protocols 2 to 5 that `torch.save` emits for a state dict.
private struct PickleMachine {
    let bytes: UnsafeRawBufferPointer
    let fail: (String) -> PyTorchCheckpointError
    var position = 0
    var stack: [PickleValue] = []
    var memo: [Int: PickleValue] = [:]

    init(bytes: UnsafeRawBufferPointer, fail: @escaping (String) -> PyTorchCheckpointError) {
        self.bytes = bytes
        self.fail = fail
    }

    mutating func run() throws -> PickleValue {
        while true {
            let opcode = try byte()
            switch opcode {
            case 0x80: _ = try byte()                                             // PROTO
            case 0x95: _ = try integer(8)                                         // FRAME
            case 0x2E: return try pop()                                           // STOP
            case 0x28: stack.append(.mark)                                        // MARK
            case 0x4E: stack.append(.none)                                        // NONE
            case 0x88: stack.append(.bool(true))                                  // NEWTRUE
            case 0x89: stack.append(.bool(false))                                 // NEWFALSE
            case 0x4B: stack.append(.int(try integer(1)))                         // BININT1
            case 0x4D: stack.append(.int(try integer(2)))                         // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try integer(4)))))  // BININT
            case 0x8A: stack.append(.int(try long(try integer(1))))               // LONG1
            case 0x47: stack.append(.float(Double(bitPattern: try bigEndian(8))))      // BINFLOAT
            case 0x58: stack.append(.string(try text(try integer(4))))            // BINUNICODE
            case 0x8C: stack.append(.string(try text(try integer(1))))            // SHORT_BINUNICODE
            case 0x55: stack.append(.string(try text(try integer(1))))            // SHORT_BINSTRING
            case 0x43: stack.append(.string(try text(try integer(1))))            // SHORT_BINBYTES
            case 0x42: stack.append(.string(try text(try integer(4))))            // BINBYTES
            case 0x63:                                                            // GLOBAL
                let module = try line(), name = try line()
                stack.append(.global(module + "." + name))
            case 0x93:                                                            // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case let .string(m) = module, case let .string(n) = name else { throw fail("bad STACK_GLOBAL") }
                stack.append(.global(m + "." + n))
            case 0x7D: stack.append(.dictionary([]))                              // EMPTY_DICT
            case 0x5D: stack.append(.list([]))                                    // EMPTY_LIST
            case 0x29: stack.append(.tuple([]))                                   // EMPTY_TUPLE
            case 0x74: stack.append(.tuple(try popToMark()))                      // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))                          // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))  // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))  // TUPLE3
            case 0x71: memo[try integer(1)] = try top()                           // BINPUT
            case 0x72: memo[try integer(4)] = try top()                           // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()                               // MEMOIZE
            case 0x68: stack.append(try recall(try integer(1)))                   // BINGET
            case 0x6A: stack.append(try recall(try integer(4)))                   // LONG_BINGET
            case 0x73:                                                            // SETITEM
                let value = try pop(), key = try pop()
                try addItems([(key, value)])
            case 0x75:                                                            // SETITEMS
                let flat = try popToMark()
                guard flat.count % 2 == 0 else { throw fail("odd SETITEMS") }
                try addItems(stride(from: 0, to: flat.count, by: 2).map { (flat[$0], flat[$0 + 1]) })
            case 0x61:                                                            // APPEND
                let value = try pop()
                guard case let .list(list) = try pop() else { throw fail("APPEND to a non-list") }
                stack.append(.list(list + [value]))
            case 0x65:                                                            // APPENDS
                let values = try popToMark()
                guard case let .list(list) = try pop() else { throw fail("APPENDS to a non-list") }
                stack.append(.list(list + values))
            case 0x51:                                                            // BINPERSID
                stack.append(try persistent(try pop()))
            case 0x52:                                                            // REDUCE
                let arguments = try pop(), callable = try pop()
                stack.append(try reduce(callable, arguments))
            case 0x62:                                                            // BUILD: a state dict's _metadata
                _ = try pop()
            default:
                throw fail(String(format: "unsupported pickle opcode 0x%02x at byte %d", opcode, position - 1))
            }
        }
    }

    private mutating func byte() throws -> UInt8 {
        guard position < bytes.count else { throw fail("the pickle ends early") }
        defer { position += 1 }
        return bytes[position]
    }

    /// A little-endian unsigned integer of `count` bytes.
    private mutating func integer(_ count: Int) throws -> Int {
        var value: UInt64 = 0
        for index in 0..<count { value |= UInt64(try byte()) << (8 * UInt64(index)) }
        return Int(truncatingIfNeeded: value)
    }

    private mutating func bigEndian(_ count: Int) throws -> UInt64 {
        var value: UInt64 = 0
        for _ in 0..<count { value = value << 8 | UInt64(try byte()) }
        return value
    }

    /// A two's-complement little-endian integer of `count` bytes (LONG1).
    private mutating func long(_ count: Int) throws -> Int {
        guard count <= 8 else { throw fail("an integer of \(count) bytes") }
        guard count > 0 else { return 0 }
        let value = try integer(count)
        let shift = 64 - 8 * count
        return count == 8 ? value : (value << shift) >> shift
    }

    private mutating func text(_ count: Int) throws -> String {
        guard count >= 0, position + count <= bytes.count else { throw fail("the pickle ends early") }
        defer { position += count }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)]), as: UTF8.self)
    }

    private mutating func line() throws -> String {
        var characters: [UInt8] = []
        while true {
            let next = try byte()
            if next == 0x0A { return String(decoding: characters, as: UTF8.self) }
            characters.append(next)
        }
    }

    private mutating func pop() throws -> PickleValue {
        guard let value = stack.popLast() else { throw fail("the pickle's stack is empty") }
        return value
    }

    private func top() throws -> PickleValue {
        guard let value = stack.last else { throw fail("the pickle's stack is empty") }
        return value
    }

    private func recall(_ index: Int) throws -> PickleValue {
        guard let value = memo[index] else { throw fail("the pickle reads memo \(index) before writing it") }
        return value
    }

    private mutating func popToMark() throws -> [PickleValue] {
        guard let mark = stack.lastIndex(where: { if case .mark = $0 { true } else { false } }) else {
            throw fail("the pickle has no MARK")
        }
        let items = Array(stack[(mark + 1)...])
        stack.removeSubrange(mark...)
        return items
    }

    private mutating func addItems(_ items: [(PickleValue, PickleValue)]) throws {
        guard case let .dictionary(existing) = try pop() else { throw fail("SETITEM on a non-dict") }
        stack.append(.dictionary(existing + items))
    }

    /// `('storage', torch.<Type>Storage, key, location, count)`.
    private func persistent(_ id: PickleValue) throws -> PickleValue {
        guard case let .tuple(fields) = id, fields.count >= 3, case .string("storage") = fields[0],
            case let .global(type) = fields[1], case let .string(key) = fields[2]
        else { throw fail("unsupported persistent id") }
        let types: [String: SafetensorsDType] = [
            "torch.FloatStorage": .float32, "torch.HalfStorage": .float16, "torch.BFloat16Storage": .bfloat16,
            "torch.DoubleStorage": .float64, "torch.LongStorage": .int64, "torch.IntStorage": .int32,
            "torch.ShortStorage": .int16, "torch.CharStorage": .int8, "torch.ByteStorage": .uint8, "torch.BoolStorage": .bool,
        ]
        guard let dtype = types[type] else { throw fail("unsupported storage type \(type)") }
        return .storage(StorageReference(key: key, dtype: dtype))
    }

    private func reduce(_ callable: PickleValue, _ arguments: PickleValue) throws -> PickleValue {
        guard case let .global(name) = callable, case let .tuple(args) = arguments else {
            throw fail("unsupported REDUCE")
        }
        switch name {
        case "collections.OrderedDict":
            return .dictionary([])
        case "torch._utils._rebuild_tensor_v2":
            guard args.count >= 4, case let .storage(storage) = args[0], case let .int(offset) = args[1],
                case let .tuple(size) = args[2], case let .tuple(stride) = args[3]
            else { throw fail("unsupported _rebuild_tensor_v2 arguments") }
            func ints(_ values: [PickleValue]) throws -> [Int] {
                try values.map { value in
                    guard case let .int(int) = value, int >= 0 else { throw fail("a tensor size or stride is not a count") }
                    return int
                }
            }
            guard size.count == stride.count else { throw fail("a tensor's size and stride differ in length") }
            return .tensor(storage, offset: offset, shape: try ints(size), strides: try ints(stride))
        case "torch._utils._rebuild_parameter":
            guard let tensor = args.first, case .tensor = tensor else { throw fail("unsupported _rebuild_parameter arguments") }
            return tensor
        default:
            throw fail("the pickle calls \(name), which a state dict does not need; refusing to load it")
        }
    }
}
