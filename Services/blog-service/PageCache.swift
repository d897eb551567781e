import NIOCore
import Synchronization

/// The encoded answers of `GET /api/posts` (one per `limit` and `offset`), reused until the
/// database changes: encoding 20 posts is most of what the post list costs. At most `capacity`
/// pages and `byteBudget` bytes (`POST_PAGE_CACHE_BYTES`): any client can ask for any offset.
///
/// Whether the posts changed is asked of the store, not inferred (``PostStore/changeVersion()``):
/// a write by another process or replica is seen too. A page is stored under the version read
/// *before* it was fetched, so a stored page is never older than its version.
final class PageCache: Sendable {
    struct Key: Hashable, Sendable {
        var limit: Int
        var offset: Int
    }

    private struct State {
        var version: Int64 = -1
        var pages: [Key: ByteBuffer] = [:]
        var bytes = 0
    }

    private let state = Mutex(State())
    let capacity: Int
    let byteBudget: Int

    init(capacity: Int = 64, byteBudget: Int = 8 << 20) {
        self.capacity = capacity
        self.byteBudget = byteBudget
    }

    /// Bytes held now.
    var bytes: Int { self.state.withLock { $0.bytes } }

    func page(_ key: Key, version: Int64) -> ByteBuffer? {
        self.state.withLock { state in state.version == version ? state.pages[key] : nil }
    }

    func store(_ page: ByteBuffer, for key: Key, version: Int64) {
        self.state.withLock { state in
            if state.version != version {
                // A newer version empties the cache; a page fetched under an older one is dropped.
                guard version > state.version else { return }
                state = State(version: version)
            }
            guard page.readableBytes <= self.byteBudget else { return }
            if state.pages.count >= self.capacity || state.bytes + page.readableBytes > self.byteBudget {
                state.pages.removeAll(keepingCapacity: true)
                state.bytes = 0
            }
            state.bytes += page.readableBytes - (state.pages.updateValue(page, forKey: key)?.readableBytes ?? 0)
        }
    }
}
