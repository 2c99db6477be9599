import Foundation
import Glibc
import SyncCore
import SyncSystem
import SyncTestKit
import Testing

@testable import SyncEngine

/// Retention keeps whole chains, so every kept bundle restores from the kept files alone.
@Suite("Bundle store: chains and retention")
struct BundleStoreTests {
    /// A file with a bundle header: full, or incremental on `base`; modified `age` seconds ago.
    static func bundle(_ directory: TemporaryDirectory, _ name: String, full: Bool, age: Double) throws {
        var text = "# v2 git bundle\n"
        if !full { text += "-\(String(repeating: "a", count: 40)) previous\n" }
        text += "\(String(repeating: "b", count: 40)) refs/heads/main\n\npack"
        let path = directory.sub(name + ".bundle")
        try Files.write(path, text)
        let when = Date().timeIntervalSince1970 - age
        var times = [timespec(tv_sec: Int(when), tv_nsec: 0), timespec(tv_sec: Int(when), tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
    }

    static func names(_ store: BundleStore) -> [String] { store.list().map(\.name).sorted() }

    @Test("chains start at each full bundle; incremental bundles before any full one form a chain without base")
    func chains() throws {
        let directory = try TemporaryDirectory(prefix: "syncd-bundles")
        defer { directory.remove() }
        try Self.bundle(directory, "1", full: false, age: 50)
        try Self.bundle(directory, "2", full: true, age: 40)
        try Self.bundle(directory, "3", full: false, age: 30)
        try Self.bundle(directory, "4", full: true, age: 20)
        try Files.write(directory.sub("5.bundle.partial"), "# v2 git bundle\n")
        let store = BundleStore(directory: Array(directory.path.utf8))
        #expect(store.chains().map { $0.map(\.name) } == [["1.bundle"], ["2.bundle", "3.bundle"], ["4.bundle"]])
    }

    @Test("pruning by count or age removes whole chains, never the newest, never a base that a kept bundle needs")
    func prune() throws {
        let directory = try TemporaryDirectory(prefix: "syncd-bundles")
        defer { directory.remove() }
        for (index, full) in [true, false, false, true, false, false, true, false].enumerated() {
            try Self.bundle(directory, "\(index)", full: full, age: Double(100 - index))
        }
        let store = BundleStore(directory: Array(directory.path.utf8))
        // keep 3: the newest chain (2 bundles) and the one before (3) reach it; the oldest goes whole.
        store.prune(keep: 3, maxAge: .seconds(86_400), now: Date().timeIntervalSince1970)
        #expect(Self.names(store) == ["3.bundle", "4.bundle", "5.bundle", "6.bundle", "7.bundle"])
        // By age: every chain whose newest bundle is older than 94 s goes; the newest chain stays even if old.
        store.prune(keep: 100, maxAge: .seconds(94), now: Date().timeIntervalSince1970)
        #expect(Self.names(store) == ["6.bundle", "7.bundle"])
        store.prune(keep: 1, maxAge: .seconds(1), now: Date().timeIntervalSince1970)
        #expect(Self.names(store) == ["6.bundle", "7.bundle"])
    }

    @Test("the next bundle is full when there is none, when the chain is half the kept count, or half the kept age")
    func nextIsFull() throws {
        let directory = try TemporaryDirectory(prefix: "syncd-bundles")
        defer { directory.remove() }
        let store = BundleStore(directory: Array(directory.path.utf8))
        let now = Date().timeIntervalSince1970
        #expect(store.nextIsFull(keep: 20, maxAge: .seconds(3600), now: now))
        try Self.bundle(directory, "1", full: true, age: 10)
        #expect(!store.nextIsFull(keep: 20, maxAge: .seconds(3600), now: now))
        #expect(store.nextIsFull(keep: 2, maxAge: .seconds(3600), now: now))
        #expect(store.nextIsFull(keep: 20, maxAge: .seconds(19), now: now))
    }
}
