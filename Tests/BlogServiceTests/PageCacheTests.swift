import Foundation
import NIOCore
import TestSupport
import Testing

@testable import BlogService

/// The post-list page cache over a real SQLite file: pages live until the database changes.
@Suite struct PageCacheTests {
    static func withStore(_ test: (SQLitePostStore, String) async throws -> Void) async throws {
        let directory = try temporaryDirectory("page-cache-tests")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("blog.db").path
        try await test(try SQLitePostStore(path: path), path)
    }

    static let first = PageCache.Key(limit: 20, offset: 0)
    static let second = PageCache.Key(limit: 20, offset: 20)

    @Test func aPageIsServedUntilTheDatabaseChanges() async throws {
        try await Self.withStore { store, _ in
            let cache = PageCache()
            let before = try await store.changeVersion()
            cache.store(ByteBuffer(string: "page one"), for: Self.first, version: before)
            #expect(cache.page(Self.first, version: before) == ByteBuffer(string: "page one"))
            #expect(cache.page(Self.second, version: before) == nil)
            #expect(cache.bytes == 8)

            // A write through another connection (the service's writer) is a new version.
            _ = try await store.create(authorID: 1, author: "alice", title: "t", body: "b")
            let after = try await store.changeVersion()
            #expect(after > before)
            #expect(cache.page(Self.first, version: after) == nil)
            // A page fetched under the old version arrives late: dropped, never served as new.
            cache.store(ByteBuffer(string: "stale"), for: Self.first, version: after)
            cache.store(ByteBuffer(string: "older"), for: Self.second, version: before)
            #expect(cache.page(Self.second, version: after) == nil)
            #expect(cache.page(Self.second, version: before) == nil)
            #expect(cache.bytes == 5)
        }
    }

    @Test func aChangeFromAnotherProcessIsSeenToo() async throws {
        try await Self.withStore { store, path in
            let before = try await store.changeVersion()
            try SQLiteCLI.run(path, ".timeout 2000", "INSERT INTO posts (author_id, author, title, body, created_at, updated_at) VALUES (1, 'a', 't', 'b', 0, 0);")
            #expect(try await store.changeVersion() != before)
        }
    }

    @Test func itHoldsAtMostItsCapacityAndByteBudget() async throws {
        try await Self.withStore { store, _ in
            let cache = PageCache(capacity: 2, byteBudget: 10)
            let version = try await store.changeVersion()
            // Larger than the whole budget: never stored.
            cache.store(ByteBuffer(string: String(repeating: "x", count: 11)), for: Self.first, version: version)
            #expect(cache.page(Self.first, version: version) == nil && cache.bytes == 0)

            cache.store(ByteBuffer(string: "aaaa"), for: Self.first, version: version)
            // Replacing a page counts its new size, not both.
            cache.store(ByteBuffer(string: "aa"), for: Self.first, version: version)
            #expect(cache.bytes == 2)
            cache.store(ByteBuffer(string: "bbbb"), for: Self.second, version: version)
            #expect(cache.bytes == 6)
            // A third page is over the capacity: the cache starts again with it alone.
            let third = PageCache.Key(limit: 5, offset: 0)
            cache.store(ByteBuffer(string: "cc"), for: third, version: version)
            #expect(cache.page(Self.first, version: version) == nil && cache.page(Self.second, version: version) == nil)
            #expect(cache.page(third, version: version) == ByteBuffer(string: "cc"))
            #expect(cache.bytes == 2)
            // So is a page that would take the bytes over the budget.
            cache.store(ByteBuffer(string: String(repeating: "d", count: 9)), for: Self.first, version: version)
            #expect(cache.page(third, version: version) == nil)
            #expect(cache.bytes == 9)
        }
    }
}
