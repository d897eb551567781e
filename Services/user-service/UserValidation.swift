import Foundation

/// The registration rules: username 3–32 of `[A-Za-z0-9_.-]`, a plausible email, and a password
/// bcrypt hashes whole (see ``passwordProblem(_:)``).
enum UserValidation {
    static func problems(username: String?, email: String?, password: String?) -> [String: String] {
        var problems: [String: String] = [:]
        problems["username"] = if let username { Self.usernameProblem(username) } else { "is required" }
        problems["email"] = if let email { Self.emailProblem(email) } else { "is required" }
        problems["password"] = if let password { Self.passwordProblem(password) } else { "is required" }
        return problems
    }

    static func usernameProblem(_ username: String) -> String? {
        let allowed = username.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "_.-".unicodeScalars.contains(scalar))
        }
        return (3...32).contains(username.count) && allowed ? nil : "must be 3 to 32 characters of letters, digits, '_', '.' or '-'"
    }

    /// No NUL either: SQLite is handed text as a C string (GRDB), so `a\0b@x.org` would be stored
    /// as `a` (and then taken for every other such address).
    static func emailProblem(_ email: String) -> String? {
        email.count <= 254 && !email.utf8.contains(0) && email.wholeMatch(of: /[^@\s]+@[^@\s]+\.[^@\s]+/) != nil
            ? nil : "must be a valid email address"
    }

    /// At least 8 characters, and only what bcrypt reads: it stops at a NUL byte (the password is
    /// a C string) and after 72 bytes, so a longer password, or one with a NUL, would be stored as
    /// a shorter one that also matches other inputs.
    static func passwordProblem(_ password: String) -> String? {
        if password.utf8.contains(0) { return "must not contain a NUL character" }
        if password.utf8.count > 72 { return "must be at most 72 bytes in UTF-8 (bcrypt reads no more)" }
        if password.count < 8 { return "must be at least 8 characters" }
        return nil
    }
}
