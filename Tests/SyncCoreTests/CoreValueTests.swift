import SyncCore
import Testing

@Suite("Byte paths, JSON lines, base64")
struct CoreValueTests {
    @Test func repoPathJoinsAndSplitsBytes() {
        let path = RepoPath.root.appending(Array("a".utf8)).appending([0xFF]).appending(Array("c".utf8))
        #expect(path.bytes == [0x61, 0x2F, 0xFF, 0x2F, 0x63])
        #expect(path.lastComponent == Array("c".utf8))
        #expect(path.parent.parent == RepoPath("a"))
        #expect(RepoPath("a").parent == .root)
        #expect(path.utf8String == nil)
        #expect(RepoPath("a/b").utf8String == "a/b")
    }

    @Test func isWithinRespectsComponentBoundaries() {
        #expect(RepoPath("a/b").isWithin(RepoPath("a")))
        #expect(RepoPath("a").isWithin(RepoPath("a")))
        #expect(!RepoPath("ab").isWithin(RepoPath("a")))
        #expect(RepoPath("x").isWithin(.root))
        #expect(!RepoPath("a").isWithin(RepoPath("a/b")))
    }

    @Test func jsonQuotesControlCharactersAndQuotes() {
        #expect(JSONLine.quote("a\"b\\c\nd\u{1}") == #""a\"b\\c\nd\u0001""#)
        var line = JSONLine()
        line.add("k", "v")
        line.add("n", 3)
        line.add("b", false)
        line.add("l", ["x", "y"])
        #expect(line.text == #"{"k":"v","n":3,"b":false,"l":["x","y"]}"#)
    }

    @Test func changeLineCarriesLosslessBytesOnlyWhenNeeded() {
        let plain = Change(path: RepoPath("dir/file"), kind: .modified).jsonLine
        #expect(plain == #"{"path":"dir/file","kind":"modified","dir":false,"rescan":false}"#)
        let odd = Change(path: RepoPath(bytes: [0x61, 0xFF]), kind: .created, isDirectory: true, fromRescan: true).jsonLine
        #expect(odd == #"{"path":"a\#u{FFFD}","path_base64":"Yf8=","kind":"created","dir":true,"rescan":true}"#)
    }

    @Test(arguments: [[], [0], [1, 2], [0xFF, 0xFE, 0xFD], Array("hello world".utf8), Array(0...255)] as [[UInt8]])
    func base64RoundTrips(bytes: [UInt8]) {
        #expect(Base64.decode(Base64.encode(bytes)) == bytes)
    }

    @Test func base64MatchesRFC4648Vectors() {
        #expect(Base64.encode(Array("f".utf8)) == "Zg==")
        #expect(Base64.encode(Array("fo".utf8)) == "Zm8=")
        #expect(Base64.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64.decode("!!") == nil)
    }

    @Test func errorsNameTheirCauseChain() {
        let inner = SyncError(.syscall, "inotify_add_watch(/w/a) failed")
        let outer = SyncError(.git, "cannot watch /w", cause: inner)
        #expect(outer.description.contains("cannot watch /w"))
        #expect(outer.detailedDescription.contains("caused by: inotify_add_watch(/w/a) failed"))
    }
}
