import Testing

@testable import BlogService

@Suite struct PostValidationTests {
    typealias Input = PostController.PostInput

    @Test func aNewPostNeedsTitleAndBody() {
        #expect(PostController.problems(Input(title: nil, body: nil), partial: false) == ["title": "is required", "body": "is required"])
        #expect(PostController.problems(Input(title: "Hello", body: "First post"), partial: false).isEmpty)
        // A change may leave either out.
        #expect(PostController.problems(Input(title: nil, body: nil), partial: true).isEmpty)
        #expect(PostController.problems(Input(title: "New title", body: nil), partial: true).isEmpty)
    }

    /// Characters and bytes are both bounded: one character may be many bytes.
    @Test func titleAndBodyAreBoundedInCharactersAndBytes() {
        let titleProblem = "must be 1 to 200 characters and at most 800 bytes"
        for bad in ["", "   \n", String(repeating: "t", count: 201), String(repeating: "👍🏽", count: 101)] {
            #expect(PostController.problems(Input(title: bad, body: "b"), partial: false) == ["title": titleProblem], "\(bad.count) characters")
        }
        for good in [String(repeating: "t", count: 200), String(repeating: "🚀", count: 200), "Robert'); DROP TABLE posts;--"] {
            #expect(PostController.problems(Input(title: good, body: "b"), partial: true).isEmpty, "\(good.utf8.count) bytes")
        }
        let bodyProblem = "must be 1 to 20000 characters and at most 80000 bytes"
        for bad in ["", "\t", String(repeating: "b", count: 20_001), String(repeating: "👍🏽", count: 10_001)] {
            #expect(PostController.problems(Input(title: nil, body: bad), partial: true) == ["body": bodyProblem], "\(bad.count) characters")
        }
        #expect(PostController.problems(Input(title: nil, body: String(repeating: "한", count: 20_000)), partial: true).isEmpty)
    }

    /// SQLite is handed text up to a NUL: such a post would be stored cut short.
    @Test func titleAndBodyHaveNoNUL() {
        #expect(PostController.problems(Input(title: "a\u{0}b", body: "x\u{0}"), partial: false) == [
            "title": "must not contain a NUL character", "body": "must not contain a NUL character",
        ])
    }

    @Test func limitAndOffsetAreWholeNumbersInRange() {
        var problems: [String: String] = [:]
        #expect(PostController.integer(nil, default: 20, range: 1...Int.max, field: "limit", problems: &problems) == 20)
        #expect(PostController.integer("7", default: 20, range: 1...Int.max, field: "limit", problems: &problems) == 7)
        #expect(problems.isEmpty)
        #expect(PostController.integer("0", default: 20, range: 1...Int.max, field: "limit", problems: &problems) == 20)
        #expect(PostController.integer("-1", default: 0, range: 0...Int.max, field: "offset", problems: &problems) == 0)
        #expect(problems == ["limit": "must be a whole number ≥ 1", "offset": "must be a whole number ≥ 0"])
        var words: [String: String] = [:]
        _ = PostController.integer("abc", default: 20, range: 1...Int.max, field: "limit", problems: &words)
        #expect(words == ["limit": "must be a whole number ≥ 1"])
    }
}
