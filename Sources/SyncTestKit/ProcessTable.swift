import Foundation
import Glibc
import SyncSystem

/// What tests read from /proc about other processes.
public enum ProcessTable {
    /// True while `pid` runs (a zombie, dead and not yet reaped, does not count).
    public static func running(_ pid: pid_t) -> Bool {
        guard let state = stat(pid)?.state else { return false }
        return state != UInt8(ascii: "Z") && state != UInt8(ascii: "X")
    }

    /// The children of `parent` whose command line contains every one of `needles`. Only the
    /// children: the tests run in parallel, and another test's git must never be touched.
    public static func children(of parent: pid_t, containing needles: [String]) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard stat(pid)?.parent == parent, let data = try? Syscall.readSmallFile("/proc/\(pid)/cmdline") else { return false }
            let line = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return needles.allSatisfy { line.contains($0) }
        }
    }

    /// The state letter and the parent's pid from /proc/PID/stat ("PID (COMM) S PPID …"; the
    /// command may hold spaces and parentheses, so the fields after the last ')' are read).
    private static func stat(_ pid: pid_t) -> (state: UInt8, parent: pid_t)? {
        guard let stat = try? Syscall.readSmallFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
        guard fields.count >= 2, let state = fields[0].first, let parent = pid_t(String(decoding: fields[1], as: UTF8.self)) else { return nil }
        return (state, parent)
    }
}
