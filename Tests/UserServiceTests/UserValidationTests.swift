import Testing

@testable import UserService

@Suite struct UserValidationTests {
    @Test func missingFieldsAreEachRequired() {
        #expect(UserValidation.problems(username: nil, email: nil, password: nil) == [
            "username": "is required", "email": "is required", "password": "is required",
        ])
        #expect(UserValidation.problems(username: "alice", email: "alice@example.com", password: "long enough").isEmpty)
    }

    @Test func usernamesAreThreeToThirtyTwoOfLettersDigitsAndThreeMarks() {
        for good in ["abc", String(repeating: "a", count: 32), "bobby.tables", "a_b-c", "Z99"] {
            #expect(UserValidation.usernameProblem(good) == nil, "\(good)")
        }
        for bad in ["ab", String(repeating: "a", count: 33), "a b", "ünï", "x/y", "semi;colon", ""] {
            #expect(UserValidation.usernameProblem(bad) == "must be 3 to 32 characters of letters, digits, '_', '.' or '-'", "\(bad)")
        }
    }

    @Test func emailsNeedAnAtADotAndAtMost254Characters() {
        for good in ["a@b.c", "robert');DROP-TABLE--users;'@例え.jp"] {
            #expect(UserValidation.emailProblem(good) == nil, "\(good)")
        }
        let long = String(repeating: "a", count: 250) + "@b.cd"
        for bad in ["nope", "a@b", "a b@c.d", "a@@b.c", "@b.c", long] {
            #expect(UserValidation.emailProblem(bad) == "must be a valid email address", "\(bad)")
        }
    }

    /// bcrypt reads a C string of at most 72 bytes: anything it would cut is refused, not stored.
    @Test func passwordsAreEightCharactersToSeventyTwoBytesWithoutNUL() {
        #expect(UserValidation.passwordProblem("seven77") == "must be at least 8 characters")
        #expect(UserValidation.passwordProblem("abcdefgh\u{0}ijkl") == "must not contain a NUL character")
        #expect(UserValidation.passwordProblem(String(repeating: "a", count: 73)) == "must be at most 72 bytes in UTF-8 (bcrypt reads no more)")
        // 25 three-byte characters: 75 bytes, although only 25 characters.
        #expect(UserValidation.passwordProblem(String(repeating: "€", count: 25)) == "must be at most 72 bytes in UTF-8 (bcrypt reads no more)")
        for good in ["eight888", String(repeating: "a", count: 72), String(repeating: "€", count: 24), "pässwörd ' OR 1=1 -- 🚀"] {
            #expect(UserValidation.passwordProblem(good) == nil, "\(good)")
        }
    }
}
