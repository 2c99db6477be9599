import Glibc

/// One decoded inotify record. The name is raw bytes (cut at the first NUL): never a `String`,
/// so non-UTF-8 names survive.
public struct InotifyEvent: Sendable, Hashable {
    public var wd: Int32
    public var mask: UInt32
    public var cookie: UInt32
    public var name: [UInt8]

    public init(wd: Int32, mask: UInt32, cookie: UInt32 = 0, name: [UInt8] = []) {
        self.wd = wd
        self.mask = mask
        self.cookie = cookie
        self.name = name
    }

    public func has(_ flag: Int32) -> Bool { mask & UInt32(bitPattern: flag) != 0 }
    public var isDirectory: Bool { has(Int32(bitPattern: UInt32(IN_ISDIR))) }
    public var isOverflow: Bool { has(Int32(IN_Q_OVERFLOW)) }
    public var isIgnored: Bool { has(Int32(IN_IGNORED)) }
}

/// Decodes the variable-length records read(2) returns from an inotify descriptor (man inotify(7)):
/// `int32 wd; uint32 mask; uint32 cookie; uint32 len; char name[len]`, the name NUL-padded.
public enum InotifyDecoder {
    /// Size of the fixed part of a record.
    public static let headerSize = 16

    /// Appends every complete record in `buffer` to `events`. Returns false if the buffer held a
    /// record whose length runs past the end (which the kernel never produces; the caller treats it
    /// as lost events and rescans). Fields are read unaligned, bounds are checked before every read.
    @discardableResult
    public static func decode(_ buffer: UnsafeRawBufferPointer, into events: inout [InotifyEvent]) -> Bool {
        var offset = 0
        let count = buffer.count
        while offset < count {
            guard offset + headerSize <= count else { return false }
            let wd = buffer.loadUnaligned(fromByteOffset: offset, as: Int32.self)
            let mask = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let cookie = buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            let length = Int(buffer.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let nameStart = offset + headerSize
            guard length <= count - nameStart else { return false }
            var name: [UInt8] = []
            if length > 0 {
                let raw = UnsafeRawBufferPointer(rebasing: buffer[nameStart..<(nameStart + length)])
                let end = raw.firstIndex(of: 0) ?? raw.count
                name = Array(raw[..<end])
            }
            events.append(InotifyEvent(wd: wd, mask: mask, cookie: cookie, name: name))
            offset = nameStart + length
        }
        return true
    }

    /// Encodes events the way the kernel does (for tests and benchmarks of the decoder).
    public static func encode(_ events: [InotifyEvent]) -> [UInt8] {
        var out: [UInt8] = []
        for event in events {
            let padded = event.name.isEmpty ? 0 : (event.name.count + 1 + 15) / 16 * 16
            withUnsafeBytes(of: event.wd.littleEndian) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: event.mask.littleEndian) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: event.cookie.littleEndian) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt32(padded).littleEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: event.name)
            out.append(contentsOf: [UInt8](repeating: 0, count: padded - event.name.count))
        }
        return out
    }
}
